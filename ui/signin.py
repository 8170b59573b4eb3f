"""Signing in and out of the screens, and the language switch."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import current_app, g, redirect, request, session, url_for

from loom.errors import LoomError
from loom.ui.i18n import SESSION_KEY, gettext, normalise
from loom.ui.pages import pages, redirect_to, render_page


def _safe_next(target: str | None) -> str:
    """Only a path on this site: never an open redirect to somewhere else."""
    if not target:
        return url_for("pages.home")
    if len(target) > 2000 or any(ch < " " or ch == "\x7f" for ch in target):
        # control characters (CR/LF) cannot go into a Location header; nor do paths of ours hold them
        return url_for("pages.home")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return url_for("pages.home")
    return target


def sign_in_page(error: str | None = None, username: str = "", status: int = 200):
    return render_page("sign_in.html", status, error=error, username=username,
                       next=_safe_next(request.values.get("next")))


@pages.get("/sign-in")
def sign_in():
    if g.get("principal") is not None:
        return redirect(_safe_next(request.args.get("next")), 303)
    return sign_in_page()


@pages.post("/sign-in")
def sign_in_submit():
    from loom.identity.auth import csrf

    csrf.protect()
    username = request.form.get("username", "").strip()
    password = request.form.get("password", "")
    if not username or not password:
        return sign_in_page(gettext("Enter your username and password."), username, 422)
    identity = current_app.extensions["loom"].identity
    try:
        token, _principal = identity.sign_in(username, password, ip=request.remote_addr,
                                             user_agent=request.headers.get("User-Agent"))
    except LoomError as exc:
        message = gettext("Wrong username or password.") if exc.status == 401 else \
            gettext("Too many failed sign-ins; try again later.")
        return sign_in_page(message, username, exc.status)
    locale = session.get(SESSION_KEY)
    session.clear()
    session["sid"] = token
    if locale:
        session[SESSION_KEY] = locale
    return redirect_to(_safe_next(request.form.get("next")))


@pages.post("/sign-out")
def sign_out():
    token = session.get("sid")
    if token:
        current_app.extensions["loom"].identity.sign_out(token, actor=g.principal.name, ip=request.remote_addr)
    session.clear()
    return redirect(url_for("pages.sign_in"), 303)


@pages.post("/language")
def switch_language():
    """Remember the chosen language for the session and, for a user, in their profile."""
    from loom.identity.auth import csrf

    csrf.protect()
    locale = normalise(request.form.get("locale"))
    if locale:
        session[SESSION_KEY] = locale
        principal = g.get("principal")
        if principal is not None and principal.user_id is not None and g.get("auth_method") == "session":
            current_app.extensions["loom"].identity.update_user(principal.user_id, {"locale": locale},
                                                                actor=principal.name)
    return redirect(_safe_next(request.form.get("next")), 303)


@pages.get("/")
def home():
    """The start page: the sign-in form for a visitor; for a signed-in user, the apps and
    entities they may read."""
    if g.get("principal") is None:
        return sign_in_page()
    return render_page("home.html")
