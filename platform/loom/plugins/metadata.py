"""Metadata shipped by plugins (``metadata_folders`` hook): documents loaded together with
the app's own whenever a directory is validated, diffed or applied, and published by
``loom init`` where the live metadata lacks them.

The rule is kept simple: a plugin's documents are added to the given directory's. Two
documents of the same kind and name from different places are a metadata error naming
both files, unless they are identical (a directory exported from the live metadata holds
the plugins' documents too, and applying it back must work).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import ExitStack
from importlib.resources import as_file
from pathlib import Path
from typing import Any

import pluggy

from loom.metadata import AppModel, Document, Problem, compile_documents, load_directory
from loom.plugins import plugin_name


def shipped_folders(manager: pluggy.PluginManager) -> list[tuple[str, Any]]:
    """Each plugin's metadata folders, as (plugin name, folder)."""
    folders = []
    for impl in reversed(manager.hook.metadata_folders.get_hookimpls()):
        for folder in impl.function() or ():
            folders.append((plugin_name(manager, impl.plugin), folder))
    return folders


def directory_loader(manager: pluggy.PluginManager) -> Callable[[str | Path], AppModel]:
    """What the metadata service loads a directory with in an app: the directory and the
    documents ``manager``'s plugins ship, asked for at each load."""
    return lambda directory: load_with_shipped(directory, shipped_folders(manager))


def _key(doc: Document) -> tuple[str, Any]:
    return doc.kind, doc.data.get("name")


def _load_shipped(folders: Iterable[tuple[str, Any]]) -> tuple[list[Document], list[Problem]]:
    documents: list[Document] = []
    problems: list[Problem] = []
    with ExitStack() as stack:
        for plugin, folder in folders:
            path = Path(folder) if isinstance(folder, str | Path) else stack.enter_context(as_file(folder))
            docs, found = load_directory(path)
            # name the plugin in every file name, so a problem says whose document it is
            documents += [Document(d.data, f"{plugin}:{d.file}", d.lines) for d in docs]
            problems += [Problem(f"{plugin}:{p.file}", p.line, p.path, p.message) for p in found]
    return documents, problems


def merge(own: list[Document], shipped: list[Document]) -> tuple[list[Document], list[Problem]]:
    """``own`` plus the ``shipped`` documents; a clash (same kind and name, different
    content) is a problem naming both files; an identical copy is taken once."""
    seen = {_key(doc): doc for doc in own}
    merged = list(own)
    problems = []
    for doc in shipped:
        other = seen.get(_key(doc))
        if other is None:
            seen[_key(doc)] = doc
            merged.append(doc)
        elif other.data != doc.data:
            kind, name = _key(doc)
            problems.append(doc.problem(("name",), f"{kind} '{name}' is also declared in "
                                                   f"{other.file}:{other.line_of(('name',))}; rename one of them"))
    return merged, problems


def load_with_shipped(directory: str | Path, folders: Iterable[tuple[str, Any]]) -> AppModel:
    """Load and compile ``directory`` together with the plugins' ``folders``, reporting
    every problem of every file at once (``MetadataError``)."""
    own, problems = load_directory(directory)
    shipped, found = _load_shipped(folders)
    merged, clashes = merge(own, shipped)
    return compile_documents(merged, earlier=[*problems, *found, *clashes])


def missing_from_live(live_documents: list[dict[str, Any]], folders: Iterable[tuple[str, Any]]) \
        -> tuple[list[dict[str, Any]], list[Problem]]:
    """The shipped documents whose kind and name the live metadata lacks."""
    shipped, problems = _load_shipped(folders)
    live = {(d.get("kind", ""), d.get("name")) for d in live_documents}
    return [doc.data for doc in shipped if _key(doc) not in live], problems


def publish_shipped(service, folders: Iterable[tuple[str, Any]], *, author: str):
    """Publish the shipped documents the live metadata lacks, with the live ones (what
    ``loom init`` does after installing a plugin); the plan, or None when none is missing.
    A document the live metadata has already is left as it is: the app's admins own it
    from then on, and ``loom metadata apply`` updates it."""
    from loom.errors import MetadataError
    from loom.schema.service import model_from_documents

    number = service.live().number
    documents = service.documents_of(number) if number else []
    missing, problems = missing_from_live(documents, folders)
    if problems:
        raise MetadataError(problems)
    if not missing:
        return None
    return service.apply(model_from_documents([*documents, *missing], "<plugin metadata>"), author=author,
                         source="plugins")
