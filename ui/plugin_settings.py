"""The plugin settings screens, for superusers and roles with ``admin: [plugins]``: the
plugins that declare settings, and one plugin's settings as a form generated from the
JSON Schema it declares, with its connection test where the plugin offers one.

The form never holds a secret: a secret's input is empty, meaning "keep the saved value",
with a note saying whether one is saved. Saving goes through ``PluginSettings.update``
(the API and ``loom plugin set`` do too), so the schema check, the sealing and the audit
entry are the same everywhere.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import abort, current_app, flash, g, render_template, request, url_for

from loom.errors import ValidationError
from loom.plugins.settings import (
    MASK,
    PluginSettings,
    UnreadableSecret,
    may_manage_plugins,
    require_plugin_admin,
    secret_keys,
    secret_maps,
    text_of,
)
from loom.ui.i18n import current_locale, gettext
from loom.ui.pages import pages, redirect_to, render_page
from loom.ui.screens import local_time

#: the input name prefixes: a setting's value, a secret's "clear it" box, a named-secrets table
VALUE, CLEAR, MAP = "v.", "clear.", "m."


def _settings() -> PluginSettings:
    return current_app.extensions["loom"].settings


@dataclass
class Row:
    """One named secret of a named-secrets table: saved (its name fixed) or new."""

    key: str
    name: str = ""
    saved: bool = False
    remove: bool = False
    error: str = ""


@dataclass
class SettingField:
    """One setting as the form shows it."""

    name: str
    widget: str  # text, url, email, select, integer, number, boolean, secret, secret_map, lines, json
    label: str
    help: str | None
    required: bool
    schema: Mapping[str, Any]
    value: Any = None  # the text shown (never a secret)
    is_set: bool = False  # a secret: whether one is saved
    default: Any = None
    options: list[str] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def input_id(self) -> str:
        return "s-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in self.name)

    @property
    def default_text(self) -> str | None:
        if self.default is None or self.default in ([], {}, ""):
            return None
        if isinstance(self.default, bool):
            return gettext("on") if self.default else gettext("off")
        if isinstance(self.default, list):
            return ", ".join(str(v) for v in self.default)
        return str(self.default)


def _widget(prop: Mapping[str, Any], secret: bool, secret_map: bool) -> str:
    kind = prop.get("type")
    if secret_map:
        return "secret_map"
    if secret:
        return "secret"
    if "enum" in prop and all(isinstance(v, str) for v in prop["enum"]):
        return "select"
    if kind == "string":
        return {"uri": "url", "email": "email"}.get(prop.get("format"), "text")
    if kind in ("integer", "number", "boolean"):
        return kind
    if kind == "array" and (prop.get("items") or {}).get("type") == "string":
        return "lines"
    return "json"


def _shown_value(widget: str, value: Any) -> Any:
    """A saved value as the form's input shows it."""
    if value is None:
        return None
    if widget == "lines":
        return "\n".join(str(v) for v in value) if isinstance(value, list) else json.dumps(value)
    if widget == "json":
        return json.dumps(value, ensure_ascii=False, indent=2)
    if widget == "boolean":
        return bool(value)
    return value if isinstance(value, str) else json.dumps(value)


def build_fields(plugin: str) -> list[SettingField]:
    """The plugin's settings as form fields, holding the saved values (secrets: only
    whether they are set)."""
    settings = _settings()
    schema = settings.schema(plugin)
    saved = settings.masked(plugin)
    hidden, maps = secret_keys(schema), secret_maps(schema)
    required = set(schema.get("required") or ())
    locale = current_locale()
    fields = []
    for name, prop in (schema.get("properties") or {}).items():
        if not isinstance(prop, Mapping):
            continue
        widget = _widget(prop, name in hidden, name in maps)
        f = SettingField(name=name, widget=widget, label=text_of(prop.get("title"), locale) or name,
                         help=text_of(prop.get("description"), locale), required=name in required, schema=prop,
                         default=prop.get("default"),
                         options=[v for v in prop.get("enum") or [] if isinstance(v, str)])
        value = saved.get(name)
        if widget == "secret":
            f.is_set = value == MASK
        elif widget == "secret_map":
            f.rows = [Row(key=f"s{i}", name=n, saved=True) for i, n in enumerate(sorted(value or {}))]
            f.rows.append(Row(key=_new_key()))
        else:
            f.value = _shown_value(widget, value)
        fields.append(f)
    return fields


def _new_key() -> str:
    return "n" + secrets.token_hex(4)


# -- reading the form -----------------------------------------------------------------------

def _typed(f: SettingField, raw: str) -> Any:
    """The text typed for a setting, as its schema's type; ValueError with the message to
    show when it cannot be."""
    kind = f.schema.get("type")
    if f.widget == "integer" or (f.widget == "secret" and kind == "integer"):
        try:
            return int(raw.strip())
        except ValueError:
            raise ValueError(gettext("Enter a whole number.")) from None
    if f.widget == "number" or (f.widget == "secret" and kind == "number"):
        try:
            number = float(raw.strip())
        except ValueError:
            raise ValueError(gettext("Enter a number.")) from None
        if number != number or number in (float("inf"), float("-inf")):
            raise ValueError(gettext("Enter a number."))
        return int(number) if number.is_integer() and "." not in raw and "e" not in raw.lower() else number
    if f.widget == "json":
        try:
            return json.loads(raw)
        except ValueError:
            raise ValueError(gettext("Enter valid JSON.")) from None
    return raw


def read_form(fields: list[SettingField], form) -> tuple[dict[str, Any], list[str]]:
    """The changes and removals the form asks for; errors of what cannot even be typed are
    put on the fields. The fields keep what was typed (never a secret) for showing again."""
    changes: dict[str, Any] = {}
    unset: list[str] = []
    for f in fields:
        name = VALUE + f.name
        if f.widget == "boolean":
            before, f.value = f.value, form.get(name) == "on"
            # an unticked box of a setting never saved, whose default is off, stays unsaved
            if f.value or before is not None or f.default:
                changes[f.name] = f.value
        elif f.widget == "secret":
            raw = form.get(name, "")
            if form.get(CLEAR + f.name) == "on":
                unset.append(f.name)
            elif raw != "":
                try:
                    changes[f.name] = _typed(f, raw)
                except ValueError as error:
                    f.errors.append(str(error))
        elif f.widget == "secret_map":
            mapped = _read_rows(f, form)
            if mapped:
                changes[f.name] = mapped
        elif f.widget == "lines":
            f.value = form.get(name, "")
            lines = [line.strip() for line in f.value.splitlines() if line.strip()]
            if lines or f.default not in (None, [], ()):
                changes[f.name] = lines
            else:
                unset.append(f.name)
        else:
            f.value = form.get(name, "")
            if f.value.strip() == "":
                unset.append(f.name)
                continue
            try:
                changes[f.name] = _typed(f, f.value if f.widget in ("json", "text") else f.value.strip())
            except ValueError as error:
                f.errors.append(str(error))
    return changes, unset


def _read_rows(f: SettingField, form) -> dict[str, Any]:
    """A named-secrets table: a saved name with a new secret is set, one marked to remove
    is removed (null), a new row with a name and a secret is added; empty rows are left."""
    prefix = MAP + f.name + "."
    saved = {row.name for row in f.rows if row.saved}
    f.rows = []
    result: dict[str, Any] = {}
    for key in form.getlist(prefix + "row"):
        if not key.isalnum() or len(key) > 20:
            continue
        name = form.get(f"{prefix}{key}.name", "").strip()
        secret = form.get(f"{prefix}{key}.secret", "")
        was_saved = form.get(f"{prefix}{key}.saved") == "1" and name in saved
        row = Row(key=key, name=name, saved=was_saved, remove=form.get(f"{prefix}{key}.remove") == "on")
        f.rows.append(row)
        if was_saved:
            if row.remove:
                result[name] = None
            elif secret:
                result[name] = secret
        elif name and secret:
            result[name] = secret
        elif name:
            row.error = gettext("Enter the secret for this name.")
        elif secret:
            row.error = gettext("Enter a name for this secret.")
    if any(row.error for row in f.rows):
        f.errors.append(gettext("Complete or empty the marked rows."))
    if not any(not row.saved for row in f.rows):
        f.rows.append(Row(key=_new_key()))
    return result


def _put_errors(fields: list[SettingField], refused: ValidationError) -> list[str]:
    """The schema's refusals next to their settings (in the interface language where the
    message is Loom's own); returns those that belong to no setting."""
    by_name = {f.name: f for f in fields}
    elsewhere = []
    for error in refused.errors:
        path = error.get("field") or ""
        top, _, rest = path.partition(".")
        if error.get("code") == "required":
            message = gettext("This setting is required.")
        elif error.get("code") == "unknown_field":
            message = gettext("This plugin has no such setting.")
        else:
            message = error.get("message") or ""
            if rest:
                message = f"{rest}: {message}"
        if top in by_name:
            by_name[top].errors.append(message)
        else:
            elsewhere.append(f"{path}: {message}" if path else message)
    return elsewhere


# -- the screens ----------------------------------------------------------------------------

def _plugin_text(plugin: str) -> dict[str, Any]:
    settings = _settings()
    schema = settings.schema(plugin)
    locale = current_locale()
    return {"name": plugin, "title": text_of(schema.get("title"), locale) or plugin,
            "description": text_of(schema.get("description"), locale), "has_check": plugin in settings.checks}


@pages.get("/settings/plugins")
def plugin_settings_list():
    """The plugins that declare settings, each linking to its form."""
    require_plugin_admin(g.get("principal"))
    settings = _settings()
    plugins = []
    for name in sorted(settings.schemas):
        saved = settings.stored(name)
        plugins.append({**_plugin_text(name), "updated_at": saved["updated_at"] if saved else None,
                        "updated_by": saved["updated_by"] if saved else None})
    return render_page("plugin_settings.html", plugins=plugins, title=gettext("Plugin settings"),
                       local_time=local_time)


def _form_page(plugin: str, fields: list[SettingField], status: int = 200, other_errors=()):
    saved = _settings().stored(plugin)
    return render_page("plugin_settings_form.html", status, plugin=_plugin_text(plugin), fields=fields,
                       saved=saved, other_errors=list(other_errors), local_time=local_time,
                       title=gettext("Settings of %(plugin)s", plugin=_plugin_text(plugin)["title"]))


@pages.get("/settings/plugins/<plugin>")
def plugin_settings_form(plugin: str):
    """One plugin's settings as a form; secrets show only whether they are set."""
    require_plugin_admin(g.get("principal"))
    return _form_page(plugin, build_fields(plugin))


@pages.post("/settings/plugins/<plugin>")
def plugin_settings_save(plugin: str):
    """Save the form: every setting checked against the plugin's schema at once; on any
    problem nothing is saved and the form comes back (422) with what was typed (secrets
    left empty) and the problem next to each setting."""
    require_plugin_admin(g.get("principal"))
    fields = build_fields(plugin)
    changes, unset = read_form(fields, request.form)
    if any(f.errors for f in fields):
        return _form_page(plugin, fields, 422)
    try:
        _settings().update(plugin, changes, unset=unset, principal=g.principal)
    except ValidationError as refused:
        other = _put_errors(fields, refused)
        return _form_page(plugin, fields, 422, other)
    except UnreadableSecret as unreadable:  # a saved secret no key opens, and the form leaves it
        return _form_page(plugin, fields, 422, [unreadable.detail])
    flash(gettext("The settings of %(plugin)s were saved.", plugin=_plugin_text(plugin)["title"]), "success")
    return redirect_to(url_for("pages.plugin_settings_form", plugin=plugin))


@pages.get("/settings/plugins/<plugin>/rows/<setting>")
def plugin_settings_row(plugin: str, setting: str):
    """A new, empty row of a named-secrets table (the form's "Add a row")."""
    require_plugin_admin(g.get("principal"))
    found = [f for f in build_fields(plugin) if f.name == setting and f.widget == "secret_map"]
    if not found:
        abort(404)
    return render_template("_plugin_settings_row.html", f=found[0], row=Row(key=_new_key()))


@pages.post("/settings/plugins/<plugin>/test")
def plugin_settings_test(plugin: str):
    """Run the plugin's connection test with the saved settings; the outcome shows as a
    message on the form."""
    require_plugin_admin(g.get("principal"))
    result = _settings().test_connection(plugin, principal=g.principal)
    if result.ok:
        flash(gettext("Connection test passed: %(message)s", message=result.message) if result.message
              else gettext("Connection test passed."), "success")
    elif result.timed_out:
        waited = round(result.seconds)
        flash(gettext("Connection test failed: no answer within %(seconds)s seconds.", seconds=waited), "error")
    else:
        flash(gettext("Connection test failed: %(message)s", message=result.message), "error")
    return redirect_to(url_for("pages.plugin_settings_form", plugin=plugin))


def may_see(principal) -> bool:
    """Whether the navigation offers the plugin settings to ``principal``."""
    return may_manage_plugins(principal) and bool(_settings().schemas)
