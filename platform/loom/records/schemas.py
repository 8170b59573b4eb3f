"""marshmallow schemas compiled from an entity's fields: create, update (the whole
record, as a form submits it) and partial (PATCH)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import marshmallow as ma

from loom.metadata.model import AppModel, Entity, Field
from loom.metadata.validators import VALIDATORS

UNKNOWN_FIELD = "unknown field: this entity has no such field"
REQUIRED = "is required"


class TypedField(ma.fields.Field):
    """A value of one Loom field: converted strictly by its field type, then checked
    against the field's rules (length, range, pattern, named validators)."""

    default_error_messages = {"required": REQUIRED, "null": REQUIRED}

    def __init__(self, loom_field: Field, **kwargs: Any):
        self.loom_field = loom_field
        super().__init__(validate=_validators(loom_field), **kwargs)

    def deserialize(self, value: Any, attr: str | None = None, data: Mapping[str, Any] | None = None, **kwargs):
        # Forms and spreadsheets send "" for "no value".
        if isinstance(value, str) and value.strip() == "":
            value = None
        if isinstance(value, list) and not value and self.loom_field.type == "multiselect" and self.required:
            value = None
        return super().deserialize(value, attr, data, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs):
        try:
            return self.loom_field.kind.coerce(value, self.loom_field)
        except ValueError as exc:
            raise ma.ValidationError(str(exc)) from None
        except ArithmeticError:
            # OverflowError (a time past year 9999 once in UTC), decimal.InvalidOperation ...
            raise ma.ValidationError("the value is out of range") from None

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs):
        return None if value is None else self.loom_field.kind.to_json(value)


def _validators(field: Field) -> list:
    checks: list = []
    if field.max_length:
        checks.append(ma.validate.Length(max=field.max_length,
                                         error=f"at most {field.max_length} characters"))
    if field.min is not None or field.max is not None:
        if field.min is not None and field.max is not None:
            message = f"must be between {_show(field, field.min)} and {_show(field, field.max)}"
        elif field.min is not None:
            message = f"must be at least {_show(field, field.min)}"
        else:
            message = f"must be at most {_show(field, field.max)}"
        checks.append(ma.validate.Range(min=field.min, max=field.max, error=message))
    if field.pattern:
        checks.append(ma.validate.Regexp(re.compile(field.pattern),
                                         error=f"does not match the required format {field.pattern}"))
    names = list(field.validators)
    if field.type in ("email", "url") and field.type not in names:
        names.insert(0, field.type)
    for name in names:
        checks.append(_named(VALIDATORS[name]))
    return checks


def _show(field: Field, value: Any) -> Any:
    return field.kind.to_json(value)


def _named(check):
    def validate(value: Any) -> None:
        if isinstance(value, str):
            message = check(value)
            if message:
                raise ma.ValidationError(message)
    return validate


def _schema(entity: Entity, model: AppModel, mode: str) -> type[ma.Schema]:
    attrs: dict[str, Any] = {}
    creating = mode != "partial"
    for field in entity.fields:
        if field.type == "table":
            # Child rows are checked one by one with their own schema (see child_schema), so
            # each row is complete whether the parent is created or patched.
            attrs[field.name] = TypedField(field, allow_none=False)
            continue
        kwargs: dict[str, Any] = {"allow_none": not field.required}
        if field.required and creating:
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


def flatten_errors(messages: Any, prefix: str = "") -> list[dict[str, str]]:
    """marshmallow's nested error dict -> ``[{"field": "lines[1].quantity", "message": ...}]``."""
    errors: list[dict[str, str]] = []
    if isinstance(messages, dict):
        for key, value in messages.items():
            if isinstance(key, int):
                path = f"{prefix}[{key}]"
            else:
                path = f"{prefix}.{key}" if prefix else str(key)
            errors.extend(flatten_errors(value, path))
    elif isinstance(messages, list) and messages and all(isinstance(m, str) for m in messages):
        for message in messages:
            errors.append({"field": prefix, "message": UNKNOWN_FIELD if message == "Unknown field." else message})
    elif isinstance(messages, list):
        for message in messages:
            errors.extend(flatten_errors(message, prefix))
    else:
        errors.append({"field": prefix, "message": str(messages)})
    return errors
