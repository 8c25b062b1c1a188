"""Reading a /metrics answer in tests: samples by name and labels."""
from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    """{(sample name, sorted labels): value} of an exposition."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(found: Samples, name: str, **labels: str) -> float:
    """One sample's value, 0 when the series does not exist."""
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def total(found: Samples, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    return sum(v for (n, have), v in found.items() if n == name and set(labels.items()) <= set(have))


def metric_names(text: str) -> set[str]:
    """Every sample name an exposition shows (`_total`, `_bucket`, ... included)."""
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}
