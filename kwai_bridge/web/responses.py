"""JSON answers shared by the routes, and the app's answer to an HTTP error."""
from __future__ import annotations

from http import HTTPStatus
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
    return jsonify(http_error_body(exc.code, exc.name)), exc.code


def http_error_body(code: int, name: str | None = None) -> dict[str, str]:
    """The JSON body of an HTTP error: its short message, else `name` (werkzeug's name of
    the error), else the status's phrase."""
    return {"status": _MESSAGES.get(code) or name or HTTPStatus(code).phrase}
