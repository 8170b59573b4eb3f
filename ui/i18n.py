"""The interface language: Flask-Babel catalogues for Loom's own text, the metadata's
en/zh labels for entities, fields and options.

The locale is the one the user chose with the language switch, else their profile's,
else the browser's Accept-Language.
"""

from __future__ import annotations

from importlib.resources import files

from babel import support
from flask import Flask, g, request, session
from flask_babel import Babel, Domain, get_locale, gettext, lazy_gettext, ngettext, pgettext

from loom.metadata.model import label_text

#: interface languages: locale -> its name in itself
LANGUAGES = {"en": "English", "zh_CN": "中文"}
SESSION_KEY = "locale"

__all__ = ["LANGUAGES", "current_locale", "gettext", "install", "join", "label", "lazy_gettext", "ngettext",
           "pgettext"]


def normalise(locale: str | None) -> str | None:
    """A supported locale for ``locale`` (zh, zh-CN, zh_Hans_CN -> zh_CN), or None."""
    if not locale:
        return None
    lang = locale.replace("-", "_").split("_")[0].lower()
    return {"zh": "zh_CN", "en": "en"}.get(lang)


def select_locale() -> str:
    chosen = normalise(session.get(SESSION_KEY))
    if chosen:
        return chosen
    principal = g.get("principal")
    if principal is not None and not principal.is_system and normalise(principal.locale):
        return normalise(principal.locale)
    best = request.accept_languages.best_match(["en", "zh", "zh-CN", "zh-Hans", "zh-TW"])
    return normalise(best) or "en"


def current_locale() -> str:
    """The interface language of this request, as one of ``LANGUAGES``."""
    return normalise(str(get_locale() or "en")) or "en"


def label(thing, locale: str | None = None) -> str:
    """The label of an entity, field, option or role in the interface language."""
    locale = locale or current_locale()
    if hasattr(thing, "title"):
        return thing.title(locale)
    return label_text(getattr(thing, "label", {}), locale, getattr(thing, "value", str(thing)))


def join(items) -> str:
    """Items of a list as one phrase in the interface language: Chinese separates them with
    the enumeration comma 、, not the ASCII comma English uses."""
    separator = "、" if current_locale() == "zh_CN" else ", "
    return separator.join(str(item) for item in items)


def help_text(thing) -> str:
    return label_text(getattr(thing, "help", {}), current_locale(), "")


class CatalogueDomain(Domain):
    """Finds the catalogue of a locale under its short name: Babel calls Chinese as used in
    mainland China ``zh_Hans_CN``, the catalogue folder is ``zh_CN``."""

    def get_translations(self):
        locale = get_locale()
        if locale is None:
            return support.NullTranslations()
        key = str(locale)
        if key not in self.cache:
            names = [key, normalise(key) or key]
            translations = support.Translations()
            for directory in self.translation_directories:
                catalogue = support.Translations.load(directory, names, self.domain[0])
                translations.merge(catalogue)
                if hasattr(catalogue, "plural"):
                    translations.plural = catalogue.plural
            self.cache[key] = translations
        return self.cache[key]


def install(app: Flask) -> None:
    directory = str(files("loom.ui").joinpath("translations"))
    babel = Babel(app, locale_selector=select_locale, default_translation_directories=directory)
    babel.domain_instance = CatalogueDomain(domain="messages")
    app.jinja_env.globals.update(label=label, help_text=help_text, current_locale=current_locale,
                                 LANGUAGES=LANGUAGES)
    app.jinja_env.filters["join_phrase"] = join
