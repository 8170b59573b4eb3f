"""Document kinds: each kind of metadata document (``entity``, ``role``, ``alert``, and
those plugins add) owns its JSON Schema, how its documents compile and how two versions
of them differ. The loader, the compiler and the diff ask this registry which kinds
there are instead of naming them.

A kind compiles after the kinds named in its ``after`` (a role refers to entities), so
its ``compile`` can read what they compiled to from the ``Compilation``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.resources import files
from types import MappingProxyType
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from loom.metadata.documents import Document, Problem

SCHEMA_BASE = "https://loom.dev/schemas/"
DRAFT = "https://json-schema.org/draft/2020-12/schema"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


class DocumentKindError(ValueError):
    """A document kind that cannot be registered: a taken name or a broken definition."""


class Compilation:
    """One compilation of a set of documents in progress: every problem found so far, and
    what each kind compiled to, for the kinds compiled after it."""

    def __init__(self, documents: Iterable[Document], broken: Iterable[str] = ()):
        self.documents = list(documents)
        self.problems: list[Problem] = []
        #: names of documents that failed their schema check: a reference to one of them
        #: is not reported again as missing
        self.broken = set(broken)
        self._compiled: dict[str, Mapping[str, Any]] = {}

    def fail(self, doc: Document, path: tuple, message: str) -> None:
        """Report a problem at ``path`` inside ``doc`` (the file and line are found from it)."""
        self.problems.append(doc.problem(path, message))

    def of_kind(self, kind: str) -> list[Document]:
        return [doc for doc in self.documents if doc.kind == kind]

    def items(self, kind: str) -> Mapping[str, Any]:
        """What the documents of ``kind`` compiled to, by name (a kind named in ``after``)."""
        return self._compiled.get(kind, MappingProxyType({}))

    def keep(self, kind: str, items: Mapping[str, Any]) -> None:
        self._compiled[kind] = MappingProxyType(dict(items))

    def by_name(self, docs: Iterable[Document]) -> dict[str, Document]:
        """Documents by name; a name given twice is reported on the later document."""
        seen: dict[str, Document] = {}
        for doc in docs:
            name = doc.data.get("name")
            if name in seen:
                other = seen[name]
                self.fail(doc, ("name",), f"{doc.kind} '{name}' is already declared in "
                                          f"{other.file}:{other.line_of(('name',))}")
                continue
            seen[name] = doc
        return seen


def compile_as_data(docs: list[Document], build: Compilation) -> Mapping[str, Any]:
    """The default compilation: each document, by name, as read-only data."""
    return {name: MappingProxyType(doc.data) for name, doc in build.by_name(docs).items()}


def named_changes(kind: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """The default diff: one line per document added (+), removed (-) or changed (~)."""
    lines = [f"+ {kind} {name}" for name in new if name not in old]
    lines += [f"- {kind} {name}" for name in old if name not in new]
    lines += [f"~ {kind} {name}" for name, item in new.items() if name in old and old[name] != item]
    return lines


@dataclass(frozen=True)
class DocumentKind:
    """A kind of metadata document (``kind: <name>``)."""

    name: str
    #: the JSON Schema (draft 2020-12) every document of the kind must meet, or a function
    #: making it (when it follows a registry, as the entity's field types do). Without an
    #: ``$id``, it gets ``https://loom.dev/schemas/<name>.schema.json``, so it can refer to
    #: Loom's definitions as ``entity.schema.json#/$defs/label``.
    schema: Mapping[str, Any] | Callable[[], Mapping[str, Any]]
    #: ``compile(documents, build) -> {name: item}``: the checks a schema cannot make
    #: (reported with ``build.fail(doc, path, message)``) and the compiled items
    compile: Callable[[list[Document], Compilation], Mapping[str, Any]] = compile_as_data
    #: ``diff(old items, new items) -> [line, ...]``: what publishing would change; None:
    #: one line per document added, removed or changed
    diff: Callable[[Mapping[str, Any], Mapping[str, Any]], Sequence[str]] | None = None
    #: kinds compiled before this one, whose items ``compile`` reads (``build.items(kind)``)
    after: tuple[str, ...] = ("entity",)

    def json_schema(self) -> dict[str, Any]:
        schema = dict(self.schema() if callable(self.schema) else self.schema)
        schema.setdefault("$schema", DRAFT)
        schema.setdefault("$id", f"{SCHEMA_BASE}{self.name}.schema.json")
        return schema

    def changes(self, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
        return list(self.diff(old, new)) if self.diff is not None else named_changes(self.name, old, new)


def schema_file(name: str) -> dict[str, Any]:
    """A JSON Schema Loom ships (``schemas/<name>.schema.json``)."""
    resource = files("loom.metadata").joinpath("schemas", f"{name}.schema.json")
    return json.loads(resource.read_text(encoding="utf-8"))


# -- the registry -------------------------------------------------------------------------------

DOCUMENT_KINDS: dict[str, DocumentKind] = {}
BUILTIN_KINDS = frozenset({"entity", "role", "alert"})
_generation = 0


def generation() -> int:
    """A number that changes whenever a kind comes or goes, so what is built from the
    kinds' schemas (the loader's validators) is built again."""
    return _generation


def _changed() -> None:
    global _generation
    _generation += 1


def document_kind(name: str) -> DocumentKind | None:
    return DOCUMENT_KINDS.get(name)


def document_kind_names() -> tuple[str, ...]:
    """The registered kinds' names, sorted (as error messages list them)."""
    return tuple(sorted(DOCUMENT_KINDS))


def compile_order() -> list[DocumentKind]:
    """Every kind after the kinds it names in ``after``; otherwise in registration order."""
    ordered: list[DocumentKind] = []
    placed: set[str] = set()

    def place(kind: DocumentKind, path: tuple[str, ...]) -> None:
        if kind.name in placed:
            return
        if kind.name in path:
            raise DocumentKindError(f"document kinds compile after each other in a circle: {' -> '.join(path)}")
        for name in kind.after:
            if name in DOCUMENT_KINDS and name != kind.name:
                place(DOCUMENT_KINDS[name], path + (kind.name,))
        placed.add(kind.name)
        ordered.append(kind)

    for kind in list(DOCUMENT_KINDS.values()):
        place(kind, ())
    return ordered


def _check(kind: DocumentKind) -> None:
    if not isinstance(kind.name, str) or not _NAME.match(kind.name):
        raise DocumentKindError(f"document kind {kind.name!r}: its name must be snake_case (a-z, 0-9, _)")
    try:
        Draft202012Validator.check_schema(kind.json_schema())
    except SchemaError as exc:
        raise DocumentKindError(f"document kind {kind.name!r}: its JSON Schema is not valid: {exc.message}") from None


def register_document_kind(kind: DocumentKind) -> DocumentKind:
    """Add ``kind``, so metadata documents with ``kind: <its name>`` are loaded, checked
    against its schema (problems name file and line), compiled with its ``compile`` and
    compared with its ``diff``. Registering the same kind again does nothing; another kind
    under a taken name, or one whose schema is not a valid JSON Schema, raises
    ``DocumentKindError``."""
    current = DOCUMENT_KINDS.get(kind.name)
    if current is not None:
        if current == kind:
            return current
        owner = "a built-in kind" if kind.name in BUILTIN_KINDS else "another document kind"
        raise DocumentKindError(f"document kind {kind.name!r} is already registered ({owner}); choose another name")
    _check(kind)
    DOCUMENT_KINDS[kind.name] = kind
    try:
        compile_order()
    except DocumentKindError:
        del DOCUMENT_KINDS[kind.name]
        raise
    _changed()
    return kind


def unregister_document_kind(name: str) -> None:
    """Remove an added kind (tests, a plugin being unloaded); built-in kinds stay."""
    if name in BUILTIN_KINDS:
        raise DocumentKindError(f"{name!r} is a built-in document kind and cannot be removed")
    if DOCUMENT_KINDS.pop(name, None) is not None:
        _changed()


@contextmanager
def registered_document_kind(kind: DocumentKind) -> Iterator[DocumentKind]:
    """``with registered_document_kind(DASHBOARD):`` registered inside the block only, for tests."""
    register_document_kind(kind)
    try:
        yield kind
    finally:
        unregister_document_kind(kind.name)
