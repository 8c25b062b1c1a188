"""kwai-bridge: store webhooks in, Kwai conversion events out. The README's "Layout"
maps the packages and what each may import."""
