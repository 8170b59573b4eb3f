"""Reading metadata documents from files and checking them against the JSON Schemas.

Every finding carries the file, the line, the path inside the document and what was
expected, and a whole directory is checked in one run so that all mistakes are reported
together rather than one per attempt.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from referencing import Registry, Resource

METADATA_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a metadata document."""

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.file + (f":{self.line}" if self.line else "")
        return f"{where}: {self.path or '(document)'}: {self.message}"


@dataclass(frozen=True)
class Document:
    """One parsed document with where it came from, so later checks can name the line."""

    data: dict[str, Any]
    file: str
    lines: dict[tuple, int] = field(default_factory=dict, compare=False, repr=False)

    @property
    def kind(self) -> str:
        return self.data.get("kind", "")

    def line_of(self, path: Iterable[Any]) -> int | None:
        """The line of the closest node at or above ``path``."""
        path = tuple(path)
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return None
            path = path[:-1]

    def problem(self, path: Iterable[Any], message: str) -> Problem:
        path = tuple(path)
        return Problem(self.file, self.line_of(path), format_path(path), message)


def format_path(path: Iterable[Any]) -> str:
    """``("fields", 3, "type")`` -> ``fields[3].type``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


@functools.cache
def schema_for(kind: str) -> dict[str, Any] | None:
    resource = files("loom.metadata").joinpath("schemas", f"{kind}.schema.json")
    if not resource.is_file():
        return None
    return json.loads(resource.read_text(encoding="utf-8"))


@functools.cache
def known_kinds() -> tuple[str, ...]:
    folder = files("loom.metadata").joinpath("schemas")
    return tuple(sorted(p.name.split(".")[0] for p in folder.iterdir() if p.name.endswith(".schema.json")))


@functools.cache
def _registry() -> Registry:
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


@functools.cache
def _validator(kind: str) -> Draft202012Validator:
    schema = schema_for(kind)
    resolver = _registry().resolver(base_uri=schema["$id"])

    def resolve(ref: str) -> Any:
        return resolver.lookup(ref).contents

    inlined = {**_inline({k: v for k, v in schema.items() if k != "$defs"}, resolve), "$defs": schema["$defs"]}
    return Draft202012Validator(inlined, registry=_registry())


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
    from loom.metadata.compiler import compile_documents

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
