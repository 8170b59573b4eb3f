"""The Chinese catalogue covers every piece of interface text, and the compiled catalogue
that ships is up to date with it."""

from __future__ import annotations

from importlib.resources import files

from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po


def _interface_texts() -> set[str]:
    ui = files("loom.ui")
    with open(ui / "babel.cfg") as config:
        method_map, options_map = parse_mapping_cfg(config)
    keywords = {"_": None, "gettext": None, "lazy_gettext": None, "ngettext": (1, 2), "pgettext": ((1, "c"), 2)}
    found = set()
    for _filename, _line, message, _comments, _context in extract_from_dir(
            str(ui), method_map, options_map, keywords=keywords):
        found.add((message[0] if isinstance(message, tuple) else message, _context))
    return found


def test_every_interface_text_has_a_chinese_translation():
    base = files("loom.ui") / "translations" / "zh_CN" / "LC_MESSAGES"
    with open(base / "messages.po", "rb") as po, open(base / "messages.mo", "rb") as mo:
        source, compiled = read_po(po, locale="zh_CN"), read_mo(mo)
    texts = _interface_texts()
    assert len(texts) > 100
    for catalogue in (source, compiled):
        missing = []
        for text, context in texts:
            message = catalogue.get(text, context=context)
            translation = message.string[0] if message is not None and isinstance(message.string, tuple) \
                else (message.string if message is not None else "")
            if not translation or (message is not None and message.fuzzy):
                missing.append(f"{context}|{text}" if context else text)
        assert not missing, f"untranslated: {sorted(missing)}"
