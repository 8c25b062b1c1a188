# gunicorn settings for running the web app directly:
#   gunicorn -c deploy/gunicorn.conf.py "server:create_app()"
# `kwai-bridge serve` applies the same settings itself.
import multiprocessing
import os

# Bind on every interface; put TLS in front (a load balancer or a reverse proxy).
bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
# Sync workers: the request path only verifies, parses and commits, so it never waits
# on the network; on 2 cores sync workers answered faster than threads or gevent.
worker_class = "sync"
workers = int(os.environ.get("WEB_CONCURRENCY", 2 * multiprocessing.cpu_count()))
# Shopify and Shopline give 5 s to answer: anything near this limit is a fault.
timeout = 30
graceful_timeout = 20
# Keep access logs off: query strings and shop names are not needed in logs.
accesslog = None
errorlog = "-"
