"""Edits to the metadata by document, and what changed between two versions: the pieces of
a compare-and-set publish (``MetadataService.change``).

A document is known by its kind and name (``role sales_rep``), the same pair that names
its file in ``loom metadata export``. An edit puts whole documents (adding or replacing
the one of that kind and name) and removes others; it never patches inside a document,
so what the editor sends is exactly what gets published.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from loom.errors import BadRequest, MetadataError, error_entry
from loom.metadata.compiler import compile_documents
from loom.metadata.loader import Document, check_document
from loom.metadata.model import AppModel

#: (kind, name): how a document is known
DocumentKey = tuple[str, str]


def document_key(document: Mapping[str, Any]) -> DocumentKey:
    return document.get("kind", ""), document.get("name", "")


@dataclass(frozen=True)
class DocumentEdits:
    """Documents to put (add, or replace the one of the same kind and name) and documents
    to remove, by ``(kind, name)``. Built from ``{"put": [documents], "remove": [[kind, name]]}``
    with ``parse``."""

    put: tuple[Mapping[str, Any], ...] = ()
    remove: tuple[DocumentKey, ...] = ()

    @classmethod
    def parse(cls, edits: DocumentEdits | Mapping[str, Any]) -> DocumentEdits:
        """Edits from their JSON shape; 400 naming every member that is not of that shape
        (what a document holds is checked later, against its kind's schema)."""
        if isinstance(edits, DocumentEdits):
            return edits
        if not isinstance(edits, Mapping):
            raise BadRequest('edits must be an object: {"put": [documents], "remove": [[kind, name]]}')
        wrong = [error_entry(key, "malformed_edit", "is not part of an edit; use put and remove")
                 for key in edits if key not in ("put", "remove")]
        put, remove = edits.get("put", []), edits.get("remove", [])
        if not isinstance(put, list | tuple):
            wrong.append(error_entry("put", "malformed_edit", "must be a list of documents"))
            put = []
        if not isinstance(remove, list | tuple):
            wrong.append(error_entry("remove", "malformed_edit", "must be a list of [kind, name] pairs"))
            remove = []
        for i, document in enumerate(put):
            if not isinstance(document, Mapping):
                wrong.append(error_entry(f"put[{i}]", "malformed_edit", "must be a document (an object)"))
                continue
            for member in ("kind", "name"):
                if not isinstance(document.get(member), str) or not document.get(member):
                    wrong.append(error_entry(f"put[{i}].{member}", "malformed_edit", "is required, as text"))
        for i, key in enumerate(remove):
            if (not isinstance(key, list | tuple) or len(key) != 2
                    or not all(isinstance(part, str) and part for part in key)):
                wrong.append(error_entry(f"remove[{i}]", "malformed_edit", "must be a [kind, name] pair"))
        if wrong:
            raise BadRequest(f"malformed edits: {', '.join(e['field'] for e in wrong)}", errors=wrong)
        return cls(tuple(dict(d) for d in put), tuple((k, n) for k, n in remove))

    @property
    def keys(self) -> set[DocumentKey]:
        """Every document these edits touch."""
        return {document_key(d) for d in self.put} | set(self.remove)

    def applied_to(self, documents: Iterable[Mapping[str, Any]], version: int) -> list[dict[str, Any]]:
        """``documents`` (those of ``version``) with these edits made. A document put twice,
        both put and removed, or removed without being there is refused (422): each means
        the editor worked from something other than ``version``."""
        result = {document_key(d): dict(d) for d in documents}
        problems = []
        seen: set[DocumentKey] = set()
        for i, document in enumerate(self.put):
            key = document_key(document)
            if key in seen:
                problems.append(f"put[{i}]: {key[0]} {key[1]} is put twice")
            seen.add(key)
        for i, key in enumerate(self.remove):
            if key in seen:
                problems.append(f"remove[{i}]: {key[0]} {key[1]} is both put and removed")
            elif key not in result:
                problems.append(f"remove[{i}]: there is no {key[0]} named {key[1]} in version {version}")
        if problems:
            raise MetadataError(problems)
        for key in self.remove:
            del result[key]
        for document in self.put:
            result[document_key(document)] = dict(document)
        return list(result.values())

    def model_on(self, documents: Iterable[Mapping[str, Any]], version: int) -> AppModel:
        """The model of ``documents`` (those of ``version``) with these edits made. Problems
        in a put document name it (``put[0] (role sales_rep): ...``)."""
        edited = self.applied_to(documents, version)
        origin = {document_key(d): f"put[{i}] ({d['kind']} {d['name']})" for i, d in enumerate(self.put)}
        checked, problems = [], []
        for data in edited:
            doc = Document(data, origin.get(document_key(data), f"<version {version}>"))
            problems.extend(check_document(doc))
            checked.append(doc)
        if problems:
            raise MetadataError(problems)
        return compile_documents(checked)


@dataclass(frozen=True)
class DocumentChange:
    """One document added, changed or removed between two versions."""

    kind: str
    name: str
    change: str  # added, changed or removed

    def __str__(self) -> str:
        return f"{self.kind} {self.name} {self.change}"


def changes_between(old: Iterable[Mapping[str, Any]], new: Iterable[Mapping[str, Any]]) -> list[DocumentChange]:
    """Which documents ``new`` adds, changes or removes against ``old``, by kind and name."""
    before = {document_key(d): d for d in old}
    after = {document_key(d): d for d in new}
    changes = []
    for key in sorted(before.keys() | after.keys()):
        if key not in before:
            changes.append(DocumentChange(*key, "added"))
        elif key not in after:
            changes.append(DocumentChange(*key, "removed"))
        elif dict(before[key]) != dict(after[key]):
            changes.append(DocumentChange(*key, "changed"))
    return changes


__all__ = ["DocumentChange", "DocumentEdits", "DocumentKey", "changes_between", "document_key"]
