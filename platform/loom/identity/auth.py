"""Authenticating requests: a bearer token or a session cookie -> the principal.

The API never falls back to anonymous access: a request to ``/api`` without a valid
credential gets 401. Requests authenticated by the session cookie must carry the CSRF
token for every state-changing method; bearer-token requests cannot be forged by a
browser and need none.

Two more checks guard every write, here rather than in each view so that no route (a
plugin's included) can forget them: a read-only token changes nothing, anywhere, and the
JSON API takes JSON bodies only (a browser cannot send those across sites without CORS).

A request with a credential first reads the identity and metadata versions, in one
statement: the principal then comes from the process's credential cache unless the
identity version has moved (``loom.identity.credentials``), and the metadata version is
pinned for the rest of the request, so that ``live()`` asks the database no more.
"""

from __future__ import annotations

from flask import Flask, current_app, g, request, session
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFError, CSRFProtect

from loom.errors import LoomError
from loom.identity.service import Unauthorized
from loom.permissions import Forbidden
from loom.problems import problem

csrf = CSRFProtect()
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
#: endpoints reachable without signing in; plugins add theirs (``public_endpoints`` hook)
PUBLIC_ENDPOINTS = frozenset({"auth.login", "static"})
#: endpoints whose requests carry a credential of their own (a webhook's signature): no
#: session or token is read for them, so no CSRF token either
SIGNED_ENDPOINTS = frozenset({"webhooks.receive"})
#: endpoints a read-only token may POST to: they change nothing the token's user owns;
#: plugins add theirs (``read_only_endpoints`` hook)
READ_ONLY_ALLOWED = frozenset({
    "auth.login",  # signing in with a password is its own credential
    "auth.logout",  # ends a session; a token has none
    "audit.verify_chain",  # walks the audit chain: a read sent as POST
})
#: the prefix of the JSON API, whose request bodies must be JSON
API_PREFIX = "/api/"
_BODY_TYPES_ATTRIBUTE = "loom_body_types"


class UnsupportedMediaType(LoomError):
    status = 415
    type = "https://loom.dev/problems/unsupported-media-type"
    title = "Unsupported media type"


def accepts_body(*mimetypes: str):
    """Let an API view take request bodies of ``mimetypes`` besides JSON (a file upload's
    ``multipart/form-data``, say); without it an API view receives JSON bodies only."""
    def mark(view):
        setattr(view, _BODY_TYPES_ATTRIBUTE, frozenset(mimetypes))
        return view
    return mark


class SessionInterface(SecureCookieSessionInterface):
    """Session cookies are Secure whenever the request came over HTTPS."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config.get("SESSION_COOKIE_SECURE")) or request.is_secure


def read_versions() -> int | None:
    """Read the identity and metadata versions in one statement, pin the metadata version
    for the rest of the request (undone when it ends), and return the identity version."""
    loom = current_app.extensions["loom"]
    version, (metadata_version,) = loom.identity.read_versions(loom.metadata.version_query())
    _unpin(loom)
    g.loom_metadata_pin = loom.metadata.pin(metadata_version)
    return version


def _unpin(loom) -> None:
    pin = g.pop("loom_metadata_pin", None)
    if pin is not None:
        loom.metadata.unpin(pin)


def authenticate():
    """The principal of the request's credential, or None when it has none. A bearer
    token that is unknown, expired or revoked is refused outright."""
    identity = current_app.extensions["loom"].identity
    header = request.headers.get("Authorization")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("use the header Authorization: Bearer <token>")
        principal = identity.token_principal(token.strip(), version=read_versions())
        if principal is None:
            raise Unauthorized("the token is unknown, expired or revoked")
        g.auth_method = "token"
        return principal
    token = session.get("sid")
    if token:
        principal = identity.session_principal(token, version=read_versions())
        if principal is None:
            session.clear()
            return None
        g.auth_method = "session"
        return principal
    return None


def _has_body() -> bool:
    return bool(request.content_length) or "chunked" in request.headers.get("Transfer-Encoding", "").lower()


def require_json_body() -> None:
    """Refuse an API request whose body is not JSON (``application/json`` or
    ``application/*+json``), unless its view accepts that type (``accepts_body``).

    A browser sends ``text/plain``, form and multipart bodies across sites without asking
    (a signed-in victim's browser, or a sign-in forced on it); JSON it does not."""
    if request.method in SAFE_METHODS or not request.path.startswith(API_PREFIX) or not _has_body():
        return
    mimetype = request.mimetype
    kind, _, subtype = mimetype.partition("/")
    if mimetype == "application/json" or (kind == "application" and subtype.endswith("+json")):
        return
    view = current_app.view_functions.get(request.endpoint or "")
    if mimetype in getattr(view, _BODY_TYPES_ATTRIBUTE, ()):
        return
    sent = f"a {mimetype} body" if mimetype else "a body without a Content-Type"
    raise UnsupportedMediaType(f"the API takes JSON only: {sent} cannot be read here; "
                               "send the body as JSON with the header Content-Type: application/json")


def refuse_read_only_writes(principal) -> None:
    """A read-only principal may not send a state-changing request to any endpoint but
    those in ``READ_ONLY_ALLOWED`` and those plugins name. Checked once for every route, so
    a new route is covered without doing anything; the refusal is logged like every other."""
    if principal is None or not principal.read_only or request.method in SAFE_METHODS \
            or request.endpoint in current_app.extensions["loom"].read_only_endpoints:
        return
    refusal = Forbidden(f"a read-only token cannot change anything: {request.method} {request.path} "
                        "needs a token made without read_only")
    current_app.extensions["loom"].audit.add_alone(
        "access", principal=principal, outcome="denied",
        detail={"method": request.method, "path": request.path, "reason": refusal.detail})
    refusal.audited = True  # the screens' and the API's error handlers need not log it again
    raise refusal


def install(app: Flask) -> None:
    app.session_interface = SessionInterface()
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SAMESITE"] = app.config.get("SESSION_COOKIE_SAMESITE") or "Lax"
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)
    csrf.init_app(app)

    public = app.extensions["loom"].public_endpoints

    @app.before_request
    def _authenticate():
        g.principal = None
        require_json_body()
        if request.endpoint in SIGNED_ENDPOINTS:
            return None
        if request.endpoint in public or request.endpoint is None:
            principal = authenticate() if request.endpoint is not None else None
            g.principal = principal
            refuse_read_only_writes(principal)
            return None
        principal = authenticate()
        if principal is None:
            raise Unauthorized("sign in, or send Authorization: Bearer <token>")
        g.principal = principal
        refuse_read_only_writes(principal)
        if g.get("auth_method") == "session" and request.method not in SAFE_METHODS:
            csrf.protect()
        return None

    @app.teardown_request
    def _end_pin(_exc):
        _unpin(app.extensions["loom"])

    @app.errorhandler(CSRFError)
    def _csrf(exc: CSRFError):

        return problem(400, "CSRF check failed", f"{exc.description.rstrip('.')}: send the X-CSRFToken "
                       "header with the token from GET /api/v1/_auth/me")
