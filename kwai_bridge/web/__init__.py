"""The web layer of the app `server.create_app` builds: one blueprint per concern
(`health`, `clicks`, `snippet`...), the webhook routes as plain WSGI in front of them
(`webhooks`), and how gunicorn serves it (`serving`).

Routes read the request and write the answer; the rules they apply live below them
(kwai_bridge.pipeline, kwai_bridge.clicks).
"""
