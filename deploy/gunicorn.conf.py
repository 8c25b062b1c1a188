# gunicorn settings for running the web app directly:
#   gunicorn -c deploy/gunicorn.conf.py
# They name the app ("server:create_app()"); `kwai-bridge serve` applies the same ones,
# read from the same place: kwai_bridge.web.serving. The workers are gevent workers (a
# greenlet per connection, so idle or slow clients hold no worker) that answer one
# request per connection; a client gets HEAD_TIMEOUT (5 s) for its request head.
# Bind on every interface; put TLS in front (a load balancer or a reverse proxy).
import os
import shutil

from kwai_bridge.web.serving import METRICS_DIR_ENV, gunicorn_options, metrics_directory

_workers = os.environ.get("WEB_CONCURRENCY")
# gunicorn reads this file's top-level names as its settings.
globals().update(gunicorn_options(host="0.0.0.0", port=int(os.environ.get("PORT", "8000")),
                                  workers=int(_workers) if _workers else None))


def on_starting(server):
    # Metrics from every worker in one place (prometheus-client's multiprocess mode):
    # PROMETHEUS_MULTIPROC_DIR, or a temporary directory, emptied before a worker starts.
    server.kwai_bridge_made_metrics_directory = metrics_directory()


def on_exit(server):
    if getattr(server, "kwai_bridge_made_metrics_directory", False):
        shutil.rmtree(os.environ[METRICS_DIR_ENV], ignore_errors=True)
