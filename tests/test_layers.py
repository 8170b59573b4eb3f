"""Layers point one way: shared basics at the bottom, the metadata language above them,
the domains above that (in a fixed order), the web layer and the plugin host above the
domains, the app and its commands above those, and the screens and the demo on top. The
platform never imports the screens, and no module takes part in an import cycle, imports
made inside functions included (those under ``if TYPE_CHECKING:`` run never, so they do
not count).

The import graph is read from the source files (the folders pyproject.toml maps into
``loom``), so that it covers every folder of the package, not only platform/loom.
"""

from __future__ import annotations

import ast
import fnmatch
import tomllib
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: (layer name, module patterns), bottom first; a module may import its own layer and
#: those below it, and the first pattern that matches decides a module's layer
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("basics", ("loom.config", "loom.db", "loom.errors", "loom.principal", "loom.sql", "loom.problems",
                "loom.csvfile", "loom.downloads", "loom.edge", "loom.hookspecs", "loom.events", "loom.jobs")),
    ("metadata language", ("loom.metadata", "loom.metadata.*")),
    ("expression language", ("loom.expressions", "loom.expressions.*")),
    ("audit log", ("loom.audit", "loom.audit.log", "loom.audit.chain", "loom.audit.models", "loom.audit.reading",
                   "loom.audit.alerts", "loom.audit.archive*")),
    ("identity", ("loom.identity", "loom.identity.models", "loom.identity.credentials", "loom.identity.service")),
    ("schema", ("loom.schema", "loom.schema.*", "!loom.schema.api")),
    ("permissions", ("loom.permissions", "loom.permissions.*")),
    ("integration rules", ("loom.integrations.models", "loom.integrations.actions", "loom.integrations.context",
                           "loom.integrations.rules", "loom.integrations.rule_kind", "loom.integrations.templates",
                           "loom.integrations.triggers")),
    ("records", ("loom.records", "loom.records.*", "!loom.records.api", "!loom.records.uploading")),
    ("plugin host", ("loom.plugins", "loom.plugins.*")),
    ("integrations", ("loom.integrations", "loom.integrations.*", "!loom.integrations.api")),
    ("web", ("loom.*.api", "loom.identity.auth", "loom.identity.admin", "loom.records.uploading",
             "loom.audit.refusals", "loom.audit.*")),
    ("app", ("loom.app", "loom.models", "loom.migrations", "loom.migrations.*")),
    ("demo", ("loom.seed", "loom.seed.*")),
    ("commands", ("loom.cli", "loom.commands", "loom.commands.*", "loom.testing", "loom")),
    ("screens", ("loom.ui", "loom.ui.*")),
]


def _layer_of(module: str) -> int:
    for index, (_name, patterns) in enumerate(LAYERS):
        excluded = any(fnmatch.fnmatchcase(module, p[1:]) for p in patterns if p.startswith("!"))
        if not excluded and any(fnmatch.fnmatchcase(module, p) for p in patterns if not p.startswith("!")):
            return index
    raise AssertionError(f"{module} is in no layer: add it to LAYERS in tests/test_layers.py")


def _modules() -> dict[str, Path]:
    """Every module of the ``loom`` package, from the folders pyproject.toml maps into it."""
    package_dirs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    modules = {}
    for package, folder in package_dirs.items():
        if not package.startswith("loom") or package.startswith("loom_"):
            continue
        base = ROOT / folder
        for path in base.rglob("*.py"):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join([package, *parts])
            # a folder mapped to a package of its own belongs to that mapping only
            if any(name == other or name.startswith(other + ".") for other in package_dirs
                   if other != package and other.startswith(package + ".")):
                continue
            modules[name] = path
    return modules


def _type_checking_only(tree: ast.Module) -> set[int]:
    """The ids of the import nodes under ``if TYPE_CHECKING:``."""
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            ids.update(id(inner) for child in node.body for inner in ast.walk(child))
    return ids


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        skipped = _type_checking_only(tree)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parent + ([node.module] if node.module else []))
                if base.split(".")[0] != "loom":
                    continue
                for alias in node.names:
                    target = f"{base}.{alias.name}"
                    graph[name].add(target if target in modules else base)
            elif isinstance(node, ast.Import):
                graph[name].update(a.name for a in node.names if a.name.split(".")[0] == "loom")
    return graph


MODULES = _modules()
GRAPH = _imports(MODULES)


def test_every_module_is_in_a_layer():
    for name in MODULES:
        _layer_of(name)


def test_layers_point_one_way():
    upward = []
    for source, targets in GRAPH.items():
        for target in targets:
            if target in MODULES and _layer_of(target) > _layer_of(source):
                upward.append(f"{source} ({LAYERS[_layer_of(source)][0]}) imports {target} "
                              f"({LAYERS[_layer_of(target)][0]})")
    assert not upward, "\n".join(sorted(upward))


def test_the_platform_never_imports_the_screens():
    screens = LAYERS.index(next(layer for layer in LAYERS if layer[0] == "screens"))
    leaks = [f"{source} imports {target}" for source, targets in GRAPH.items() if _layer_of(source) < screens
             for target in targets if target == "loom.ui" or target.startswith("loom.ui.")]
    assert not leaks, "\n".join(sorted(leaks))


def _cycles(graph: dict[str, set[str]], nodes: set[str]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    counter = 0
    for start in sorted(nodes):
        if start in index:
            continue
        work = [(start, iter(sorted(set(graph.get(start, ())) & nodes)))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(set(graph.get(child, ())) & nodes))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycles():
    cycles = _cycles(GRAPH, set(MODULES))
    assert not cycles, "\n".join(" <-> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_a_cycle():
    """The check above would pass on a finder that finds nothing: show it finds one."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph, set(graph)) == [["a", "b", "c"]]
