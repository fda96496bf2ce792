"""Interface text in every language: gettext catalogs, one `.po` file per language.

The source strings (msgids) are English and written where they are used, in templates and
code; `api/locales/<lang>/LC_MESSAGES/messages.po` translates them. Adding a language is
adding its `.po` file (`make messages` extracts the strings and updates every catalog).
Catalogs are compiled in memory once per process; no `.mo` file is kept.

Every msgid is a %-format string, with or without variables: a literal percent is `%%`.
"""

from __future__ import annotations

import functools
import gettext
from collections.abc import Mapping
from io import BytesIO
from pathlib import Path

from babel import Locale
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

LOCALES_DIR = Path(__file__).resolve().parent.parent / "locales"
DOMAIN = "messages"
SOURCE_LANGUAGE = "en"  # the msgids' language: it needs no catalog


def catalog_path(language: str) -> Path:
    """Where the catalog of `language` lives."""
    return LOCALES_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


@functools.cache
def languages() -> tuple[str, ...]:
    """The languages the interface speaks: English, then each language with a catalog."""
    found = sorted(p.parent.parent.name for p in LOCALES_DIR.glob(f"*/LC_MESSAGES/{DOMAIN}.po"))
    return (SOURCE_LANGUAGE, *(code for code in found if code != SOURCE_LANGUAGE))


@functools.cache
def translations(language: str) -> gettext.NullTranslations:
    """The catalog of `language` compiled in memory, once per process (English: none)."""
    if language == SOURCE_LANGUAGE or language not in languages():
        return gettext.NullTranslations()
    with catalog_path(language).open("rb") as po:
        catalog = read_po(po, locale=language, domain=DOMAIN)
    mo = BytesIO()
    write_mo(mo, catalog, use_fuzzy=False)  # a fuzzy guess is not a translation
    mo.seek(0)
    return Translations(mo, domain=DOMAIN)


def N_(message: str) -> str:  # noqa: N802 (the name gettext's tools look for)
    """Mark a msgid for extraction where it is defined; translate it where it is shown."""
    return message


class Translator:
    """One language's interface text. Immutable, so shared freely between threads."""

    def __init__(self, language: str) -> None:
        self.language = language
        self.translations = translations(language)

    def gettext(self, message: str, /, **variables: object) -> str:
        """`message` in this language, its %(name)s placeholders filled from `variables`."""
        return self.translations.gettext(message) % variables

    def ngettext(self, singular: str, plural: str, num: int, /, **variables: object) -> str:
        """The form of `singular`/`plural` that fits `num` in this language; `num` fills
        %(num)d unless `variables` give it."""
        variables.setdefault("num", num)
        return self.translations.ngettext(singular, plural, num) % variables

    def labels(self, msgids: Mapping[str, str]) -> dict[str, str]:
        """Each key's label in this language (the values are msgids marked with `N_`)."""
        return {key: self.gettext(msgid) for key, msgid in msgids.items()}

    def language_name(self, code: str) -> str:
        """The name of language `code` in this language ("Japanese", "英語")."""
        return Locale.parse(code).get_display_name(self.language) or code


@functools.cache
def translator(language: str) -> Translator:
    """The translator of `language` (English for a language without a catalog)."""
    return Translator(language if language in languages() else SOURCE_LANGUAGE)
