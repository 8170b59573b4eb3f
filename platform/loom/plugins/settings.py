"""Plugin settings: each plugin declares its settings as a JSON Schema
(``plugin_settings_schema`` hook); values live in ``loom_plugin_settings``, checked against
that schema on every save. Properties marked ``"secret": true`` (or ``"writeOnly": true``)
are stored encrypted (Fernet) and never shown back: listings, the API and the audit log
show ``***``. So are the values of an object property whose ``additionalProperties`` is
marked secret (named secrets: ``{"partner": "***"}``), whose names stay readable; a change
to such an object sets the names it gives (null removes one) and keeps the others.

The sealing key is LOOM_SETTINGS_KEY (a Fernet key, or any secret to derive one from),
else derived from the app's SECRET_KEY. Values sealed under an earlier key stay readable
while that key is listed in LOOM_SETTINGS_PREVIOUS_KEYS; ``rotate`` (``loom settings
rotate``) seals every stored secret again under the current key, after which the earlier
keys can go.

A plugin may also check its settings against the system they reach
(``plugin_test_connection``): ``test_connection`` runs that check with the saved values,
within a time limit, and audits the outcome."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pluggy
import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from sqlalchemy.orm import Mapped, mapped_column

from loom.db import Base, utcnow, write_transaction
from loom.errors import LoomError, NotFound, ValidationError, error_entry
from loom.permissions import Forbidden, live_policy
from loom.principal import Principal

MASK = "***"
#: what a stored secret value looks like: marked, so a value is never taken for the other kind
_SEALED = "fernet:"
#: what an unreadable secret that a change replaces stands for while the change is made
_REPLACED = "(sealed under another key)"
#: seconds a plugin's connection test may take before it is reported as not answering
CHECK_TIMEOUT = 15.0
#: how much of a connection test's message is kept (screens, API, audit log)
CHECK_MESSAGE_SIZE = 500


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


class UnreadableSecret(PluginSettingsError):
    """A stored secret that none of Loom's keys opens (or one stored unsealed): a conflict
    between what is stored and the keys configured, mended by setting it again or by
    listing the old key."""

    status = 409
    type = "https://loom.dev/problems/conflict"
    title = "Plugin setting unreadable"


def _fernet(secret_key: str) -> Fernet:
    """A Fernet key of its own, derived from a secret (HKDF), so the secret itself never
    encrypts anything."""
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                   info=b"loom plugin settings").derive(secret_key.encode("utf-8"))
    return Fernet(base64.urlsafe_b64encode(derived))


def _as_fernet_key(secret: str) -> Fernet | None:
    """``secret`` used as it is, when it is a Fernet key (32 bytes, URL-safe base64)."""
    try:
        if len(base64.urlsafe_b64decode(secret.encode("ascii"))) == 32:
            return Fernet(secret.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError, ValueError):
        pass
    return None


def sealing_keys(secret_key: str, settings_key: str | None = None,
                 previous_keys: Iterable[str] = ()) -> MultiFernet:
    """The keys settings are sealed and opened with: the first seals, each opens.

    The first is ``settings_key`` (a Fernet key used as it is, any other secret derived
    from), else derived from ``secret_key``. Each of ``previous_keys`` opens what it sealed,
    whichever way it was used (as a key, or as a secret derived from)."""
    current = (_as_fernet_key(settings_key) or _fernet(settings_key)) if settings_key else _fernet(secret_key)
    keys = [current]
    for previous in previous_keys:
        previous = previous.strip()
        if previous:
            keys.extend(k for k in (_as_fernet_key(previous), _fernet(previous)) if k is not None)
    return MultiFernet(keys)


def previous_keys_setting(raw: str | None) -> list[str]:
    """LOOM_SETTINGS_PREVIOUS_KEYS as a list: comma-separated, blanks left out."""
    return [part.strip() for part in (raw or "").split(",") if part.strip()]


def text_of(value: Any, locale: str = "en") -> str | None:
    """A schema's ``title`` or ``description``, given as a string or as ``{en, zh}``, in
    ``locale`` (its language alone, else English, else the first given)."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and value:
        language = locale.replace("-", "_").split("_")[0]
        for key in (locale, language, "en"):
            if isinstance(value.get(key), str):
                return value[key]
        return next((v for v in value.values() if isinstance(v, str)), None)
    return None


def may_manage_plugins(principal: Principal | None) -> bool:
    """Whether ``principal`` may read and change plugins' settings and test their
    connections: a superuser, a system principal, or a role with ``admin: [plugins]``."""
    if principal is None:
        return False
    from flask import current_app

    return live_policy(current_app.extensions["loom"].metadata.live()).grants_admin(principal, "plugins")


def require_plugin_admin(principal: Principal | None) -> None:
    """Refuse (403) anyone who may not manage plugins' settings."""
    if not may_manage_plugins(principal):
        raise Forbidden("managing plugin settings needs a role with admin: [plugins]", code="needs_admin",
                        params={"right": "plugins"})


@dataclass(frozen=True)
class CheckResult:
    """What a plugin's connection test came to: ``ok``, its message, and how long it took."""

    plugin: str
    ok: bool
    message: str
    seconds: float
    timed_out: bool = False


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

    def __init__(self, engine: sa.Engine, secret_key: str, plugins: pluggy.PluginManager, audit=None, *,
                 settings_key: str | None = None, previous_keys: Iterable[str] = ()):
        self.engine = engine
        self.audit = audit
        self._fernet = sealing_keys(secret_key, settings_key, previous_keys)
        self.schemas: dict[str, dict[str, Any]] = {}
        #: plugin name -> its connection test (``plugin_test_connection``)
        self.checks: dict[str, Callable[..., Any]] = {}
        owners: dict[int, str] = {}
        for impl in reversed(plugins.hook.plugin_settings_schema.get_hookimpls()):
            answer = impl.function()
            if answer is not None:
                self._declare(answer)
                owners[id(impl.plugin)] = answer[0]
        for impl in reversed(plugins.hook.plugin_test_connection.get_hookimpls()):
            name = owners.get(id(impl.plugin))
            if name is None:
                raise PluginSettingsError(f"plugin {impl.plugin_name} implements plugin_test_connection but declares "
                                          "no settings (plugin_settings_schema) for it to test")
            self.checks[name] = _bound(impl)

    def _declare(self, answer: Any) -> None:
        if not (isinstance(answer, tuple | list) and len(answer) == 2 and isinstance(answer[0], str)
                and isinstance(answer[1], Mapping)):
            raise PluginSettingsError(f"plugin_settings_schema must return (plugin name, JSON Schema), "
                                      f"not {answer!r}")
        name, schema = answer
        if name in self.schemas:
            raise PluginSettingsError(f"two plugins declare settings named '{name}'")
        try:
            Draft202012Validator.check_schema(_plain_texts(schema))
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

    def _opened_unless_replaced(self, plugin: str, schema: Mapping[str, Any], key: str, value: Any,
                                changes: Mapping[str, Any], unset: Iterable[str]) -> Any:
        """A stored value opened for a change; a secret the change replaces or removes
        need not open (sealed under a key Loom no longer has, it is set again this way)."""
        maps = secret_maps(schema)
        if key in maps and isinstance(value, Mapping) and isinstance(changes.get(key), Mapping):
            given = changes[key]
            return {name: _REPLACED if name in given else
                    self._open(plugin, f"{key}.{name}", item, assignment=f"{key}='{{\"{name}\": \"...\"}}'")
                    for name, item in value.items()}
        try:
            return self._opened(plugin, schema, key, value)
        except UnreadableSecret:
            if key in set(unset) or (key in changes and key not in maps):
                return _REPLACED
            raise

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
            raise UnreadableSecret(f"the secret setting {plugin}.{key} is stored unsealed; set it again")
        try:
            return json.loads(self._fernet.decrypt(value[len(_SEALED):].encode("ascii")))
        except InvalidToken:
            raise UnreadableSecret(
                f"the secret setting {plugin}.{key} was sealed with a key Loom no longer has (LOOM_SETTINGS_KEY "
                f"or LOOM_SECRET_KEY changed?): list the old one in LOOM_SETTINGS_PREVIOUS_KEYS, or set it again "
                f"with loom plugin set {plugin} {assignment or key + '=...'}") from None

    def stored(self, plugin: str) -> dict[str, Any] | None:
        """When and by whom the plugin's settings were last saved (``updated_at``,
        ``updated_by``), or None if they never were."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(table.c.updated_at, table.c.updated_by)
                               .where(table.c.plugin == plugin)).mappings().first()
        return dict(row) if row else None

    # -- writing ---------------------------------------------------------------------------

    def update(self, plugin: str, changes: Mapping[str, Any], *, unset: Iterable[str] = (),
               actor: str | None = None, principal: Principal | None = None) -> None:
        """Set ``changes`` and remove ``unset`` from the plugin's settings, all at once or
        not at all: the result must satisfy the plugin's schema, and every problem is
        reported (``ValidationError``, one entry per setting). Audited as ``actor`` (a
        name) or ``principal``."""
        if principal is not None:
            actor = principal.name
        if not actor:
            raise ValueError("a settings change needs an actor")
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
            clear = {k: self._opened_unless_replaced(plugin, schema, k, v, changes, unset)
                     for k, v in stored.items()}
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
                who = {"principal": principal} if principal is not None else {"actor": actor}
                self.audit.add(conn, "plugin.settings", changes=changed, detail={"plugin": plugin}, **who)

    def _seal(self, value: Any) -> str:
        return _SEALED + self._fernet.encrypt(json.dumps(value).encode("utf-8")).decode("ascii")

    # -- rotating the key ------------------------------------------------------------------

    def rotate(self, *, actor: str | None = None, principal: Principal | None = None) -> int:
        """Seal every stored secret again under the current key (each is opened with any of
        the current and previous keys); returns how many were sealed again. Every plugin's
        row counts, also one whose plugin is no longer installed. All or nothing: a secret
        no key opens stops the rotation, naming it, and nothing changes."""
        count, touched = 0, []
        with write_transaction(self.engine) as conn:
            rows = conn.execute(sa.select(table.c.plugin, table.c["values"]).order_by(table.c.plugin)).all()
            for plugin, values in rows:
                resealed, n = self._resealed(plugin, dict(values or {}))
                if n:
                    conn.execute(table.update().where(table.c.plugin == plugin).values(values=resealed))
                    count += n
                    touched.append(plugin)
            if self.audit is not None:
                who = {"principal": principal} if principal is not None else {"actor": actor or "system:settings"}
                self.audit.add(conn, "plugin.settings.rotate", detail={"secrets": count, "plugins": touched}, **who)
        return count

    def _resealed(self, plugin: str, values: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """``values`` with each sealed value (at the top, or in a map of named secrets)
        sealed again under the current key, and how many there were."""
        count = 0

        def again(path: str, value: str) -> str:
            nonlocal count
            try:
                token = self._fernet.rotate(value[len(_SEALED):].encode("ascii"))
            except InvalidToken:
                raise UnreadableSecret(
                    f"the secret setting {plugin}.{path} opens with none of the keys Loom has (LOOM_SETTINGS_KEY and "
                    f"LOOM_SETTINGS_PREVIOUS_KEYS): add the key it was sealed with to LOOM_SETTINGS_PREVIOUS_KEYS, "
                    f"or set it again with loom plugin set; nothing was rotated") from None
            count += 1
            return _SEALED + token.decode("ascii")

        # a declared plugin's secrets are where its schema says; an uninstalled plugin's
        # are found by their mark
        schema = self.schemas.get(plugin)
        hidden = secret_keys(schema) if schema is not None else None
        maps = secret_maps(schema) if schema is not None else None
        result: dict[str, Any] = {}
        for key, value in values.items():
            if isinstance(value, str) and value.startswith(_SEALED) and (hidden is None or key in hidden):
                result[key] = again(key, value)
            elif isinstance(value, Mapping) and (maps is None or key in maps):
                result[key] = {name: again(f"{key}.{name}", item)
                               if isinstance(item, str) and item.startswith(_SEALED) else item
                               for name, item in value.items()}
            else:
                result[key] = value
        return result, count

    # -- testing the connection ------------------------------------------------------------

    def test_connection(self, plugin: str, *, principal: Principal | None = None, actor: str | None = None,
                        timeout: float = CHECK_TIMEOUT) -> CheckResult:
        """Run the plugin's connection test with its saved settings, for at most
        ``timeout`` seconds, and audit what it came to (``plugin.settings.test``). A test
        that raises failed with its message; one that does not finish in time is reported
        so (its thread is left to end on its own). Secret values never appear in the
        message: any the plugin quotes are replaced by ``***``."""
        self.schema(plugin)
        check = self.checks.get(plugin)
        if check is None:
            raise NotFound(f"plugin {plugin} offers no connection test", code="no_connection_test",
                           params={"plugin": plugin})
        try:
            values = self.values(plugin)
        except UnreadableSecret as unreadable:  # a secret no key opens: the test cannot start
            return self._audited(CheckResult(plugin, False, unreadable.detail, 0.0), principal, actor)
        outcome: dict[str, Any] = {}
        app = _current_app()

        def run() -> None:
            try:
                if app is not None:
                    with app.app_context():
                        outcome["answer"] = check(settings=values)
                else:
                    outcome["answer"] = check(settings=values)
            except Exception as error:  # the plugin's failure is the test's answer
                outcome["error"] = str(error) or type(error).__name__

        started = time.monotonic()
        worker = threading.Thread(target=run, name=f"loom-settings-test-{plugin}", daemon=True)
        worker.start()
        worker.join(timeout)
        seconds = round(time.monotonic() - started, 3)
        if worker.is_alive():
            result = CheckResult(plugin, False, f"no answer within {timeout:g} seconds", seconds, timed_out=True)
        elif "error" in outcome:
            result = CheckResult(plugin, False, self._scrubbed(plugin, values, outcome["error"]), seconds)
        else:
            answer = outcome.get("answer")
            result = CheckResult(plugin, True, self._scrubbed(plugin, values, "" if answer is None else str(answer)),
                                 seconds)
        return self._audited(result, principal, actor)

    def _audited(self, result: CheckResult, principal: Principal | None, actor: str | None) -> CheckResult:
        if self.audit is not None:
            who = {"principal": principal} if principal is not None else {"actor": actor or "system:settings"}
            self.audit.add_alone("plugin.settings.test", detail={
                "plugin": result.plugin, "ok": result.ok, "message": result.message, "seconds": result.seconds},
                **who)
        return result

    def _scrubbed(self, plugin: str, values: Mapping[str, Any], message: str) -> str:
        schema = self.schema(plugin)
        secrets: list[str] = []
        for key in secret_keys(schema):
            if values.get(key) is not None:
                secrets.append(values[key] if isinstance(values[key], str) else json.dumps(values[key]))
        for key in secret_maps(schema):
            if isinstance(values.get(key), Mapping):
                secrets += [v if isinstance(v, str) else json.dumps(v) for v in values[key].values()]
        for secret in sorted((s for s in secrets if s), key=len, reverse=True):
            message = message.replace(secret, MASK)
        message = " ".join(message.split())
        return message if len(message) <= CHECK_MESSAGE_SIZE else message[:CHECK_MESSAGE_SIZE - 1] + "…"


#: the keywords whose value maps names to schemas (not a schema itself)
_NAMED_SCHEMAS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")


def _plain_texts(schema: Any) -> Any:
    """``schema`` with each ``title`` and ``description`` given as ``{en, zh}`` in English,
    as the JSON Schema meta-schema (which wants strings) checks it."""
    if isinstance(schema, list):
        return [_plain_texts(item) for item in schema]
    if not isinstance(schema, Mapping):
        return schema
    plain: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _NAMED_SCHEMAS and isinstance(value, Mapping):
            plain[key] = {name: _plain_texts(item) for name, item in value.items()}
        elif key in ("title", "description") and isinstance(value, Mapping) and value \
                and all(isinstance(v, str) for v in value.values()):
            plain[key] = text_of(value)
        else:
            plain[key] = _plain_texts(value)
    return plain


def _bound(impl) -> Callable[..., Any]:
    """A hook implementation called on its own, with the parameters it names."""
    def call(**kwargs: Any) -> Any:
        return impl.function(**{name: kwargs[name] for name in impl.argnames})
    return call


def _current_app():
    from flask import current_app, has_app_context

    return current_app._get_current_object() if has_app_context() else None


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
