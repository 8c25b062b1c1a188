"""`make demo` must keep working: it is a newcomer's first look."""
import json
import re

import pytest

from tests import demo

pytestmark = pytest.mark.slow

PLATFORMS = ("shopify", "shopline", "woocommerce")


def step(out: str, number: int) -> list[str]:
    """What the demo printed after `N. ` for step `number`, one entry a line."""
    return [line.split(" ", 1)[1] for line in out.splitlines() if line.startswith(f"{number}. ")]


def test_demo_delivers_one_event_per_platform_and_more(capsys):
    assert demo.main() == 0
    out = capsys.readouterr().out
    for click in ("demo-shopify-click", "demo-shopline+click", "demo-woo-click"):
        assert f'"clickid": "{click}"' in out
    assert '"access_token": "***"' in out and "token-shopify" not in out

    # connect creates the store's subscriptions on each platform, then nothing the second time
    first = {line.split()[3]: json.loads(line.split(" -> ", 1)[1]) for line in step(out, 8)}
    assert sorted(first) == [f"demo-{p}" for p in PLATFORMS]
    for report in first.values():
        assert report["created"] and report["errors"] == report["fixed"] == report["ok"] == []
    again = step(out, 9)
    assert len(again) == len(PLATFORMS)
    for line in again:
        store = line.split()[3].rstrip(",")
        assert re.search(r"-> created \[\], (\d+) ok$", line).group(1) == str(len(first[store]["created"]))

    (reconciled,) = step(out, 10)
    passed = json.loads(reconciled.split(" -> ", 1)[1])
    assert passed["errors"] == {} and passed["stores"] == len(PLATFORMS) and passed["recovered_events"] >= 1

    report_at = out.index("\n12. ")
    rows = [json.loads(line) for line in out[report_at:].splitlines()[1:] if line.startswith("    {")]
    assert {r["store"] for r in rows} == {f"demo-{p}" for p in PLATFORMS}
    for row in rows:
        assert row["paid_orders"] - row["sent"] == sum(row["reasons"].values()), row
    # per store: the order a webhook brought, and two a webhook never brought, one waiting for a click
    assert sum(r["paid_orders"] for r in rows) == 3 * len(PLATFORMS)
    assert sum(r["sources"].get("recovered by reconciliation", 0) for r in rows) == 2 * len(PLATFORMS)
    assert sum(r["reasons"].get("waiting for a click", 0) for r in rows) == len(PLATFORMS)
    assert out.rstrip().endswith("demo ok")
