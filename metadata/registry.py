"""The registries' public interface: what a plugin (through the ``field_types`` and
``document_kinds`` hooks) or a test calls to add a field type or a document kind. The
names here are part of the plugin contract and do not change.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

from loom.metadata.kinds import (
    DocumentKind,
    DocumentKindError,
    register_document_kind,
    registered_document_kind,
    unregister_document_kind,
)
from loom.metadata.types import (
    BUILTIN_TYPES,
    FIELD_TYPES,
    FILTER_WIDGETS,
    WIDGETS,
    DisplayExtension,
    FieldType,
    field_type,
)

__all__ = [
    "DocumentKind",
    "DocumentKindError",
    "FieldTypeError",
    "extend_display",
    "register_document_kind",
    "register_field_type",
    "registered_document_kind",
    "registered_field_type",
    "remove_display_extension",
    "unregister_document_kind",
    "unregister_field_type",
]

#: the properties a type may accept beyond the common ones (the metadata language has no others)
TYPE_PROPERTIES = frozenset({"max_length", "pattern", "validators", "min", "max", "precision", "scale",
                             "currency", "options", "target", "max_size", "accept"})
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


class FieldTypeError(ValueError):
    """A field type that cannot be registered: a taken name, or a definition that does not fit."""


# -- the registry's public interface ----------------------------------------------------------
# Plugins reach these through the ``field_types`` hook; their names are part of the plugin
# contract and do not change.

def _check(new: FieldType) -> None:
    problems = []
    if not isinstance(new.name, str) or not _NAME.match(new.name):
        problems.append("its name must be snake_case (a-z, 0-9, _), at most 48 characters")
    if new.widget not in WIDGETS:
        problems.append(f"widget must be one of: {', '.join(WIDGETS)}")
    if new.widget == "template" and not new.template:
        problems.append("a template widget needs the template's name")
    if new.filter_widget is not None:
        needed = FILTER_WIDGETS.get(new.filter_widget)
        if needed is None:
            problems.append(f"filter_widget must be one of: {', '.join(FILTER_WIDGETS)} (or None)")
        elif not set(needed) <= new.operators:
            problems.append(f"a {new.filter_widget} filter sends {', '.join(needed)}, which operators must include")
    if not new.properties <= TYPE_PROPERTIES:
        problems.append(f"unknown properties {', '.join(sorted(new.properties - TYPE_PROPERTIES))}")
    if not new.requires <= new.properties:
        problems.append("requires names properties the type does not accept")
    if problems:
        raise FieldTypeError(f"field type {new.name!r} cannot be registered: {'; '.join(problems)}")


def register_field_type(new: FieldType) -> FieldType:
    """Add ``new`` to the registry, so metadata may declare fields of its type (the entity
    document's JSON Schema accepts its name) and the API, screens, imports and exports
    handle them. Registering the same type again does nothing (each app a process creates
    loads its plugins); a different type under a name already taken raises
    ``FieldTypeError``, as does a definition that does not fit (an unknown widget, a
    filter control whose operators the type lacks)."""
    current = FIELD_TYPES.get(new.name)
    if current is not None:
        if current == new or replace(current, display_extensions=()) == new:
            return current
        owner = "a built-in type" if new.name in BUILTIN_TYPES else "another field type"
        raise FieldTypeError(f"field type {new.name!r} is already registered ({owner}); choose another name")
    _check(new)
    FIELD_TYPES[new.name] = new
    return new


def unregister_field_type(name: str) -> None:
    """Remove an added type (tests, a plugin being unloaded); built-in types stay."""
    if name in BUILTIN_TYPES:
        raise FieldTypeError(f"{name!r} is a built-in field type and cannot be removed")
    FIELD_TYPES.pop(name, None)


def extend_display(type_name: str, extension: DisplayExtension) -> None:
    """Extend how pages show values of an existing type without replacing it:
    ``extension(field, value, text, ctx)`` receives the text the type (and earlier
    extensions) made and returns what to show instead, e.g. a phone number as a
    click-to-call link. It may return ``markupsafe.Markup`` built from escaped parts; plain
    text is escaped. Titles, exports and imports keep the type's own ``display``."""
    current = field_type(type_name)
    if extension not in current.display_extensions:
        FIELD_TYPES[type_name] = replace(current, display_extensions=(*current.display_extensions, extension))


def remove_display_extension(type_name: str, extension: DisplayExtension) -> None:
    """Undo ``extend_display`` (tests, a plugin being unloaded)."""
    current = field_type(type_name)
    FIELD_TYPES[type_name] = replace(current, display_extensions=tuple(
        e for e in current.display_extensions if e is not extension))


@contextmanager
def registered_field_type(new: FieldType) -> Iterator[FieldType]:
    """``with registered_field_type(RATING):`` the type is registered inside the block
    and removed after it, for tests."""
    register_field_type(new)
    try:
        yield new
    finally:
        unregister_field_type(new.name)
