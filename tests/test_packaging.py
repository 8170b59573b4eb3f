"""Packaging: every package is listed, files are found through importlib.resources, and
the source layout does not shadow the standard library."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    found = set()
    for package, folder in config["tool"]["setuptools"]["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder)
            found.add(".".join([package, *relative.parts]))
    assert found == listed, f"unlisted: {sorted(found - listed)}; listed but missing: {sorted(listed - found)}"


def test_platform_folder_does_not_shadow_the_standard_library():
    assert not (ROOT / "platform" / "__init__.py").exists()
    result = subprocess.run([sys.executable, "-c", "import platform; print(platform.system())"],
                            cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip()


def test_hookspecs_are_all_documented_in_the_plugin_guide():
    from loom import hookspecs

    guide = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    hooks = [name for name, value in vars(hookspecs).items()
             if callable(value) and hasattr(value, "loom_spec")]
    assert hooks, "no hooks found"
    missing = [h for h in hooks if f"`{h}`" not in guide]
    assert not missing, f"hooks missing from docs/plugins.md: {missing}"


def test_a_built_wheel_finds_its_schemas_seed_and_templates(tmp_path):
    """What ``pip install .`` installs works without the checkout: files are found through
    importlib.resources, not paths into the source tree."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist"), str(ROOT)], check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("loom-*.whl"))
    import zipfile

    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "site")
    assert {"loom/metadata/schemas/entity.schema.json", "loom/ui/templates/home.html",
            "loom/seed/crm/customer.yaml", "loom/migrations/env.py", "loom/testing.py"} <= names
    script = (
        "import loom, loom.cli, sys\n"
        "assert loom.__file__.startswith(sys.argv[1]), loom.__file__\n"
        "from importlib.resources import files\n"
        "sys.argv = ['loom', 'metadata', 'validate', str(files('loom.seed') / 'crm')]\n"
        "loom.cli.main()\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "site")], cwd=tmp_path,
                            env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "ok: 6 entities" in result.stdout
