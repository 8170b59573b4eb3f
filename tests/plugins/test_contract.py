"""The contract kept honest: every hook is documented and tested, and first-party plugins
use only what ``loom`` exports."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import loom
import loom.metadata
from loom import hookspecs

ROOT = Path(__file__).resolve().parents[2]
HOOKS = sorted(name for name, value in vars(hookspecs).items() if callable(value) and hasattr(value, "loom_spec"))


def test_every_hook_has_a_test():
    """Like Datasette's test_plugin_hooks_have_tests: a hook counts as tested when a test
    under tests/plugins/ is named after it and an implementation of it (a plugin's
    ``def <hook>(``) is there or in a first-party plugin the tests load."""
    sources = {path: path.read_text(encoding="utf-8") for path in (ROOT / "tests" / "plugins").glob("*.py")}
    plugins = "".join(path.read_text(encoding="utf-8") for path in (ROOT / "plugins").rglob("*.py"))
    tests = {name for text in sources.values() for name in re.findall(r"^def (test_\w+)", text, re.M)}
    untested = [hook for hook in HOOKS if not any(hook in test for test in tests)]
    assert not untested, f"hooks without a test named after them in tests/plugins/: {untested}"
    unimplemented = [hook for hook in HOOKS
                     if not re.search(rf"def {hook}\(", "".join(sources.values()) + plugins)]
    assert not unimplemented, f"hooks no test plugin implements: {unimplemented}"


def test_every_hook_is_documented_with_its_parameters():
    guide = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    for hook in HOOKS:
        assert f"### `{hook}`" in guide, f"docs/plugins.md has no section for {hook}"
        params = ", ".join(getattr(hookspecs, hook).__code__.co_varnames[:getattr(hookspecs, hook).__code__.co_argcount])
        assert f"`{hook}({params})`" in guide, f"docs/plugins.md does not show {hook}({params})"


def test_every_hook_has_a_docstring_and_keyword_parameters():
    for hook in HOOKS:
        spec = getattr(hookspecs, hook)
        assert spec.__doc__ and len(spec.__doc__) > 40, hook
        assert not spec.__code__.co_flags & 0x0C, f"{hook} takes *args or **kwargs"


#: what a first-party plugin may import from Loom: the package's exported names, the
#: compiled metadata objects, and the test fixtures (for its tests)
PUBLIC_NAMES = {"loom": set(loom.__all__), "loom.metadata": set(loom.metadata.__all__)}
PUBLIC_MODULES = {*PUBLIC_NAMES, "loom.testing"}


def private_imports(path: Path, root: Path = ROOT) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("loom.") and a.name not in PUBLIC_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("loom.") and node.module not in PUBLIC_MODULES:
                found.append(node.module)
            elif node.module in PUBLIC_NAMES:
                found += [f"{node.module}.{a.name}" for a in node.names if a.name not in PUBLIC_NAMES[node.module]]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "loom" \
                and node.attr not in PUBLIC_NAMES["loom"] | {"metadata", "testing"}:
            found.append(f"loom.{node.attr}")
    return [f"{path.relative_to(root)}:{name}" for name in found]


def test_first_party_plugins_use_only_the_public_api():
    files = sorted((ROOT / "plugins").rglob("*.py"))
    assert files, "no first-party plugins found"
    offenders = [item for path in files for item in private_imports(path)]
    assert not offenders, f"first-party plugins reach past loom's public names: {offenders}"


def test_the_check_catches_private_imports(tmp_path):
    sneaky = tmp_path / "sneaky.py"
    sneaky.write_text("import loom\nimport loom.db\nfrom loom.records.service import RecordService\n"
                      "from loom import hookimpl, plugin_manager\nx = loom.app\n")
    assert private_imports(sneaky, tmp_path) == [
        "sneaky.py:loom.db", "sneaky.py:loom.records.service", "sneaky.py:loom.plugin_manager", "sneaky.py:loom.app"]
