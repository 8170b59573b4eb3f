"""Plugin settings: each plugin declares its settings as a JSON Schema
(``plugin_settings_schema`` hook); values live in ``loom_plugin_settings``, checked against
that schema on every save. Properties marked ``"secret": true`` (or ``"writeOnly": true``)
are stored encrypted with a key derived from the app's SECRET_KEY and never shown back:
listings and the audit log show ``***``. So are the values of an object property whose
``additionalProperties`` is marked secret (named secrets: ``{"partner": "***"}``), whose
names stay readable; a change to such an object sets the names it gives (null removes one)
and keeps the others."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Iterable, Mapping
from typing import Any

import pluggy
import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from sqlalchemy.orm import Mapped, mapped_column

from loom.db import Base, utcnow, write_transaction
from loom.errors import LoomError, NotFound, ValidationError, error_entry

MASK = "***"
#: what a stored secret value looks like: marked, so a value is never taken for the other kind
_SEALED = "fernet:"


class PluginSetting(Base):
    """One plugin's settings: a JSON object, secrets sealed."""

    __tablename__ = "loom_plugin_settings"

    plugin: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    values: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    updated_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    updated_by: Mapped[str] = mapped_column(sa.String(200))


table = PluginSetting.__table__


class PluginSettingsError(LoomError):
    """A plugin's settings cannot be read: declared wrongly, or sealed with another key."""

    status = 500
    title = "Plugin settings unusable"


def _fernet(secret_key: str) -> Fernet:
    """A Fernet key of its own, derived from the app's secret key (HKDF), so the secret
    key itself never encrypts anything and rotating it is one setting."""
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                   info=b"loom plugin settings").derive(secret_key.encode("utf-8"))
    return Fernet(base64.urlsafe_b64encode(derived))


def secret_keys(schema: Mapping[str, Any]) -> frozenset[str]:
    """The top-level properties ``schema`` marks secret (``secret`` or ``writeOnly``)."""
    properties = schema.get("properties") or {}
    return frozenset(name for name, prop in properties.items()
                     if isinstance(prop, Mapping) and (prop.get("secret") or prop.get("writeOnly")))


def secret_maps(schema: Mapping[str, Any]) -> frozenset[str]:
    """The top-level object properties whose values (``additionalProperties``) ``schema``
    marks secret: each value is sealed on its own, the names are not."""
    properties = schema.get("properties") or {}
    return frozenset(name for name, prop in properties.items()
                     if isinstance(prop, Mapping) and isinstance(prop.get("additionalProperties"), Mapping)
                     and (prop["additionalProperties"].get("secret") or prop["additionalProperties"].get("writeOnly")))


class PluginSettings:
    """The settings of every plugin of one app: ``current_app.extensions['loom'].settings``."""

    def __init__(self, engine: sa.Engine, secret_key: str, plugins: pluggy.PluginManager, audit=None):
        self.engine = engine
        self.audit = audit
        self._fernet = _fernet(secret_key)
        self.schemas: dict[str, dict[str, Any]] = {}
        for answer in plugins.hook.plugin_settings_schema():
            self._declare(answer)

    def _declare(self, answer: Any) -> None:
        if not (isinstance(answer, tuple | list) and len(answer) == 2 and isinstance(answer[0], str)
                and isinstance(answer[1], Mapping)):
            raise PluginSettingsError(f"plugin_settings_schema must return (plugin name, JSON Schema), "
                                      f"not {answer!r}")
        name, schema = answer
        if name in self.schemas:
            raise PluginSettingsError(f"two plugins declare settings named '{name}'")
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as error:
            raise PluginSettingsError(f"the settings schema of plugin '{name}' is not a valid JSON Schema: "
                                      f"{error.message}") from None
        if schema.get("type", "object") != "object":
            raise PluginSettingsError(f"the settings schema of plugin '{name}' must describe an object")
        self.schemas[name] = dict(schema)

    def schema(self, plugin: str) -> dict[str, Any]:
        try:
            return self.schemas[plugin]
        except KeyError:
            known = ", ".join(sorted(self.schemas)) or "none"
            raise NotFound(f"no plugin declares settings named '{plugin}' (plugins with settings: {known})") \
                from None

    # -- reading ---------------------------------------------------------------------------

    def _stored(self, conn: sa.Connection, plugin: str) -> dict[str, Any]:
        row = conn.execute(sa.select(table.c["values"]).where(table.c.plugin == plugin)).first()
        return dict(row[0]) if row else {}

    def values(self, plugin: str) -> dict[str, Any]:
        """The plugin's settings in clear, with the schema's defaults for unset properties.
        For the plugin's own code only: never show the result to a person."""
        schema = self.schema(plugin)
        with self.engine.connect() as conn:
            stored = self._stored(conn, plugin)
        values = {name: prop["default"] for name, prop in (schema.get("properties") or {}).items()
                  if isinstance(prop, Mapping) and "default" in prop}
        for key, value in stored.items():
            values[key] = self._opened(plugin, schema, key, value)
        return values

    def _opened(self, plugin: str, schema: Mapping[str, Any], key: str, value: Any) -> Any:
        if key in secret_keys(schema):
            return self._open(plugin, key, value)
        if key in secret_maps(schema) and isinstance(value, Mapping):
            return {name: self._open(plugin, f"{key}.{name}", item, assignment=f"{key}='{{\"{name}\": \"...\"}}'")
                    for name, item in value.items()}
        return value

    def _sealed(self, schema: Mapping[str, Any], key: str, value: Any) -> Any:
        if key in secret_keys(schema):
            return self._seal(value)
        if key in secret_maps(schema) and isinstance(value, Mapping):
            return {name: self._seal(item) for name, item in value.items()}
        return value

    def masked(self, plugin: str) -> dict[str, Any]:
        """The stored settings as a person may see them: secrets as ``***``."""
        schema = self.schema(plugin)
        with self.engine.connect() as conn:
            stored = self._stored(conn, plugin)
        hidden, maps = secret_keys(schema), secret_maps(schema)
        return {key: _shown(key, value, hidden, maps) for key, value in sorted(stored.items())}

    def _open(self, plugin: str, key: str, value: Any, *, assignment: str | None = None) -> Any:
        if not (isinstance(value, str) and value.startswith(_SEALED)):
            raise PluginSettingsError(f"the secret setting {plugin}.{key} is stored unsealed; set it again")
        try:
            return json.loads(self._fernet.decrypt(value[len(_SEALED):].encode("ascii")))
        except InvalidToken:
            raise PluginSettingsError(
                f"the secret setting {plugin}.{key} was sealed with another secret key (LOOM_SECRET_KEY "
                f"changed?); set it again with loom plugin set {plugin} {assignment or key + '=...'}") from None

    # -- writing ---------------------------------------------------------------------------

    def update(self, plugin: str, changes: Mapping[str, Any], *, unset: Iterable[str] = (),
               actor: str) -> None:
        """Set ``changes`` and remove ``unset`` from the plugin's settings, all at once or
        not at all: the result must satisfy the plugin's schema, and every problem is
        reported (``ValidationError``, one entry per setting)."""
        schema = self.schema(plugin)
        hidden, maps = secret_keys(schema), secret_maps(schema)
        properties = schema.get("properties") or {}
        unknown = [k for k in [*changes, *unset] if properties and k not in properties]
        if unknown:
            raise ValidationError(
                f"plugin {plugin} has no setting named {', '.join(sorted(set(unknown)))}; "
                f"its settings are: {', '.join(properties)}",
                errors=[error_entry(k, "unknown_field", "no such setting", name=k) for k in sorted(set(unknown))])
        with write_transaction(self.engine) as conn:
            stored = self._stored(conn, plugin)
            clear = {k: self._opened(plugin, schema, k, v) for k, v in stored.items()}
            new = {k: v for k, v in clear.items() if k not in set(unset)}
            new.update(changes)
            for key in maps & set(changes):
                # named secrets are shown masked, so a change names only the ones it sets
                # (or, with null, removes): the others keep their sealed values
                if isinstance(changes[key], Mapping) and isinstance(clear.get(key) or {}, Mapping):
                    merged = {**(clear.get(key) or {}), **changes[key]}
                    new[key] = {name: value for name, value in merged.items() if value is not None}
            problems = sorted(Draft202012Validator(schema).iter_errors(new), key=lambda e: list(e.absolute_path))
            if problems:
                errors = [_error(e, hidden | maps) for e in problems]
                raise ValidationError(f"the settings of plugin {plugin} are not valid: "
                                      + "; ".join(f"{e['field'] or '(settings)'}: {e['message']}" for e in errors),
                                      errors=errors)
            sealed = {k: self._sealed(schema, k, v) for k, v in new.items()}
            values = {"values": sealed, "updated_at": utcnow(), "updated_by": actor}
            if conn.execute(sa.select(table.c.plugin).where(table.c.plugin == plugin)).first():
                conn.execute(table.update().where(table.c.plugin == plugin).values(**values))
            else:
                conn.execute(table.insert().values(plugin=plugin, **values))
            if self.audit is not None:
                changed = {k: [_shown(k, clear.get(k), hidden, maps), _shown(k, new.get(k), hidden, maps)]
                           for k in sorted(set(clear) | set(new)) if clear.get(k) != new.get(k)}
                self.audit.add(conn, "plugin.settings", actor=actor, changes=changed, detail={"plugin": plugin})

    def _seal(self, value: Any) -> str:
        return _SEALED + self._fernet.encrypt(json.dumps(value).encode("utf-8")).decode("ascii")


def _shown(key: str, value: Any, hidden: frozenset[str], maps: frozenset[str] = frozenset()) -> Any:
    if key in maps and isinstance(value, Mapping):
        return {name: MASK for name in sorted(value)}
    return MASK if key in hidden and value is not None else value


def _error(error, hidden: frozenset[str]) -> dict[str, Any]:
    """A schema violation as Loom's error data; a secret's value is never quoted back."""
    path = list(error.absolute_path)
    field = ".".join(str(p) for p in path)
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else ""
        return error_entry(missing, "required", "is required")
    message = error.message
    if path and path[0] in hidden:
        message = f"does not satisfy '{error.validator}' of the schema"
    # the schema's own words: no code of Loom's says them, so clients read the message
    return error_entry(field, "invalid", message, rule=str(error.validator))


def plugin_settings(name: str) -> dict[str, Any]:
    """The settings of plugin ``name`` in clear, defaults filled in: ``loom.plugin_settings``,
    for the plugin's own code running inside Loom (a request, a command, a job, an event
    consumer). Never show the result to a person: it holds the secrets in clear."""
    from flask import current_app

    return current_app.extensions["loom"].settings.values(name)
