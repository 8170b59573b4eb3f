"""The hand-written baseline: the Customer REST endpoints as a developer would write them
with Flask and SQLAlchemy Core, with no metadata, plugins or outbox.

It serves the same URLs and the same JSON (record shape, ``next_cursor``, problem
details, ETag) as Loom's generated API for the Customer entity, so the load generator
can drive both alike and the benchmark can check that their answers are identical.
It reads and writes the very table Loom created (``e_customer``). Validation covers the
same fields and rules as the entity document in ``benchlib.customer_document``.

Like Loom's API it refuses requests without a valid bearer token, and lets through only
users holding the benchmark's role, checked by hand in one query against Loom's token,
user and role-assignment tables.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import hashlib
import hmac
import json
import re
from typing import Any

import sqlalchemy as sa
from benchlib import LEVELS, REGIONS, ROLE
from flask import Flask, g, jsonify, request

metadata = sa.MetaData()
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
users = sa.Table(
    "loom_users", metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("username", sa.String(150)),
    sa.Column("display_name", sa.String(200)),
    sa.Column("is_active", sa.Boolean),
)
tokens = sa.Table(
    "loom_api_tokens", metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("token_hash", sa.String(64)),
    sa.Column("user_id", sa.BigInteger),
    sa.Column("read_only", sa.Boolean),
    sa.Column("expires_at", sa.DateTime(timezone=True)),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
)
assignments = sa.Table(
    "loom_role_assignments", metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("user_id", sa.BigInteger),
    sa.Column("role", sa.String(100)),
)
customers = sa.Table(
    "e_customer", metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("owner", sa.BigInteger),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_by", sa.BigInteger),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_by", sa.BigInteger),
    sa.Column("name", sa.String),
    sa.Column("credit_code", sa.String),
    sa.Column("level", sa.String),
    sa.Column("region", sa.String),
    sa.Column("credit_limit", sa.Numeric(14, 2, asdecimal=True)),
    sa.Column("mobile", sa.String),
    sa.Column("email", sa.String),
    sa.Column("city", sa.String),
    sa.Column("notes", sa.Text),
    sa.Column("account_manager", sa.BigInteger),
)

LINKS = ("owner", "created_by", "updated_by", "account_manager")
PLAIN = ("name", "credit_code", "level", "region", "credit_limit", "mobile", "email", "city", "notes")
WRITABLE = frozenset(PLAIN) | {"owner", "account_manager"}
MAX_LIMIT = 500
_MOBILE = re.compile(r"^1[3-9]\d{9}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
_ETAG = re.compile(r'^(?:W/)?"?(\d+)"?$')
_CENT = decimal.Decimal("0.01")


class Problem(Exception):
    """An error answered as problem details (the same statuses Loom uses)."""

    def __init__(self, status: int, title: str, detail: str, errors: list[dict[str, str]] | None = None):
        super().__init__(detail)
        self.status, self.title, self.detail, self.errors = status, title, detail, errors or []


def _record_query() -> sa.Select:
    """A customer with the titles of the users it links to, in one statement."""
    columns: list[Any] = [customers]
    joined: sa.FromClause = customers
    for name in LINKS:
        alias = users.alias(f"u_{name}")
        title = sa.func.coalesce(sa.func.nullif(alias.c.display_name, ""), alias.c.username)
        columns.append(title.label(f"{name}__title"))
        joined = joined.outerjoin(alias, alias.c.id == customers.c[name])
    return sa.select(*columns).select_from(joined)


RECORD = _record_query()
#: the user of a valid, unexpired, unrevoked token, if that user is active and holds ROLE
TOKEN_USER = (
    sa.select(tokens.c.user_id, tokens.c.read_only)
    .select_from(tokens.join(users, users.c.id == tokens.c.user_id))
    .where(tokens.c.token_hash == sa.bindparam("digest"), tokens.c.revoked_at.is_(None),
           sa.or_(tokens.c.expires_at.is_(None), tokens.c.expires_at > sa.bindparam("now")),
           users.c.is_active.is_(True),
           sa.exists().where(assignments.c.user_id == tokens.c.user_id, assignments.c.role == ROLE))
)


def _timestamp(value: dt.datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _serialize(row: Any) -> dict[str, Any]:
    m = row._mapping
    limit = m["credit_limit"]
    record: dict[str, Any] = {
        "id": m["id"],
        "version": m["version"],
        "owner": None,
        "created_at": _timestamp(m["created_at"]),
        "created_by": None,
        "updated_at": _timestamp(m["updated_at"]),
        "updated_by": None,
    }
    for name in PLAIN:
        record[name] = m[name]
    record["credit_limit"] = None if limit is None else format(decimal.Decimal(limit).quantize(_CENT), "f")
    record["account_manager"] = None
    for name in LINKS:
        if m[name] is not None:
            record[name] = {"id": m[name], "title": m[f"{name}__title"]}
    return record


# -- validation by hand ---------------------------------------------------------------------

def _text(name: str, value: Any, errors: list, max_length: int | None = None) -> str | None:
    if not isinstance(value, str):
        errors.append({"field": name, "message": "expected text"})
        return None
    if max_length is not None and len(value) > max_length:
        errors.append({"field": name, "message": f"at most {max_length} characters"})
    return value


def _choice(name: str, value: Any, allowed: tuple[str, ...], errors: list) -> str | None:
    if value not in allowed:
        errors.append({"field": name, "message": f"must be one of: {', '.join(allowed)}"})
        return None
    return value


def _money(name: str, value: Any, errors: list) -> decimal.Decimal | None:
    try:
        number = decimal.Decimal(repr(value) if isinstance(value, float) else str(value).strip())
    except (decimal.InvalidOperation, ValueError):
        number = None
    if isinstance(value, bool) or number is None or not number.is_finite():
        errors.append({"field": name, "message": "expected a number"})
        return None
    if number.quantize(_CENT) != number:
        errors.append({"field": name, "message": "at most 2 decimal places"})
    elif abs(number) >= 10**12:
        errors.append({"field": name, "message": "at most 12 digits before the decimal point"})
    return number


def _user_id(name: str, value: Any, errors: list) -> int | None:
    if isinstance(value, dict):
        value = value.get("id")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        errors.append({"field": name, "message": "expected the id of a user record"})
        return None
    return value


def validate(body: Any, *, partial: bool) -> dict[str, Any]:
    """The typed values of a create (``partial=False``) or PATCH body; 422 listing every
    invalid field otherwise."""
    if not isinstance(body, dict):
        raise Problem(422, "Invalid values", "the body must be a JSON object of field values",
                      [{"field": "", "message": "expected a JSON object"}])
    errors: list[dict[str, str]] = []
    values: dict[str, Any] = {}
    for name, raw in body.items():
        if name == "version":
            continue
        if name not in WRITABLE:
            errors.append({"field": name, "message": "unknown field: this entity has no such field"})
            continue
        if raw is None or (isinstance(raw, str) and raw.strip() == ""):
            values[name] = None
        elif name in ("name", "credit_code", "city", "notes", "mobile", "email"):
            limits = {"name": 200, "credit_code": 18, "city": 100}
            text = _text(name, raw, errors, limits.get(name))
            if text is not None and name == "mobile" and not _MOBILE.match(text):
                errors.append({"field": name, "message": "a mainland mobile number has 11 digits and starts with 1"})
            if text is not None and name == "email" and not _EMAIL.match(text):
                errors.append({"field": name, "message": "not an email address (expected name@example.com)"})
            values[name] = text
        elif name == "level":
            values[name] = _choice(name, raw, LEVELS, errors)
        elif name == "region":
            values[name] = _choice(name, raw, REGIONS, errors)
        elif name == "credit_limit":
            values[name] = _money(name, raw, errors)
        else:
            values[name] = _user_id(name, raw, errors)
    if ("name" in values or not partial) and values.get("name") is None:
        errors.append({"field": "name", "message": "is required"})
    if errors:
        raise Problem(422, "Invalid values", f"{len(errors)} invalid value(s)", errors)
    return values


def _integrity(exc: sa.exc.IntegrityError) -> Problem:
    message = str(exc.orig)
    constraint = getattr(getattr(exc.orig, "diag", None), "constraint_name", None) or ""
    if "credit_code" in constraint or "credit_code" in message:
        return Problem(409, "Conflict", "another customer already has this credit_code",
                       [{"field": "credit_code", "message": "must be unique; another record has this value"}])
    if "FOREIGN KEY" in message or constraint.startswith("fk_"):
        return Problem(422, "Invalid values", "a linked user does not exist",
                       [{"field": "account_manager", "message": "there is no such user"}])
    return Problem(409, "Conflict", "the change conflicts with other records")


# -- keyset cursors ---------------------------------------------------------------------------

class Cursors:
    """Signed cursors holding the last row's (created_at, id)."""

    def __init__(self, secret: str):
        self.secret = secret.encode()

    def _sign(self, payload: bytes) -> str:
        return hmac.new(self.secret, payload, hashlib.sha256).hexdigest()[:24]

    def encode(self, created_at: str, record_id: int) -> str:
        payload = json.dumps([created_at, record_id], separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(payload).decode().rstrip("=") + "." + self._sign(payload)

    def decode(self, cursor: str) -> tuple[dt.datetime, int]:
        body, _, signature = cursor.partition(".")
        try:
            payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            if not hmac.compare_digest(self._sign(payload), signature):
                raise ValueError(cursor)
            created_at, record_id = json.loads(payload)
            return dt.datetime.fromisoformat(created_at.replace("Z", "+00:00")), int(record_id)
        except (ValueError, TypeError):
            raise Problem(400, "Bad request", "cursor is not valid for this list; start again without it",
                          [{"field": "cursor", "message": "invalid cursor"}]) from None


# -- the app ----------------------------------------------------------------------------------

def create_app(engine: sa.Engine, secret: str) -> Flask:
    """The baseline app on ``engine`` (made by the same engine factory as Loom's)."""
    app = Flask("baseline")
    app.json.sort_keys = False
    app.json.ensure_ascii = False
    cursors = Cursors(secret)
    by_id = RECORD.where(customers.c.id == sa.bindparam("record_id"))

    def problem(exc: Problem):
        body: dict[str, Any] = {"type": "about:blank", "title": exc.title, "status": exc.status,
                                "detail": exc.detail}
        if exc.errors:
            body["errors"] = exc.errors
        response = jsonify(body)
        response.status_code = exc.status
        response.mimetype = "application/problem+json"
        return response

    app.register_error_handler(Problem, problem)

    @app.before_request
    def authenticate() -> None:
        scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Problem(401, "Unauthorized", "send Authorization: Bearer <token>")
        digest = hashlib.sha256(token.strip().encode()).hexdigest()
        with engine.connect() as conn:
            row = conn.execute(TOKEN_USER, {"digest": digest, "now": dt.datetime.now(dt.UTC)}).first()
        if row is None:
            raise Problem(401, "Unauthorized", "the token is unknown, expired or revoked, or may not use customers")
        if row.read_only and request.method not in ("GET", "HEAD"):
            raise Problem(403, "Forbidden", "a read-only token cannot change customers")
        g.user_id = row.user_id

    def body() -> Any:
        data = request.get_json(force=True, silent=True)
        if data is None:
            raise Problem(400, "Bad request", "the body is not valid JSON")
        return data

    def fetch(conn: sa.Connection, record_id: int) -> dict[str, Any]:
        row = conn.execute(by_id, {"record_id": record_id}).first()
        if row is None:
            raise Problem(404, "Not found", f"there is no customer with id {record_id}")
        return _serialize(row)

    def with_etag(response, record: dict[str, Any]):
        response.headers["ETag"] = f'"{record["version"]}"'
        return response

    @app.get("/api/v1/customer")
    def list_customers():
        args = request.args
        unknown = set(args) - {"filter[region][eq]", "sort", "limit", "cursor"}
        if unknown:
            raise Problem(400, "Bad request", f"unknown query parameter '{sorted(unknown)[0]}'")
        if args.get("sort", "-created_at,-id") not in ("-created_at", "-created_at,-id"):
            raise Problem(400, "Bad request", "sort: only -created_at,-id is supported")
        try:
            limit = int(args.get("limit", 50))
        except ValueError:
            limit = 0
        if not 1 <= limit <= MAX_LIMIT:
            raise Problem(400, "Bad request", f"limit must be a whole number from 1 to {MAX_LIMIT}")
        query = RECORD
        if "filter[region][eq]" in args:
            errors: list[dict[str, str]] = []
            region = _choice("filter[region][eq]", args["filter[region][eq]"], REGIONS, errors)
            if errors:
                raise Problem(400, "Bad request", errors[0]["message"], errors)
            query = query.where(customers.c.region == region)
        if args.get("cursor"):
            created_at, last_id = cursors.decode(args["cursor"])
            query = query.where(sa.or_(customers.c.created_at < created_at,
                                       sa.and_(customers.c.created_at == created_at, customers.c.id < last_id)),
                                customers.c.created_at <= created_at)
        query = query.order_by(customers.c.created_at.desc(), customers.c.id.desc()).limit(limit + 1)
        with engine.connect() as conn:
            rows = conn.execute(query).all()
        data = [_serialize(row) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = data[-1]
            next_cursor = cursors.encode(last["created_at"], last["id"])
        return jsonify({"data": data, "next_cursor": next_cursor})

    @app.get("/api/v1/customer/<int:record_id>")
    def get_customer(record_id: int):
        with engine.connect() as conn:
            record = fetch(conn, record_id)
        return with_etag(jsonify({"data": record}), record)

    @app.post("/api/v1/customer")
    def create_customer():
        values = validate(body(), partial=False)
        values.setdefault("owner", g.user_id)
        now = dt.datetime.now(dt.UTC)
        row = {name: None for name in WRITABLE} | values
        row |= {"version": 1, "created_at": now, "updated_at": now, "created_by": g.user_id, "updated_by": g.user_id}
        try:
            with engine.begin() as conn:
                record_id = conn.execute(customers.insert().values(row).returning(customers.c.id)).scalar_one()
                record = fetch(conn, record_id)
        except sa.exc.IntegrityError as exc:
            raise _integrity(exc) from None
        response = jsonify({"data": record})
        response.status_code = 201
        response.headers["Location"] = f"/api/v1/customer/{record_id}"
        return with_etag(response, record)

    @app.patch("/api/v1/customer/<int:record_id>")
    def update_customer(record_id: int):
        data = body()
        expected = None
        header = (request.headers.get("If-Match") or "").strip()
        if header and header != "*":
            match = _ETAG.match(header)
            if not match:
                raise Problem(412, "Record was changed by someone else", "If-Match must be an ETag")
            expected = int(match.group(1))
        elif isinstance(data, dict) and data.get("version") is not None:
            expected = data["version"]
        values = validate(data, partial=True)
        statement = customers.update().where(customers.c.id == record_id)
        if expected is not None:
            statement = statement.where(customers.c.version == expected)
        statement = statement.values(**values, version=customers.c.version + 1,
                                     updated_at=dt.datetime.now(dt.UTC), updated_by=g.user_id)
        try:
            with engine.begin() as conn:
                if conn.execute(statement).rowcount != 1:
                    fetch(conn, record_id)
                    raise Problem(412, "Record was changed by someone else",
                                  "this customer was changed by someone else; reload it")
                record = fetch(conn, record_id)
        except sa.exc.IntegrityError as exc:
            raise _integrity(exc) from None
        return with_etag(jsonify({"data": record}), record)

    return app
