"""Reading metadata documents from files and checking them against the JSON Schemas.

Every finding carries the file, the line, the path inside the document and what was
expected, and a whole directory is checked in one run so that all mistakes are reported
together rather than one per attempt.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from referencing import Registry, Resource

from loom.metadata.compiler import compile_documents
from loom.metadata.documents import Document, Problem, format_path
from loom.metadata.kinds import document_kind, document_kind_names, generation
from loom.metadata.types import field_type_names

__all__ = ["Document", "Problem", "check_document", "format_path", "load_and_compile", "load_directory",
           "load_text", "schema_for"]

METADATA_SUFFIXES = (".yaml", ".yml", ".json")


def schema_for(kind: str) -> dict[str, Any] | None:
    """The JSON Schema of a registered document kind; None for a kind no one registered."""
    found = document_kind(kind)
    return None if found is None else found.json_schema()


def known_kinds() -> tuple[str, ...]:
    """Every registered document kind, sorted."""
    return document_kind_names()


def _registry_key() -> tuple:
    """What the schemas are made from: the registered kinds and field types. The cached
    validators are rebuilt when a plugin adds one."""
    return generation(), field_type_names()


@functools.cache
def _registry(key: tuple) -> Registry:
    """Every kind's schema, so schemas can share definitions by reference."""
    schemas = [schema_for(kind) for kind in known_kinds()]
    return Registry().with_resources((s["$id"], Resource.from_contents(s)) for s in schemas)


def _inline(node: Any, resolve, seen: tuple[str, ...] = ()) -> Any:
    """``node`` with every non-recursive ``$ref`` replaced by what it points at: the same
    schema, validated several times faster (no reference lookups per value)."""
    if isinstance(node, list):
        return [_inline(item, resolve, seen) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref not in seen and len(node) == 1:
        return _inline(resolve(ref), resolve, seen + (ref,))
    return {key: (value if key in ("const", "enum", "default") else _inline(value, resolve, seen))
            for key, value in node.items()}


def _validator(kind: str) -> Draft202012Validator:
    return _cached_validator(kind, _registry_key())


@functools.cache
def _cached_validator(kind: str, key: tuple) -> Draft202012Validator:
    schema = schema_for(kind)
    registry = _registry(key)
    resolver = registry.resolver(base_uri=schema["$id"])

    def resolve(ref: str) -> Any:
        return resolver.lookup(ref).contents

    definitions = schema.get("$defs", {})
    inlined = {**_inline({k: v for k, v in schema.items() if k != "$defs"}, resolve), "$defs": definitions}
    return Draft202012Validator(inlined, registry=registry)


def _plain(value: Any) -> Any:
    """YAML turns ``2024-01-01`` into a date; metadata keeps such values as ISO text."""
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


def _to_python(loader: yaml.SafeLoader, node: yaml.Node, path: tuple, lines: dict, file: str,
               problems: list[Problem]) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _plain(loader.construct_object(key_node, deep=True))
            if isinstance(key, bool) and isinstance(key_node, yaml.ScalarNode):
                # YAML 1.1 reads a plain on/off/yes/no as a boolean; as a key it is a name (a rule's ``on``)
                key = key_node.value
            if not isinstance(key, str | int | float | bool) and key is not None:
                problems.append(Problem(file, key_node.start_mark.line + 1, format_path(path),
                                        "keys must be plain text"))
                continue
            if key in result:
                problems.append(Problem(file, key_node.start_mark.line + 1, format_path(path + (key,)),
                                        f"'{key}' is given twice"))
            result[key] = _to_python(loader, value_node, path + (key,), lines, file, problems)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(loader, item, path + (i,), lines, file, problems)
                for i, item in enumerate(node.value)]
    return _plain(loader.construct_object(node, deep=True))


def _parse(text: str, file: str, problems: list[Problem]) -> Iterator[tuple[Any, dict]]:
    try:
        loader = yaml.SafeLoader(text)
    except yaml.YAMLError as exc:
        problems.append(Problem(file, None, "", f"not valid YAML or JSON: {exc}"))
        return
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            lines: dict[tuple, int] = {}
            yield _to_python(loader, node, (), lines, file, problems), lines
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problems.append(Problem(file, mark.line + 1 if mark else None, "",
                                f"not valid YAML or JSON: {exc.problem or exc.context}"))
    except yaml.YAMLError as exc:
        problems.append(Problem(file, None, "", f"not valid YAML or JSON: {exc}"))
    finally:
        loader.dispose()


def check_document(doc: Document) -> list[Problem]:
    """Check one document against the JSON Schema of its kind."""
    kind = doc.data.get("kind")
    if not isinstance(kind, str) or schema_for(kind) is None:
        expected = ", ".join(known_kinds())
        return [doc.problem(("kind",), f"kind must be one of: {expected} (got {kind!r})")]
    problems = []
    for error in sorted(_validator(kind).iter_errors(doc.data), key=lambda e: list(map(str, e.absolute_path))):
        if error.context:
            error = best_match(error.context)
        problems.append(doc.problem(error.absolute_path, error.message))
    return problems


def load_text(text: str, file: str = "<text>") -> tuple[list[Document], list[Problem]]:
    """Parse and schema-check every document in ``text``."""
    documents, problems, _ = _load_text(text, file)
    return documents, problems


def _load_text(text: str, file: str) -> tuple[list[Document], list[Problem], set[str]]:
    """Documents that passed, every problem, and the names of documents that failed."""
    broken: set[str] = set()
    problems: list[Problem] = []
    documents: list[Document] = []
    for data, lines in _parse(text, file, problems):
        if data is None:
            continue
        if not isinstance(data, dict):
            problems.append(Problem(file, lines.get(()), "", "a document must be a mapping with a 'kind'"))
            continue
        doc = Document(data, file, lines)
        found = check_document(doc)
        problems.extend(found)
        if not found:
            documents.append(doc)
        elif isinstance(data.get("name"), str):
            broken.add(data["name"])
    return documents, problems, broken


def load_and_compile(directory: str | Path):
    """Load and compile a directory, reporting every problem of every file at once."""
    documents, problems, broken = _load_directory(directory)
    return compile_documents(documents, earlier=problems, broken=broken)


def load_directory(directory: str | Path) -> tuple[list[Document], list[Problem]]:
    """Load every .yaml/.yml/.json file below ``directory`` (sorted, recursively)."""
    documents, problems, _ = _load_directory(directory)
    return documents, problems


def _load_directory(directory: str | Path) -> tuple[list[Document], list[Problem], set[str]]:
    root = Path(directory)
    if not root.is_dir():
        return [], [Problem(str(root), None, "", "no such directory")], set()
    documents: list[Document] = []
    problems: list[Problem] = []
    broken: set[str] = set()
    paths = sorted(p for p in root.rglob("*") if p.suffix in METADATA_SUFFIXES and p.is_file())
    if not paths:
        problems.append(Problem(str(root), None, "", "no .yaml, .yml or .json files found"))
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Problem(str(path.relative_to(root)), None, "", f"cannot be read: {exc}"))
            continue
        docs, found, names = _load_text(text, str(path.relative_to(root)))
        documents.extend(docs)
        problems.extend(found)
        broken |= names
    return documents, problems, broken
