"""kwai_bridge.jsontext: the compact JSON text the bridge stores and answers."""
from __future__ import annotations

import json

import pytest

from kwai_bridge.jsontext import compact


@pytest.mark.parametrize("value", [
    {"b": 1, "a": [1, 2.5, None, True], "c": {"z": "é", "y": ""}},
    {"nested": {"b": {"d": 1, "c": 2}, "a": "x"}},
    [],
])
def test_compact_is_sorted_without_spaces_and_reads_back_equal(value):
    text = compact(value)
    assert json.loads(text) == value
    assert ": " not in text and ", " not in text
    assert text == json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


@pytest.mark.parametrize("value", [{"a": "\ud800"}, {"a": 2**70}], ids=["lone surrogate", "beyond 64 bits"])
def test_what_orjson_refuses_is_still_written(value):
    assert json.loads(compact(value)) == value
