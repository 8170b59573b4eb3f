"""Authenticating requests: a bearer token or a session cookie -> the principal.

The API never falls back to anonymous access: a request to ``/api`` without a valid
credential gets 401. Requests authenticated by the session cookie must carry the CSRF
token for every state-changing method; bearer-token requests cannot be forged by a
browser and need none.
"""

from __future__ import annotations

from flask import Flask, current_app, g, request, session
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFError, CSRFProtect

from loom.identity.service import Unauthorized

csrf = CSRFProtect()
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
#: endpoints reachable without signing in
PUBLIC_ENDPOINTS = {"auth.login", "pages.home", "static", "pages.static", "pages.sign_in", "pages.sign_in_submit",
                    "pages.switch_language"}


class SessionInterface(SecureCookieSessionInterface):
    """Session cookies are Secure whenever the request came over HTTPS."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config.get("SESSION_COOKIE_SECURE")) or request.is_secure


def authenticate():
    """The principal of the request's credential, or None when it has none. A bearer
    token that is unknown, expired or revoked is refused outright."""
    identity = current_app.extensions["loom"].identity
    header = request.headers.get("Authorization")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("use the header Authorization: Bearer <token>")
        principal = identity.token_principal(token.strip())
        if principal is None:
            raise Unauthorized("the token is unknown, expired or revoked")
        g.auth_method = "token"
        return principal
    token = session.get("sid")
    if token:
        principal = identity.session_principal(token)
        if principal is None:
            session.clear()
            return None
        g.auth_method = "session"
        return principal
    return None


def install(app: Flask) -> None:
    app.session_interface = SessionInterface()
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SAMESITE"] = app.config.get("SESSION_COOKIE_SAMESITE") or "Lax"
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)
    csrf.init_app(app)

    @app.before_request
    def _authenticate():
        g.principal = None
        if request.endpoint in PUBLIC_ENDPOINTS or request.endpoint is None:
            principal = authenticate() if request.endpoint is not None else None
            g.principal = principal
            return None
        principal = authenticate()
        if principal is None:
            raise Unauthorized("sign in, or send Authorization: Bearer <token>")
        g.principal = principal
        if g.get("auth_method") == "session" and request.method not in SAFE_METHODS:
            csrf.protect()
        return None

    @app.errorhandler(CSRFError)
    def _csrf(exc: CSRFError):
        from loom.app import problem

        return problem(400, "CSRF check failed", f"{exc.description.rstrip('.')}: send the X-CSRFToken "
                       "header with the token from GET /api/v1/_auth/me")
