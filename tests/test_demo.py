"""`make demo` must keep working: it is a newcomer's first look."""
import pytest

from tests import demo

pytestmark = pytest.mark.slow


def test_demo_delivers_one_event_per_platform_and_more(capsys):
    assert demo.main() == 0
    out = capsys.readouterr().out
    for click in ("demo-shopify-click", "demo-shopline+click", "demo-woo-click"):
        assert f'"clickid": "{click}"' in out
    assert '"access_token": "***"' in out and "token-shopify" not in out
