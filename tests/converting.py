"""The worker's conversion, for tests that post webhooks through Flask's test client:
under the default `KWAI_BRIDGE_CONVERSION=worker` a delivery's events are made by the
worker's converter moments after the answer; `convert(app)` runs that converter over
what the app received, at the app's clock, as the worker would."""
from __future__ import annotations

from kwai_bridge.conversion import Converter


def convert(app) -> int:
    """Convert every delivery the app's webhook path stored as received; how many."""
    return Converter(app.extensions["kwai_bridge.pipeline"], clock=app.config["CLOCK"]).drain()
