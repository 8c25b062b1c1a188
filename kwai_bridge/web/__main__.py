"""`python -m kwai_bridge.web`: gunicorn's master, as `kwai-bridge serve` runs it once the
database is ready (see kwai_bridge.web.serving.run). It imports nothing of the app: the
workers load it, once gevent has patched them."""
from __future__ import annotations

import argparse
import logging

from kwai_bridge import LOG_FORMAT
from kwai_bridge.web.serving import run

parser = argparse.ArgumentParser(prog="python -m kwai_bridge.web", description=__doc__.split("\n")[0])
parser.add_argument("--host", default="0.0.0.0")
parser.add_argument("--port", type=int, default=8000)
parser.add_argument("--workers", type=int, default=None)
parser.add_argument("--with-worker", action="store_true")
parser.add_argument("--log-level", default="INFO")
args = parser.parse_args()
logging.basicConfig(level=args.log_level, format=LOG_FORMAT)  # the workers inherit it
run(host=args.host, port=args.port, workers=args.workers, with_worker=args.with_worker)
