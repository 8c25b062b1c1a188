"""Who is calling: `Authorization: Bearer <token>` on every route but the OpenAPI
document, and the errors every route answers, as JSON.

401: no token, or one that is wrong or revoked. 403: a merchant asking for what only an
admin may do. 404: what does not exist, and what belongs to a store the caller may not
see, answered alike so that a merchant cannot tell the two apart.
"""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Mapping

from flask import Blueprint, current_app, g, request
from werkzeug.exceptions import HTTPException

from kwai_bridge.accounts import AccountError, Accounts, Principal
from kwai_bridge.admin import Admin, AdminError, Forbidden, Invalid, NotFound
from kwai_bridge.catalog import CatalogError
from kwai_bridge.runtime import Runtime
from kwai_bridge.web.responses import json_response

log = logging.getLogger(__name__)
blueprint = Blueprint("api", __name__, url_prefix="/api/v1")
#: Routes anyone may read: the API's own description.
PUBLIC = {"api.openapi_document"}


#: The API's errors are the shared ones of `kwai_bridge.admin`, and 401 besides.
ApiError = AdminError


class Unauthorized(AdminError):
    """No token, or one that is wrong or revoked."""

    status = 401


def runtime() -> Runtime:
    return current_app.extensions["kwai_bridge.runtime"]


def now() -> datetime:
    return current_app.config["CLOCK"]()


def principal() -> Principal:
    return g.principal


def actor() -> str:
    """The audit trail's name for the caller."""
    return principal().email


def json_body() -> Any:
    """The request's JSON ({} when it has no body; None, refused later, when not JSON)."""
    return request.get_json(silent=True) if request.get_data() else {}


def admin() -> Admin:
    """What the caller may do, through the code the console shares."""
    return Admin(runtime(), principal(), now=now())


def require_admin() -> Principal:
    return admin().require_admin()


def visible_store(store_id: str) -> str:
    """`store_id` if it exists and the caller may see it; else 404 alike."""
    return admin().visible_store(store_id)


@blueprint.before_request
def authenticate() -> None:
    if request.endpoint in PUBLIC:
        return
    scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send Authorization: Bearer <token> (make one with: kwai-bridge tokens create EMAIL)")
    found = Accounts(runtime().engine).authenticate(token.strip(), now=now())
    if found is None:
        log.warning("API request refused: unknown or revoked token (%s %s)", request.method, request.path)
        raise Unauthorized("this token is not valid, or it was revoked")
    g.principal = found


@blueprint.errorhandler(ApiError)
def api_error(exc: ApiError):
    body: dict[str, Any] = {"errors": exc.errors} if isinstance(exc, Invalid) else {"error": exc.message}
    headers = {"WWW-Authenticate": 'Bearer realm="kwai-bridge"'} if isinstance(exc, Unauthorized) else None
    if isinstance(exc, Invalid):
        log.info("API request refused (400): %s %s, fields %s", request.method, request.path, sorted(exc.errors))
    return json_response(body, exc.status, headers)


@blueprint.errorhandler(CatalogError)
@blueprint.errorhandler(AccountError)
def change_refused(exc: Exception):
    return json_response({"error": str(exc)}, exc.status)


@blueprint.errorhandler(HTTPException)
def http_error(exc: HTTPException):
    return json_response({"error": exc.description or exc.name}, exc.code or 500)


__all__ = ["ApiError", "Forbidden", "Invalid", "NotFound", "Unauthorized", "admin", "blueprint"]
