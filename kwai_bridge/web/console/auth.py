"""Who is using the console: sign-in with e-mail and password, a server-side session in
an HttpOnly SameSite=Lax cookie (Secure over HTTPS, as the trusted proxies say), the
form token every POST carries, and the pages' shared frame."""
from __future__ import annotations

import logging
import secrets
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, current_app, g, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException

from kwai_bridge.admin import Admin, AdminError
from kwai_bridge.runtime import Runtime
from kwai_bridge.sealing import hint
from kwai_bridge.sessions import LIFETIME, LoginError, Session, Sessions, TooManyAttempts
from kwai_bridge.status import headline, service_status

log = logging.getLogger(__name__)
blueprint = Blueprint("console", __name__, url_prefix="/console", template_folder="templates",
                      static_folder="static", static_url_path="/static")
COOKIE = "kwb_console"
#: The form token of the sign-in form, before there is a session (double submit).
LOGIN_COOKIE = "kwb_console_login"
#: Pages anyone may open.
PUBLIC = {"console.login", "console.static"}
#: Every page: its own scripts and styles only, no frames, no form posts elsewhere.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


blueprint.add_app_template_filter(hint, "hint")


def runtime() -> Runtime:
    return current_app.extensions["kwai_bridge.runtime"]


def now() -> datetime:
    return current_app.config["CLOCK"]()


def session() -> Session:
    return g.console_session


def admin() -> Admin:
    return Admin(runtime(), session().principal, now=now())


def page(template: str, status: int = 200, **context: Any):
    """A page in the console's frame, with the service's status in its header."""
    if getattr(g, "console_session", None) is not None:
        found = service_status(runtime().engine, now=now(), stores=session().principal.visible)
        context.update(user=session().principal, csrf=session().csrf, status=found, status_line=headline(found))
    return render_template(template, **context), status


@blueprint.before_request
def authenticate():
    g.console_session = None
    if request.endpoint in PUBLIC:
        return None
    found = Sessions(runtime().engine).find(request.cookies.get(COOKIE), now=now())
    if found is None:
        return redirect(url_for("console.login", next=request.full_path if request.method == "GET" else None))
    g.console_session = found
    if request.method == "POST" and not found.form_token_matches(request.form.get("csrf_token")):
        log.warning("console POST refused: missing or wrong form token (%s)", request.path)
        return page("error.html", 403, title="Refused", message="This form has expired or did not come from "
                                                                 "the console: reload the page and try again.")
    return None


@blueprint.after_request
def headers(response):
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    if request.endpoint != "console.static":
        response.headers["Cache-Control"] = "no-store"
    return response


def _safe_next(target: str | None) -> str:
    """Only a path inside the console: never another site."""
    parts = urlsplit(target or "")
    if target and not parts.scheme and not parts.netloc and parts.path.startswith("/console/"):
        return target.rstrip("?")
    return url_for("console.overview")


@blueprint.route("/login", methods=["GET", "POST"])
def login():
    form_token = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)
    error, status = None, 200
    if request.method == "POST":
        sent = request.form.get("csrf_token") or ""
        if not request.cookies.get(LOGIN_COOKIE) or not secrets.compare_digest(sent, request.cookies[LOGIN_COOKIE]):
            log.warning("console login refused: missing or wrong form token")
            return page("error.html", 403, title="Refused", message="This form has expired: reload the page "
                                                                     "and sign in again.")
        try:
            value, _ = Sessions(runtime().engine).login(request.form.get("email", ""), request.form.get("password", ""),
                                                       address=request.remote_addr or "unknown", now=now())
        except LoginError as exc:
            error, status = str(exc), exc.status
        else:
            response = redirect(_safe_next(request.args.get("next")))
            response.set_cookie(COOKIE, value, max_age=int(LIFETIME.total_seconds()), path="/console",
                                httponly=True, samesite="Lax", secure=request.is_secure)
            response.delete_cookie(LOGIN_COOKIE, path="/console")
            return response
    body, code = page("login.html", status, form_token=form_token, error=error,
                      email=request.form.get("email", ""))
    response = current_app.make_response((body, code))
    if isinstance(error, str) and status == TooManyAttempts.status:
        response.headers["Retry-After"] = "60"
    response.set_cookie(LOGIN_COOKIE, form_token, max_age=3600, path="/console", httponly=True, samesite="Lax",
                        secure=request.is_secure)
    return response


@blueprint.post("/logout")
def logout():
    Sessions(runtime().engine).end(request.cookies.get(COOKIE))
    response = redirect(url_for("console.login"))
    response.delete_cookie(COOKIE, path="/console")
    return response


@blueprint.errorhandler(AdminError)
def refused(exc: AdminError):
    return page("error.html", exc.status, title="Not found" if exc.status == 404 else "Refused",
                message=exc.message if exc.status != 404 else "There is nothing here, or nothing you may see.")


@blueprint.errorhandler(HTTPException)
def http_error(exc: HTTPException):
    return page("error.html", exc.code or 500, title=exc.name, message=exc.description or exc.name)


__all__ = ["admin", "blueprint", "now", "page", "runtime", "session"]
