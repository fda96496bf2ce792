"""The fixed phrases of reply drafts, in every language that has a template.

The phrases are written here in English, the source language; each other language's
wording is a gettext catalog of the `replies` domain,
`kb/replies/locales/<lang>/LC_MESSAGES/replies.po`, compiled in memory once per process.
A phrase is a slot (its msgctxt: greeting, apology, lead, dm_personal, ...) and a msgid;
a slot's variants are its msgids in order, and a draft picks among them by a hash of the
post. Placeholders are `%(brand)s` and `%(agent)s`.

A language has templates when its catalog exists and translates every phrase (no fuzzy
entries); a language without one gets no draft (never English words or a half-translated
one), and the suggestion says why. Adding a language is adding its `.po` file: `make
messages` extracts the phrases (`babel-replies.cfg`, keyword `R_`) into
`kb/replies/locales/replies.pot` and updates every catalog.

Why in kb and not under api/locales: drafts are composed by kb for the API, `faqloop
suggest-file` and the benchmarks alike, and kb never imports api; the wording is domain
data next to the code that uses it, as the fitted calibrations live next to indexer's
retrieval. The tools are the interface text's (gettext `.po`, babel).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from babel.messages.pofile import read_po

LOCALES_DIR = Path(__file__).resolve().parent / "locales"
DOMAIN = "replies"
SOURCE_LANGUAGE = "en"  # the msgids' language: it needs no catalog
PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def R_(slot: str, message: str) -> tuple[str, str]:  # noqa: N802 (the extraction keyword)
    """Mark a phrase of `slot` (its msgctxt) for extraction; the pair is its catalog key."""
    return slot, message


# Each slot's variants in the source language, in order.
PHRASES: dict[str, tuple[tuple[str, str], ...]] = {
    "greeting": (
        R_("greeting", "Hi there, this is %(brand)s Support."),
        R_("greeting", "Hello from %(brand)s Support!"),
        R_("greeting", "Hi, %(brand)s Support here."),
        R_("greeting", "Hey there, %(brand)s Support here."),
    ),
    "greeting_agent": (
        R_("greeting_agent", "Hi, this is %(agent)s from %(brand)s Support."),
        R_("greeting_agent", "Hello! %(agent)s here from %(brand)s Support."),
        R_("greeting_agent", "Hi there, %(agent)s with %(brand)s Support."),
        R_("greeting_agent", "Hey, %(agent)s from the %(brand)s team here."),
    ),
    "greeting_short": (R_("greeting_short", "Hi from %(brand)s!"),),
    "greeting_short_agent": (R_("greeting_short_agent", "Hi, %(agent)s at %(brand)s."),),
    "apology": (
        R_("apology", "Sorry for the trouble!"),
        R_("apology", "We're sorry about this."),
        R_("apology", "Sorry to hear that, thanks for bearing with us."),
        R_("apology", "Apologies for the hassle."),
    ),
    "question": (
        R_("question", "Thanks for asking!"),
        R_("question", "Good question!"),
        R_("question", "Happy to help with that."),
        R_("question", "Sure thing!"),
    ),
    "thanks": (
        R_("thanks", "Thank you so much for the kind words!"),
        R_("thanks", "Thanks a lot, that means a lot to the team!"),
        R_("thanks", "We really appreciate you saying so!"),
        R_("thanks", "Thank you, you made our day!"),
    ),
    "resolved": (
        R_("resolved", "Great to hear it's working now, thanks for letting us know!"),
        R_("resolved", "Glad it's sorted, and thanks for the update!"),
        R_("resolved", "Happy to hear that, thank you for telling us!"),
    ),
    "lead": (
        R_("lead", "Details here:"),
        R_("lead", "Step by step:"),
        R_("lead", "Full guide:"),
        R_("lead", "More here:"),
    ),
    "dm_personal": (
        R_(
            "dm_personal",
            "To keep your details safe, please delete that post and send them to us by DM instead.",
        ),
        R_(
            "dm_personal",
            "Please don't share personal details publicly: send us a DM and we'll check for you.",
        ),
        R_(
            "dm_personal",
            "For your privacy, please remove the post and DM us, we'll take it from there.",
        ),
    ),
    "dm_account": (
        R_("dm_account", "We'll need to check your account, so please send us a DM."),
        R_("dm_account", "Please DM us so we can look at your account securely."),
        R_("dm_account", "To check your account, could you send us a DM?"),
    ),
    "dm_short": (R_("dm_short", "Please DM us."),),
    "signature": (R_("signature", "— %(brand)s Support"),),
}


@dataclass(frozen=True)
class ReplyWording:
    """One language's phrases: each slot's variants, placeholders not yet filled."""

    language: str
    slots: Mapping[str, tuple[str, ...]]

    def variants(self, slot: str) -> tuple[str, ...]:
        """The variants of a slot in this language."""
        return self.slots[slot]


def catalog_path(language: str) -> Path:
    """Where the reply templates of `language` live."""
    return LOCALES_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


@functools.cache
def reply_wording(language: str) -> ReplyWording | None:
    """The phrases of `language`, or None when it has no complete catalog (no template)."""
    if language == SOURCE_LANGUAGE:
        return ReplyWording(
            language, {slot: tuple(m for _, m in pairs) for slot, pairs in PHRASES.items()}
        )
    path = catalog_path(language)
    if not re.fullmatch(r"[a-z]{2,3}", language) or not path.is_file():
        return None
    with path.open("rb") as po:
        catalog = read_po(po, locale=language, domain=DOMAIN)
    slots: dict[str, tuple[str, ...]] = {}
    for slot, pairs in PHRASES.items():
        out = []
        for context, msgid in pairs:
            message = catalog.get(msgid, context=context)
            text = message.string if message is not None else ""
            if not isinstance(text, str) or not text.strip() or message.fuzzy:  # type: ignore[union-attr]
                return None  # a half-translated draft would be invented: none at all
            if set(PLACEHOLDER.findall(text)) - set(PLACEHOLDER.findall(msgid)):
                return None  # a placeholder the source does not fill
            out.append(text)
        slots[slot] = tuple(out)
    return ReplyWording(language, slots)


def template_languages() -> tuple[str, ...]:
    """The languages drafts can be written in: English, then each complete catalog's."""
    found = sorted(p.parent.parent.name for p in LOCALES_DIR.glob(f"*/LC_MESSAGES/{DOMAIN}.po"))
    return (SOURCE_LANGUAGE, *(c for c in found if c != SOURCE_LANGUAGE and reply_wording(c)))


def no_template_reason(language: str) -> str:
    """Why a post in `language` gets no draft."""
    return f"no reply template for language {language!r}"
