"""The page blueprint and what every screen shares: the layout (whole page or htmx
fragment), the interface language, security headers and error pages.

The screens themselves live in the modules ``loom.ui`` imports (sign-in, lists, forms,
record pages, import and export); all of them add their routes to ``pages``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import (
    Blueprint,
    Flask,
    current_app,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_htmx import HTMX
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from loom.audit.refusals import log_refusal
from loom.errors import LoomError
from loom.problems import problem
from loom.ui import i18n
from loom.ui.i18n import gettext, lazy_gettext
from loom.ui.navigation import navigation, plural_label

log = logging.getLogger("loom.ui")

pages = Blueprint("pages", __name__, template_folder="templates", static_folder="static",
                  static_url_path="/static/loom")
htmx = HTMX()

#: no inline script or style, no framing, nothing loaded from elsewhere
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "connect-src 'self'; form-action 'self'; base-uri 'none'; object-src 'none'; "
                           "frame-ancestors 'none'")


@pages.record_once
def _install(state) -> None:
    app: Flask = state.app
    htmx.init_app(app)
    i18n.install(app)
    app.jinja_env.globals.update(navigation=navigation, plural_label=plural_label)


@pages.after_app_request
def _security_headers(response):
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if request.blueprint == "pages":
        response.vary.add("HX-Request")
        response.vary.add("Cookie")
    return response


def wants_fragment() -> bool:
    """An htmx request that swaps part of the page (not a history restore, which needs
    the whole page)."""
    return bool(htmx) and not htmx.history_restore_request


def render_page(template: str, status: int = 200, **context: Any):
    """The whole page for a normal request, only its main block for an htmx request."""
    layout = "_fragment.html" if wants_fragment() else "base.html"
    return render_template(template, layout=layout, **context), status


def redirect_to(url: str):
    """Go to ``url``: a 303 for a normal request, ``HX-Location`` for htmx, so the new
    page lands in the main area and in the browser's history."""
    if htmx:
        response = current_app.response_class("", 204)
        response.headers["HX-Location"] = json.dumps({"path": url, "target": "#main"})
        return response
    return redirect(url, 303)


# -- errors ---------------------------------------------------------------------------------

def _error_page(status: int, title: str, detail: str, errors=None):
    context = {"status": status, "title": title, "detail": detail, "errors": errors or []}
    if htmx:
        # htmx is configured to swap every status; an error lands in the message area
        html = render_template("_error.html", **context)
        response = current_app.response_class(html, status)
        response.headers["HX-Retarget"] = "#messages"
        response.headers["HX-Reswap"] = "innerHTML"
        return response
    html, _ = render_page("error.html", **context)
    return html, status


#: the titles of Loom's errors, as the interface shows them
ERROR_TITLES = {400: lazy_gettext("The request cannot be carried out"), 401: lazy_gettext("Please sign in"),
                403: lazy_gettext("Not allowed"), 404: lazy_gettext("Not found"),
                409: lazy_gettext("Conflict with other records"),
                412: lazy_gettext("Changed by someone else"), 422: lazy_gettext("Invalid values"),
                405: lazy_gettext("Not possible here"), 413: lazy_gettext("Too large"),
                423: lazy_gettext("Locked")}


@pages.errorhandler(LoomError)
def _loom_error(exc: LoomError):
    from loom.identity.service import Unauthorized
    from loom.ui.messages import message_text, refusal_text

    if isinstance(exc, Unauthorized) and g.get("principal") is None:
        target = url_for("pages.sign_in", next=request.full_path if request.method == "GET" else None)
        if htmx:
            # the whole page changes (no navigation before signing in): a full load, not a swap
            response = current_app.response_class("", 204)
            response.headers["HX-Redirect"] = target
            return response
        return redirect(target, 303)
    log_refusal(exc)  # a screen's refusal is logged as the API's is
    errors = [{**e, "message": message_text(e)} for e in exc.errors]
    return _error_page(exc.status, str(ERROR_TITLES.get(exc.status, exc.title)), refusal_text(exc.status, exc.as_entry()),
                       errors)


@pages.errorhandler(CSRFError)
def _csrf_error(exc: CSRFError):
    return _error_page(400, gettext("Form expired"),
                       gettext("The page was open too long or the session changed. Reload the page and try again."))


@pages.errorhandler(HTTPException)
def _http_error(exc: HTTPException):
    from loom.ui.messages import refusal_text

    status = exc.code or 500
    # werkzeug's own title and description are English: the interface language says them
    title = str(ERROR_TITLES.get(status, ERROR_TITLES[400]))
    detail = refusal_text(status) or exc.description or exc.name
    if status == 413:
        detail = gettext("The upload is larger than %(size)s MB.",
                         size=current_app.config["MAX_CONTENT_LENGTH"] // (1024 * 1024))
    return _error_page(status, title, detail)


@pages.app_errorhandler(404)
@pages.app_errorhandler(405)
def _unrouted(exc: HTTPException):
    """An address no route answers: a browser gets the error page in its language, an API
    client (or anything under /api/) the problem reply every other API error gets."""
    if request.blueprint is None and not request.path.startswith("/api/") \
            and request.accept_mimetypes.accept_html:
        return _http_error(exc)

    return problem(exc.code or 404, exc.name, exc.description or exc.name)


@pages.errorhandler(Exception)
def _unexpected(exc: Exception):
    log.exception("unexpected error in %s %s", request.method, request.path)
    if g.get("ui_failing"):
        # the error page itself failed: answer in plain text rather than fail again
        return current_app.response_class(f"Internal error (request {g.get('request_id', '')})", 500,
                                          mimetype="text/plain")
    g.ui_failing = True
    return _error_page(500, gettext("Something went wrong"),
                       gettext("Something went wrong on our side. The request id %(id)s identifies it "
                                    "in the server log.", id=g.get("request_id", "")))
