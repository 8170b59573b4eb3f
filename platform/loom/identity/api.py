"""Signing in and out, and who am I: ``/api/v1/_auth``."""

from __future__ import annotations

from flask import Blueprint, current_app, g, jsonify, request, session
from flask_wtf.csrf import generate_csrf

from loom.errors import BadRequest

auth = Blueprint("auth", __name__, url_prefix="/api/v1/_auth")


def _identity():
    return current_app.extensions["loom"].identity


@auth.post("/login")
def login():
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("username"), str) \
            or not isinstance(body.get("password"), str):
        raise BadRequest("send {\"username\": ..., \"password\": ...} as JSON")
    token, principal = _identity().sign_in(body["username"], body["password"], ip=request.remote_addr,
                                           user_agent=request.headers.get("User-Agent"))
    session.clear()
    session["sid"] = token
    return jsonify({"data": _me(principal)})


@auth.post("/logout")
def logout():
    token = session.get("sid")
    if token:
        _identity().sign_out(token, actor=g.principal.name, ip=request.remote_addr)
    session.clear()
    return "", 204


@auth.get("/me")
def me():
    return jsonify({"data": _me(g.principal)})


def _me(principal) -> dict:
    return {"username": principal.name, "id": principal.user_id, "roles": list(principal.roles),
            "locale": principal.locale, "is_superuser": principal.is_superuser,
            "read_only": principal.read_only, "csrf_token": generate_csrf()}
