"""A store's choice of events, checked: the names it sends (`events`) and its renames
(`topic_events`), which must name the platform's topics, agree within a kind of
conversion and name events the store sends; and the catalog form (`content_type`)."""
from __future__ import annotations

import difflib
from typing import Any, Mapping

import adapters
from adapters.funnel import DEFAULT_EVENTS
from kwai_bridge.kwai.events import EVENT_NAMES
from kwai_bridge.parsing import Invalid, strings


def event_names(v: Any) -> tuple[str, ...]:
    """The `events` field: Kwai event names, each once, in the order given."""
    names = strings(non_empty_list=False, what='must be a list of Kwai event names such as ["EVENT_PURCHASE"]')(v)
    for name in names:
        if name not in EVENT_NAMES:
            raise Invalid(f"{name!r} is not one of Kwai's {len(EVENT_NAMES)} event names{nearest(name, EVENT_NAMES)}")
    return tuple(dict.fromkeys(names))


def nearest(word: str, known: Any, *, cutoff: float = 0.6) -> str:
    """` (did you mean X?)` for the known word nearest to `word`, or "" when none is near
    (with `cutoff` 0, the nearest is always named)."""
    hint = difflib.get_close_matches(word, sorted(known), n=1, cutoff=cutoff)
    return f" (did you mean {hint[0]}?)" if hint else ""


def event_choices(values: Mapping[str, Any]) -> tuple[str, str] | None:
    """(field, why) for the first of a store's event choices that cannot work together;
    `values` are its fields, already parsed one by one (the platform among them)."""
    topics = adapters.REGISTRY[values["platform"]].TOPICS
    renamed = values.get("topic_events", {})
    events = values.get("events", DEFAULT_EVENTS)
    for topic, name in renamed.items():
        if topic not in topics:
            return "topic_events", (f"{topic!r} is not a {values['platform']} topic that yields an event"
                                    f"{nearest(topic, topics, cutoff=0)}; known: {', '.join(topics)}")
        if name and name not in events:
            return "topic_events", (f"{topic!r} is renamed to {name}, which events does not list: add it to "
                                    "events, or that conversion is never sent")
        # Topics with one default are one kind of conversion (the purchase of orders/paid
        # and of orders/updated): one name for all, or the same order goes twice.
        kind = [t for t in topics if topics[t] == topics[topic] and renamed.get(t) and renamed[t] != name]
        if name and kind:
            return "topic_events", (f"{topic!r} and {kind[0]!r} announce the same conversion ({topics[topic]} by "
                                    f"default): give them one name, not {name} and {renamed[kind[0]]}")
    for line in values.get("event_triggers", ()):
        name = line.split(" ", 1)[0]
        if name not in events:
            return "event_triggers", (f"{line!r} triggers {name}, which events does not list: add it to events, "
                                      "or the trigger does nothing")
    if values.get("content_type") == "product_group" and values.get("content_id", "product") != "product":
        return "content_type", ('product_group sends each product (the group of its variants) as the content id: '
                                'leave content_id at "product"')
    return None


def expected_topics(store) -> list[str]:
    """The topics whose events `store` (a StoreConfig) sends: those should keep arriving."""
    mapping = {**adapters.REGISTRY[store.platform].TOPICS, **store.topic_events}
    return [topic for topic, event in mapping.items() if event and store.sends(event)]


__all__ = ["event_choices", "event_names", "expected_topics", "nearest"]
