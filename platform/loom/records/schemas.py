"""marshmallow schemas compiled from an entity's fields: create, update (the whole
record, as a form submits it) and partial (PATCH)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import marshmallow as ma

from loom.errors import InvalidValue, as_entry, error_entry
from loom.metadata.model import AppModel, Entity, Field
from loom.metadata.validators import VALIDATORS

UNKNOWN_FIELD = "unknown field: this entity has no such field"
REQUIRED = "is required"
#: marshmallow's own messages, by the code they stand for
_MARSHMALLOW_CODES = {REQUIRED: "required", "Unknown field.": "unknown_field"}

Check = Callable[[Any], InvalidValue | None]


class TypedField(ma.fields.Field):
    """A value of one Loom field: converted strictly by its field type, then checked
    against the field's rules (length, range, pattern, named validators). A refusal
    travels through marshmallow as the ``InvalidValue`` it is, code and all."""

    default_error_messages = {"required": REQUIRED, "null": REQUIRED}

    def __init__(self, loom_field: Field, **kwargs: Any):
        self.loom_field = loom_field
        self.checks = _checks(loom_field)
        super().__init__(**kwargs)

    def deserialize(self, value: Any, attr: str | None = None, data: Mapping[str, Any] | None = None, **kwargs):
        # Forms and spreadsheets send "" for "no value".
        if isinstance(value, str) and value.strip() == "":
            value = None
        if isinstance(value, list) and not value and self.loom_field.type == "multiselect" and self.required:
            value = None
        return super().deserialize(value, attr, data, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs):
        try:
            value = self.loom_field.kind.coerce(value, self.loom_field)
        except InvalidValue as exc:
            raise ma.ValidationError([exc]) from None
        except ValueError as exc:  # a plugin's field type that says why in words only
            raise ma.ValidationError([InvalidValue("invalid", str(exc))]) from None
        except ArithmeticError:
            # OverflowError (a time past year 9999 once in UTC), decimal.InvalidOperation ...
            raise ma.ValidationError([InvalidValue("out_of_range", "the value is out of range")]) from None
        problems = [problem for check in self.checks if (problem := check(value)) is not None]
        if problems:
            raise ma.ValidationError(problems)
        return value

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs):
        return None if value is None else self.loom_field.kind.to_json(value)


def _checks(field: Field) -> list[Check]:
    """The rules a converted value of ``field`` must meet, each saying why it does not."""
    checks: list[Check] = []
    if field.max_length:
        checks.append(_at_most(field.max_length))
    if field.min is not None or field.max is not None:
        checks.append(_within(field))
    if field.pattern:
        checks.append(_matching(field.pattern))
    names = list(field.validators)
    if field.type in ("email", "url") and field.type not in names:
        names.insert(0, field.type)
    for name in names:
        checks.append(_named(VALIDATORS[name]))
    return checks


def _at_most(length: int) -> Check:
    def check(value: Any) -> InvalidValue | None:
        if len(value) > length:
            return InvalidValue("too_long", f"at most {length} characters", max=length)
        return None
    return check


def _within(field: Field) -> Check:
    low, high = field.min, field.max
    shown_low = None if low is None else field.kind.to_json(low)
    shown_high = None if high is None else field.kind.to_json(high)

    def check(value: Any) -> InvalidValue | None:
        if (low is None or value >= low) and (high is None or value <= high):
            return None
        if low is not None and high is not None:
            return InvalidValue("not_between", f"must be between {shown_low} and {shown_high}",
                                min=shown_low, max=shown_high)
        if low is not None:
            return InvalidValue("below_min", f"must be at least {shown_low}", min=shown_low)
        return InvalidValue("above_max", f"must be at most {shown_high}", max=shown_high)
    return check


def _matching(pattern: str) -> Check:
    compiled = re.compile(pattern)

    def check(value: Any) -> InvalidValue | None:
        if compiled.match(value) is None:
            return InvalidValue("pattern_mismatch", f"does not match the required format {pattern}",
                                pattern=pattern)
        return None
    return check


def _named(validator: Callable[[str], InvalidValue | str | None]) -> Check:
    def check(value: Any) -> InvalidValue | None:
        if not isinstance(value, str):
            return None
        problem = validator(value)
        if problem is None or isinstance(problem, InvalidValue):
            return problem
        return InvalidValue("invalid", problem) if problem else None
    return check


def _schema(entity: Entity, model: AppModel, mode: str) -> type[ma.Schema]:
    attrs: dict[str, Any] = {}
    creating = mode != "partial"
    for field in entity.fields:
        if field.type == "table":
            # Child rows are checked one by one with their own schema (see child_schema), so
            # each row is complete whether the parent is created or patched.
            attrs[field.name] = TypedField(field, allow_none=False)
            continue
        # a field shown only under a condition (visible_when) is required only while shown:
        # the record service's business logic checks it (loom.records.logic)
        required = field.required and field.visible_when is None
        kwargs: dict[str, Any] = {"allow_none": not required}
        if required and creating and field.default_expr is None:  # a computed default fills it
            kwargs["required"] = True
        if field.default is not None and mode == "create":
            default = field.default
            kwargs["load_default"] = (lambda d=default: list(d)) if isinstance(default, list) else default
        attrs[field.name] = TypedField(field, **kwargs)
    if entity.child:
        attrs["id"] = TypedField(entity.field("id"), allow_none=True)
    else:
        attrs["owner"] = TypedField(entity.field("owner"), allow_none=True)

    class Meta:
        unknown = ma.RAISE

    attrs["Meta"] = Meta
    return type(f"{entity.name}_{mode}", (ma.Schema,), attrs)


def build_schemas(entity: Entity, model: AppModel) -> dict[str, ma.Schema]:
    """``create``, ``update`` and ``partial`` schemas for ``entity``; for a child entity,
    ``create`` checks one child row."""
    return {
        "create": _schema(entity, model, "create")(),
        "update": _schema(entity, model, "update")(),
        "partial": _schema(entity, model, "partial")(partial=True),
    }


def flatten_errors(messages: Any, prefix: str = "") -> list[dict[str, Any]]:
    """marshmallow's nested error dict -> error entries, ``{"field": "lines[1].quantity",
    "code": ..., "params": ..., "message": ...}``."""
    errors: list[dict[str, Any]] = []
    if isinstance(messages, dict):
        for key, value in messages.items():
            if isinstance(key, int):
                path = f"{prefix}[{key}]"
            else:
                path = f"{prefix}.{key}" if prefix else str(key)
            errors.extend(flatten_errors(value, path))
    elif isinstance(messages, list):
        for message in messages:
            errors.extend(flatten_errors(message, prefix))
    elif isinstance(messages, InvalidValue):
        errors.append(messages.entry(prefix))
    else:
        errors.append(_marshmallow_entry(prefix, str(messages)))
    return errors


def _marshmallow_entry(path: str, message: str) -> dict[str, Any]:
    """An entry for one of marshmallow's own messages (a missing or an unknown field)."""
    code = _MARSHMALLOW_CODES.get(message, "invalid")
    if code == "unknown_field":
        return error_entry(path, code, UNKNOWN_FIELD, name=path.rsplit(".", 1)[-1])
    return as_entry({"field": path, "code": code, "message": message})
