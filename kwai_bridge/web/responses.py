"""JSON answers shared by the routes, and the app's answer to an HTTP error."""
from __future__ import annotations

from typing import Any, Mapping

from flask import Response, jsonify
from werkzeug.exceptions import HTTPException

_MESSAGES = {413: "body larger than the limit", 405: "method not allowed", 404: "not found"}


def json_response(body: Mapping[str, Any], status: int, headers: Mapping[str, str] | None = None) -> Response:
    """`body` as JSON with `status` and any extra `headers`."""
    response = jsonify(dict(body))
    response.status_code = status
    response.headers.update(dict(headers or {}))
    return response


def http_error(exc: HTTPException):
    """Werkzeug's errors (404, 405, 413...) as a JSON status, like every other answer."""
    return jsonify({"status": _MESSAGES.get(exc.code, exc.name)}), exc.code
