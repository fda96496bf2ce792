"""Reply drafts an agent can send as they are: short, personal, one link, fit for the channel.

A draft for the best FAQ has, in the post's language:

1. a greeting with the brand (and the agent's name when configured);
2. a sentence that fits the post: an apology for a problem, thanks for a question;
3. the gist of the answer: the first one or two sentences of the FAQ's first paragraph,
   Markdown stripped;
4. the article link with ``?src=reply`` (the site counts those views as coming from replies);
5. a signature.

Thanks and praise get a short thank-you without a link. When the post carries personal data,
or the FAQ is marked as needing the customer's account (`needs_account`: a refund, an unpaid
bill, a change to the contract — never a category as such), the draft moves the conversation
to a direct message; it never repeats anything the customer wrote.

Wording varies between posts: each part is chosen among variants by a hash of the post,
so the same post always gets the same draft and similar posts get different ones.

To fit the channel (X: 280 weighted characters), the draft gives up, in this order: the
second gist sentence, words (English) or clauses (Japanese) at the end of the first one
(marked with "…"), the long greeting, the fitting sentence, and the gist. The link is never
shortened, and nothing is cut inside a word or a link.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from sqlalchemy.orm import Session

from indexer.lexical.scripts import HAN, HEXAGRAMS, KANA
from indexer.retrieval.confidence import ConfidenceModel
from kb.indexing import IndexManager
from kb.models import TriageAdvice
from kb.replies.channels import DEFAULT_LIMITS, Channel, resolve_channel
from kb.replies.triage import Triage, triage_post
from kb.replies.wording import ReplyWording, no_template_reason, reply_wording
from kb.suggest.service import SuggestOutcome, SuggestPolicy, record_suggestion, suggest
from kb.text.cleaning import split_sentences
from kb.text.language import normalize_text
from kb.text.personal_data import personal_data_kinds

DM_PERSONAL_DATA = "personal_data"
DM_ACCOUNT = "needs_account"


@dataclass(frozen=True)
class ReplyPolicy:
    """Who signs the drafts and when they hand off to a direct message (from settings)."""

    brand_name: str = "Sorami Mobile"
    brand_name_ja: str = "ソラミモバイル"
    agent_name: str = ""
    signature: str = ""  # empty: "^<agent>" or the brand's support team
    brand_handles: tuple[str, ...] = ("SoramiMobile",)
    channel_limits: Mapping[str, int | None] = field(default_factory=lambda: dict(DEFAULT_LIMITS))


@dataclass(frozen=True)
class FaqForReply:
    """What a draft needs to know about the FAQ it links to."""

    faq_id: int
    title: str
    answer: str  # Markdown
    url: str
    category: str
    needs_account: bool = False  # answering needs the customer's account: hand off to a DM
    language: str = ""  # the article's; its gist is left out of a draft in another language


@dataclass(frozen=True)
class ReplyDraft:
    """A draft and how it measures against its channel."""

    text: str
    weighted_length: int
    limit: int | None
    channel: str
    dm_handoff: bool
    dm_reason: str | None
    kind: str  # answer, thanks, dm
    fits: bool


# -- wording ------------------------------------------------------------------------------

# The fixed phrases live in gettext catalogs, one per language (kb/replies/wording.py).
# Languages whose sentences are joined without spaces.
_NO_SPACE = ("ja", "zh")


class _Chooser:
    """Deterministic choices from a hash of the post: same post, same draft."""

    def __init__(self, post: str) -> None:
        key = normalize_text(post).casefold().encode()
        self._digest = hashlib.sha256(key).digest()

    def pick(self, options: Sequence[str], slot: int) -> str:
        return options[self._digest[slot % len(self._digest)] % len(options)]


# -- the FAQ's gist ----------------------------------------------------------------------

_MD_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
_MD_LINK = re.compile(r"\[([^\]]*)\]\(([^)]*)\)")
_MD_AUTOLINK = re.compile(r"<(?:https?://|www\.|/)[^>]*>")
_BARE_URL = re.compile(r"(?:https?://|www\.)\S+")
_MD_EMPHASIS = re.compile(r"(\*\*|__|\*|_|~~|`)(?=\S)(.+?)(?<=\S)\1")
_HTML_TAG = re.compile(r"</?[A-Za-z][^>]*>")
_LIST_OR_BLOCK = re.compile(r"^\s*(?:[-*+]\s|\d+[.)]\s|#|>|\||```|<!--)")
_SPACES = re.compile(r"[ \t]+")
_POINTS_ELSEWHERE = re.compile(
    r"[:：]$|\b(?:below|following|these (?:steps|checks|causes)|the steps|as follows)\b"
    r"|次の|以下|下記|こちらの手順",
    re.IGNORECASE,
)
_JA_CHAR = re.compile(f"[{KANA}{HAN}{HEXAGRAMS}]")
# A sentence that is only a yes or a no ("No.", "Yes, ", "はい。", "いいえ、できません" is not).
_BARE_YES_NO = re.compile(
    r"^\s*(?:yes|no|yep|nope|sure|correct|unfortunately not|not yet|はい|いいえ|できます|できません"
    r"|可能です|不可です)\s*[.!。！、,]?\s*$",
    re.IGNORECASE,
)


def strip_markdown(text: str) -> str:
    """Plain text of inline Markdown: links become their text, emphasis and code marks go."""
    escaped: list[str] = []

    def hide(m: re.Match[str]) -> str:
        escaped.append(m.group(1))
        return f"\x00{len(escaped) - 1}\x00"

    text = re.sub(r"\\([\\`*_{}\[\]()#+\-.!>|<])", hide, text.replace("\x00", ""))
    text = _MD_IMAGE.sub("", text)
    # A link whose text is itself a path or URL says nothing without the link: drop it.
    text = _MD_LINK.sub(
        lambda m: "" if re.match(r"^\s*(?:/|https?://|www\.)", m.group(1)) else m.group(1), text
    )
    text = _BARE_URL.sub("", _MD_AUTOLINK.sub("", text))
    text = _HTML_TAG.sub("", text)
    for _ in range(2):  # nested emphasis: ***x***
        text = _MD_EMPHASIS.sub(r"\2", text)
    text = re.sub(r"\x00(\d+)\x00", lambda m: escaped[int(m.group(1))], text)
    text = re.sub(r"\s+(?=[,.;:!?。、])", "", text)  # where a removed link left a gap
    return _SPACES.sub(" ", text).strip()


def answer_gist(answer: str, *, sentences: int = 2) -> list[str]:
    """The first sentences of the answer's first prose paragraph, as plain text."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", answer.strip()) if p.strip()]
    prose = [p for p in paragraphs if not _LIST_OR_BLOCK.match(p)]
    chosen = prose[0] if prose else (paragraphs[0] if paragraphs else "")
    lines = [re.sub(r"^\s*(?:[-*+]|\d+[.)])\s+", "", line) for line in chosen.split("\n")]
    plain = strip_markdown(" ".join(line.strip() for line in lines))
    # "Try these steps:" points at a list the reply does not carry.
    out = [
        s.strip()
        for s in split_sentences(plain)
        if s.strip() and not _POINTS_ELSEWHERE.search(s.strip())
    ]
    # A bare "No." says nothing without its condition: it goes with the next sentence, and
    # alone it goes.
    while out and _BARE_YES_NO.match(out[0]):
        if len(out) == 1:
            out = []
            break
        sep = "" if _JA_CHAR.search(out[1]) else " "
        out = [out[0] + sep + out[1], *out[2:]]
        if not _BARE_YES_NO.match(out[0]):
            break
    # Japanese sentences are joined without spaces; a stray space after 。 goes.
    return [re.sub(r"(?<=[。！？])\s+", "", s) for s in out[:sentences]]


def shortenings(sentence: str, language: str, *, min_words: int = 4) -> list[str]:
    """Shorter forms of a sentence, longest first, cut only between words (or clauses).

    English is cut between words, Japanese after a 、 (it has no spaces between words, and a
    clause is the smallest piece that still reads as a phrase); each form ends in "…".
    """
    body = sentence.rstrip(" 。.!?！？")
    out: list[str] = []
    if language == "ja" or (_JA_CHAR.search(body) and " " not in body.strip()):
        pieces = [p for p in re.split(r"(?<=[、，,])", body) if p]
        for n in range(len(pieces) - 1, 0, -1):
            out.append("".join(pieces[:n]).rstrip("、，, ") + "…")
        return out
    words = body.split(" ")
    for n in range(len(words) - 1, min_words - 1, -1):
        out.append(" ".join(words[:n]).rstrip(",;:–—-( ") + "…")
    return out


# -- composing -----------------------------------------------------------------------------


def reply_link(url: str) -> str:
    """The article URL marked as coming from a reply (``?src=reply``)."""
    return url + ("&" if "?" in url else "?") + "src=reply"


def _signature(policy: ReplyPolicy, wording: ReplyWording, brand: str) -> str:
    if policy.signature.strip():
        return policy.signature.strip()
    if policy.agent_name.strip():
        return "^" + policy.agent_name.strip()
    return wording.variants("signature")[0] % {"brand": brand}


def _join(lines: Iterable[str | None]) -> str:
    return "\n".join(line for line in lines if line)


def _sentence_pair(language: str, first: str | None, second: str | None) -> str | None:
    parts = [p for p in (first, second) if p]
    if not parts:
        return None
    return ("" if language in _NO_SPACE else " ").join(parts)


def _choose(tiers: list[list[str]], channel: Channel) -> tuple[str, bool]:
    """The richest draft that fits: the first tier whose shortest fits, then bisect it."""
    for tier in tiers:
        if not tier or not channel.fits(tier[-1]):
            continue
        lo, hi = 0, len(tier) - 1  # tier[hi] fits; find the first that does
        while lo < hi:
            mid = (lo + hi) // 2
            if channel.fits(tier[mid]):
                hi = mid
            else:
                lo = mid + 1
        return tier[lo], True
    last = [t for t in tiers if t][-1]
    return last[-1], False


def compose_reply(
    post: str,
    language: str,
    *,
    faq: FaqForReply | None,
    triage: Triage,
    personal_data: Sequence[str],
    channel: Channel,
    policy: ReplyPolicy,
) -> ReplyDraft | None:
    """The draft for a post, or None when there is nothing to send (skip, or no FAQ) or no
    template in its language (`kb.replies.wording`: no draft is invented)."""
    wording = reply_wording(language)
    if triage.advice == TriageAdvice.skip or wording is None:
        return None
    dm_reason = None
    if personal_data:
        dm_reason = DM_PERSONAL_DATA
    elif faq is not None and triage.advice == TriageAdvice.reply and faq.needs_account:
        dm_reason = DM_ACCOUNT
    if triage.advice == TriageAdvice.reply and faq is None and dm_reason is None:
        return None  # no FAQ to link and nothing to hand off: the agent writes this one

    brand = policy.brand_name_ja if language == "ja" else policy.brand_name
    agent = policy.agent_name.strip()
    choose = _Chooser(post)

    def pick(name: str, slot: int) -> str:
        return choose.pick(wording.variants(name), slot) % {"brand": brand, "agent": agent}

    greeting = pick("greeting_agent" if agent else "greeting", 0)
    greeting_short = pick("greeting_short_agent" if agent else "greeting_short", 1)
    signature = _signature(policy, wording, brand)

    tiers: list[list[str]]
    if triage.advice == TriageAdvice.thank and dm_reason is None:
        kind = "thanks"
        thanks = pick("resolved" if triage.kind == "resolved" else "thanks", 2)
        tiers = [
            [_join([_sentence_pair(language, greeting, thanks), signature])],
            [_join([_sentence_pair(language, greeting_short, thanks), signature])],
            [_join([thanks, signature])],
        ]
    else:
        if triage.advice == TriageAdvice.thank:
            fit = pick("resolved" if triage.kind == "resolved" else "thanks", 2)
        elif triage.kind == "problem":
            fit = pick("apology", 2)
        else:
            fit = pick("question", 2)
        link = url = None
        if faq is not None:
            url = reply_link(faq.url)
            lead = pick("lead", 3)
            link = lead + ("" if lead.endswith("：") else " ") + url
        heads = [
            _sentence_pair(language, greeting, fit),
            _sentence_pair(language, greeting_short, fit),
            greeting_short,
            None,
        ]
        # The gist only in the draft's own language (an article from another language is
        # linked, not quoted).
        same_language = faq is not None and faq.language in ("", language)
        gist = answer_gist(faq.answer) if faq is not None and same_language else []
        cuts = shortenings(gist[0], language) if gist else []
        # A long greeting stays only while the gist loses little; after that the greeting is
        # shortened before the first sentence is cut further.
        mild_cuts = [c for c in cuts if len(c) >= 0.6 * len(gist[0])] if gist else []
        if dm_reason is not None:
            # The hand-off is the point; the gist (general, never the customer's data) is a
            # bonus that goes first.
            kind = "dm"
            dm = pick("dm_personal" if dm_reason == DM_PERSONAL_DATA else "dm_account", 4)
            dm_short = pick("dm_short", 5)
            first = gist[:1]
            tiers = [[_join([heads[0], g, dm, link, signature]) for g in first + mild_cuts]]
            tiers += [[_join([heads[1], g, dm, link, signature]) for g in first + cuts]]
            tiers += [[_join([h, dm, link, signature])] for h in heads]
            tiers += [[_join([h, dm_short, link, signature])] for h in heads[2:]]
            tiers.append([_join([dm_short, link])])
            tiers.append([_join([dm_short, signature])])
            tiers.append([dm_short])
        else:
            kind = "answer"
            options: list[str] = []
            if len(gist) >= 2:
                options.append(_sentence_pair(language, gist[0], gist[1]) or "")
            options += gist[:1]
            tiers = [[_join([heads[0], g, link, signature]) for g in options + mild_cuts]]
            tiers += [[_join([h, g, link, signature]) for g in options + cuts] for h in heads[1:]]
            tiers += [[_join([h, link, signature])] for h in heads]
            tiers.append([_join([link, signature])])
            tiers.append([link or ""])
            tiers.append([url or ""])  # the link alone; it is never cut
    text, fits = _choose(tiers, channel)
    return ReplyDraft(
        text=text,
        weighted_length=channel.length(text),
        limit=channel.limit,
        channel=channel.name,
        dm_handoff=dm_reason is not None,
        dm_reason=dm_reason,
        kind=kind,
        fits=fits,
    )


# -- suggest + triage + draft --------------------------------------------------------------


def _explained(advice: Triage, out: SuggestOutcome) -> Triage:
    """The triage reason completed with what suggest found: no FAQ, or no draft language."""
    if advice.advice == TriageAdvice.skip:
        return advice
    reason = advice.reason.removesuffix(": reply with the FAQ")
    if advice.advice == TriageAdvice.reply and out.abstained:
        reason += (
            ": reply, but suggest abstained (no FAQ fits it well enough), "
            "so the agent writes this reply"
        )
    elif advice.advice == TriageAdvice.reply and out.cross_language and out.best is not None:
        reason += (
            f": reply with the FAQ, which exists only in {out.best.language!r} "
            f"(the post is in {out.language!r})"
        )
    elif reason != advice.reason:
        reason += ": reply with the FAQ"
    if reply_wording(out.language) is None:
        reason += (
            f"; {no_template_reason(out.language)}, so no draft: "
            "an agent who reads the language writes it"
        )
    return replace(advice, reason=reason)


@dataclass
class AssistedSuggestion:
    """A suggestion with its triage advice and reply draft."""

    outcome: SuggestOutcome
    triage: Triage
    reply: ReplyDraft | None
    personal_data: list[str]
    channel: Channel
    no_reply_reason: str | None = None  # why there is no draft, when there is none


def why_no_draft(language: str, advice: Triage) -> str:
    """Why a post got no draft: no template in its language, triage, or no FAQ to link."""
    if reply_wording(language) is None:
        return no_template_reason(language)
    if advice.advice == TriageAdvice.skip:
        return "triage advises not to reply"
    return "no FAQ fits the post well enough: the agent writes this reply"


def suggest_with_reply(
    session: Session,
    index: IndexManager,
    calibration: ConfidenceModel,
    policy: SuggestPolicy,
    reply_policy: ReplyPolicy,
    *,
    text: str,
    lang: str | None = None,
    k: int | None = None,
    channel: str | None = None,
    api_key_id: int | None = None,
    record: bool = True,
) -> AssistedSuggestion:
    """Suggest the FAQ for a post, advise whether to reply, and draft the reply; record all."""
    target = resolve_channel(channel, reply_policy.channel_limits)
    out = suggest(
        session,
        index,
        calibration,
        policy,
        text=text,
        lang=lang,
        k=k,
        channel=target.name or None,
        api_key_id=api_key_id,
        record=False,  # recorded below, once, with the triage and the draft
    )
    advice = triage_post(
        text,
        brand_handles=reply_policy.brand_handles,
        brand_names=(reply_policy.brand_name, reply_policy.brand_name_ja),
        matched=not out.abstained,
    )
    advice = _explained(advice, out)
    kinds = personal_data_kinds(text)
    best = out.best
    faq = (
        FaqForReply(
            faq_id=best.faq_id,
            title=best.title,
            answer=out.best_answer,
            url=best.url,
            category=best.category,
            needs_account=best.needs_account,
            language=best.language,
        )
        if best is not None and out.best_answer is not None
        else None
    )
    draft = compose_reply(
        text,
        out.language,
        faq=faq,
        triage=advice,
        personal_data=kinds,
        channel=target,
        policy=reply_policy,
    )
    if record:
        record_suggestion(
            session,
            out,
            channel=target.name or None,
            api_key_id=api_key_id,
            triage=advice.advice,
            reply_text=draft.text if draft else None,
            dm_handoff=draft.dm_handoff if draft else None,
        )
    return AssistedSuggestion(
        outcome=out,
        triage=advice,
        reply=draft,
        personal_data=kinds,
        channel=target,
        no_reply_reason=why_no_draft(out.language, advice) if draft is None else None,
    )
