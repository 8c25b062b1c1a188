"""Kwai's side: the event model, the wire format and the HTTP client. It knows no platform."""
