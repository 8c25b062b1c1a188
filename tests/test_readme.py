"""The README is the manual: its settings table must be the one the code reads."""
from __future__ import annotations

from pathlib import Path

from kwai_bridge.settings import SETTINGS_DOC, settings_markdown

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_readme_opens_with_the_two_commands():
    head = README[:1500]
    assert "make run" in head and "make test" in head


def test_settings_table_matches_the_code():
    start = README.index("<!-- settings-table -->") + len("<!-- settings-table -->")
    end = README.index("<!-- /settings-table -->")
    assert README[start:end].strip() == settings_markdown().strip(), \
        "README settings table is stale: regenerate it from kwai_bridge.settings.settings_markdown()"
    for variable, _default, _meaning in SETTINGS_DOC:
        assert f"`{variable}`" in README
