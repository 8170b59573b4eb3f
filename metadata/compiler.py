"""Semantic checks and compilation: checked documents -> an immutable ``AppModel``.

The JSON Schema has already vouched for each document's shape; each document kind then
checks what a schema cannot (references resolve, options fit types, names do not clash)
and compiles its documents, in the order the kinds depend on each other. Every problem
in every document is collected before reporting.

Loom's own kinds (entity, role, alert) are registered here, the same way a plugin
registers its kinds.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import MappingProxyType
from typing import Any

from loom.errors import MetadataError
from loom.metadata import entities
from loom.metadata.documents import Document, Problem
from loom.metadata.kinds import Compilation, compile_order, register_document_kind
from loom.metadata.model import AppModel, Entity, Field
from loom.metadata.roles import ALERT_KIND, ROLE_KIND

for _kind in (entities.ENTITY_KIND, ROLE_KIND, ALERT_KIND):
    register_document_kind(_kind)


def _run(build: Compilation) -> AppModel:
    for kind in compile_order():
        build.keep(kind.name, kind.compile(build.of_kind(kind.name), build))
    if build.problems:
        raise MetadataError(build.problems)
    kinds = {kind.name: build.items(kind.name) for kind in compile_order()}
    documents = tuple(doc.data for doc in sorted(build.documents, key=lambda d: (d.kind, d.data.get("name", ""))))
    return AppModel(kinds["entity"], documents, kinds["role"], kinds["alert"], MappingProxyType(kinds))


def compile_documents(documents: Iterable[Document], *, earlier: Iterable[Problem] = (),
                      broken: Iterable[str] = ()) -> AppModel:
    """Compile checked documents into an ``AppModel``; raise ``MetadataError`` listing
    every problem found, after the ``earlier`` ones (from loading). ``broken`` names
    documents that failed to load, so references to them are not reported missing too."""
    build = Compilation(documents, broken)
    build.problems.extend(earlier)
    return _run(build)


def _standalone(data: dict[str, Any]) -> Document:
    return Document(data, "<stored definition>")


def compile_entity(data: dict[str, Any]) -> Entity:
    """Compile one stored entity document on its own (its links are not resolved)."""
    build = Compilation([])
    entity = entities.compile_entity(build, _standalone(data))
    if build.problems:
        raise MetadataError(build.problems)
    return entity


def compile_field(data: dict[str, Any]) -> Field:
    """Compile one stored field definition on its own."""
    build = Compilation([])
    result = entities.compile_field(build, _standalone({"fields": [data]}), ("fields", 0), data)
    if build.problems:
        raise MetadataError(build.problems)
    return result
