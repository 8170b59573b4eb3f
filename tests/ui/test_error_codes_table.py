"""One table of error codes, kept whole: every code Loom's code gives an error is in
``loom.errors.ERROR_CODES``, has a sentence in the screens (``loom.ui.messages``) and a
row in the API guide; and the screens find the sentence by code, never by reading the
English message."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from loom.errors import _STATUS_CODES, ERROR_CODES, _code_of
from loom.records.schemas import _MARSHMALLOW_CODES
from loom.ui import messages

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("platform/loom", "metadata", "ui", "seed", "plugins")
GUIDE = ROOT / "docs" / "api.md"


def _constants(node: ast.AST) -> list[str]:
    """The string constants an expression may evaluate to (``"a" if x else "b"``: both)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.IfExp):
        return _constants(node.body) + _constants(node.orelse)
    return []


def _callee(node: ast.Call) -> str:
    func = node.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def codes_in_source() -> dict[str, str]:
    """Every code the source gives an error: code -> where (file:line)."""
    found: dict[str, str] = {}

    def note(codes: list[str], where: str) -> None:
        for code in codes:
            found.setdefault(code, where)

    for folder in SOURCES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
                if isinstance(node, ast.Call):
                    name = _callee(node)
                    if name == "error_entry" and len(node.args) > 1:
                        note(_constants(node.args[1]), where)
                    elif name == "InvalidValue" and node.args:
                        note(_constants(node.args[0]), where)
                    note([c for k in node.keywords if k.arg == "code" for c in _constants(k.value)], where)
                elif isinstance(node, ast.Dict):
                    note([c for key, value in zip(node.keys, node.values, strict=True)
                          if isinstance(key, ast.Constant) and key.value == "code" for c in _constants(value)], where)
                elif isinstance(node, ast.ClassDef):
                    # an error class's code: its own, else the one its problem type implies
                    assigned = {statement.targets[0].id: _constants(statement.value) for statement in node.body
                                if isinstance(statement, ast.Assign) and len(statement.targets) == 1
                                and isinstance(statement.targets[0], ast.Name)}
                    own = [c for c in assigned.get("code", []) if c]
                    types = [t for t in assigned.get("type", []) if t == "about:blank" or "/problems/" in t]
                    note(own or [_code_of(t) for t in types], where)
    note(list(_STATUS_CODES.values()) + list(_MARSHMALLOW_CODES.values()), "the tables of loom.errors and schemas")
    return found


def guide_table() -> dict[str, str]:
    """The API guide's table of codes: code -> its params cell."""
    text = GUIDE.read_text(encoding="utf-8")
    section = text[text.index("### Error codes"):]
    return dict(re.findall(r"^\| `([a-z_]+)` \| ([^|]*) \|", section, re.M))


def test_the_scan_finds_codes_of_every_kind_of_source():
    found = codes_in_source()
    # a converter, a validator, an entry helper, a keyword, a dict literal, a class, a problem type
    assert {"not_a_number", "not_a_mobile", "state_locked", "forbidden_action", "wrong_type", "invalid_values",
            "stale_version"} <= set(found)


def test_every_code_in_the_source_is_in_the_table():
    unknown = {code: where for code, where in codes_in_source().items() if code not in ERROR_CODES}
    assert unknown == {}


def test_every_code_in_the_table_is_given_somewhere():
    found = codes_in_source()
    # "invalid" is what an entry made without a code gets (loom.errors.as_entry)
    assert [code for code in ERROR_CODES if code not in found and code != "invalid"] == []


def test_every_code_has_a_sentence_on_the_screens():
    assert [code for code in ERROR_CODES if code not in messages.MESSAGES and code not in messages.GENERAL] == []
    assert set(messages.MESSAGES) <= set(ERROR_CODES) and set(messages.GENERAL) <= set(ERROR_CODES)


def test_every_sentence_uses_only_the_params_of_its_code():
    for code, sentence in messages.MESSAGES.items():
        used = set(re.findall(r"%\((\w+)\)s", sentence._args[0]))
        declared = {p.rstrip("?") for p in ERROR_CODES[code].params}
        assert used <= declared, code


def test_the_api_guide_lists_every_code_with_its_params():
    table = guide_table()
    assert list(table) == list(ERROR_CODES)
    for code, cell in table.items():
        assert re.findall(r"`(\w+)`", cell) == [p.rstrip("?") for p in ERROR_CODES[code].params], code


def test_the_screens_read_no_english_to_translate():
    source = (ROOT / "ui" / "messages.py").read_text(encoding="utf-8")
    assert "re.compile" not in source and "import re" not in source
    widgets = (ROOT / "ui" / "widgets.py").read_text(encoding="utf-8")
    assert "message_text" not in widgets and "_KERNEL_MESSAGES" not in widgets
