"""kwai-bridge: store webhooks in, Kwai conversion events out. The README's "Layout"
maps the packages and what each may import."""

#: How every process of kwai-bridge formats its log lines.
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
