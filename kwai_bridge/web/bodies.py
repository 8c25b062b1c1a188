"""Reading a request's body under a size limit, whatever its transfer encoding."""
from __future__ import annotations

import logging
from typing import Any, Mapping

from flask import request
from werkzeug.exceptions import BadRequest, HTTPException, RequestEntityTooLarge
from werkzeug.wsgi import get_content_length, get_input_stream

log = logging.getLogger(__name__)

_PIECE = 64 * 1024


class MalformedBody(BadRequest):
    """The body's framing is broken (a bad chunk size or terminator)."""

    name = "malformed request body"


def read_body(limit: int) -> bytes:
    """The Flask request's body (`read_environ_body`)."""
    return read_environ_body(request.environ, limit)


def read_environ_body(environ: Mapping[str, Any], limit: int) -> bytes:
    """The body of the WSGI request `environ`; 413 (RequestEntityTooLarge) when it is
    longer than `limit` bytes, whether it states its length (Content-Length) or not
    (chunked), 400 (MalformedBody) when its chunks are broken, and 400
    (ClientDisconnected) when it is cut short."""
    declared = get_content_length(environ)
    if declared is not None and declared > limit:
        _refuse(environ, limit)
    try:
        # werkzeug stops reading a body of unknown length at its limit and hands back
        # what it has, so a longer chunked body came back cut, not refused: one byte over
        # the limit tells a body of exactly `limit` bytes from a longer one.
        body = get_input_stream(environ, max_content_length=limit + 1).read()
    except RequestEntityTooLarge:
        _refuse(environ, limit)
    except HTTPException:
        raise
    except Exception as exc:  # the server's chunk parser: its errors are no HTTP errors
        log.info("%s: malformed body refused (400): %s", environ.get("PATH_INFO"), exc.__class__.__name__)
        raise MalformedBody() from exc
    if len(body) > limit:
        _refuse(environ, limit)
    return body


def _refuse(environ: Mapping[str, Any], limit: int) -> None:
    log.info("%s: body over %d bytes refused (413)", environ.get("PATH_INFO"), limit)
    # Read and drop what the client still sends, up to `limit` bytes more (or until it
    # goes silent for the worker timeout): closing a connection with unread data resets
    # it, and a client still sending its body would see the reset instead of the 413.
    stream = environ["wsgi.input"]
    drained = 0
    try:
        while drained <= limit:
            piece = stream.read(_PIECE)
            if not piece:
                break
            drained += len(piece)
    except Exception:  # the client gone, a malformed chunk...: the 413 stands
        pass
    raise RequestEntityTooLarge()


__all__ = ["MalformedBody", "read_body", "read_environ_body"]
