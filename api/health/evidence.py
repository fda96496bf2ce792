"""A flag's evidence as readable sentences and numbers (never raw JSON) in the page's language.

Each known figure has a translated label; proportions read "12 of 40 (30%; 95% interval
18%–45%)", before/after tests read as a sentence, view counts as a total with its split.
Unknown keys (evidence from a newer detector) still show, labelled by their name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from api.web.i18n import N_, Translator

LABELS = {
    "helpful": N_("Helpful votes"),
    "not_helpful": N_("Not helpful votes"),
    "helpful_ratio": N_("Helpful share"),
    "site_typical": N_("Typical on the site"),
    "site_prior": N_("Site prior"),
    "accepted": N_("Suggestions accepted"),
    "rejected": N_("Suggestions rejected"),
    "acceptance": N_("Acceptance"),
    "margin": N_("Margin"),
    "views": N_("Views"),
    "revised_days_ago": N_("Days since the last revision"),
    "stale_days": N_("Stale after (days)"),
    "window_days": N_("Window (days)"),
    "recent_views": N_("Views in the window"),
    "previous_views": N_("Views in the window before"),
    "recent_helpful_ratio": N_("Helpful share in the window"),
    "previous_helpful_ratio": N_("Helpful share in the window before"),
    "trend_test": N_("Change test"),
    "pair": N_("Articles"),
    "titles": N_("Titles"),
    "slugs": N_("Addresses"),
    "score": N_("Similarity score"),
    "question_similarity": N_("Question similarity"),
    "word_overlap": N_("Word overlap"),
    "closest_texts": N_("Closest texts"),
    "merge": N_("Proposed merge"),
    "language": N_("Language"),
    "medoid": N_("Typical question"),
    "posts": N_("Unanswered posts"),
    "searches": N_("Failed searches"),
    "total": N_("Total"),
    "distinct_texts": N_("Distinct texts"),
    "first_seen": N_("First seen"),
    "last_seen": N_("Last seen"),
    "days": N_("Days"),
    "previous_flag": N_("Previous flag"),
    "answered_now": N_("Answered now"),
}
SHOWN_ELSEWHERE = {"rule", "examples"}
SHARES = {  # values in [0, 1] shown as percentages
    "site_typical",
    "site_prior",
    "margin",
    "question_similarity",
    "word_overlap",
    "answered_now",
    "ratio",
}


def _pct(value: float) -> str:
    return f"{value * 100:.0f}%"


def _number(key: str, value: float) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if key in SHARES and 0 <= value <= 1:
        return _pct(value)
    return f"{value:.3g}"


def _is_proportion(value: Mapping[str, Any]) -> bool:
    return {"successes", "n", "wilson_low", "wilson_high"} <= set(value)


def _proportion(value: Mapping[str, Any], tr: Translator) -> str:
    if not value.get("n"):
        return tr.gettext("no data yet")
    return tr.gettext(
        "%(successes)s of %(n)s (%(ratio)s; 95%% interval %(low)s–%(high)s)",
        successes=value["successes"],
        n=value["n"],
        ratio=_pct(value["successes"] / value["n"]),
        low=_pct(float(value["wilson_low"])),
        high=_pct(float(value["wilson_high"])),
    )


def _comparison(value: Mapping[str, Any], tr: Translator) -> str:
    verdict = (
        tr.gettext("a significant improvement")
        if value.get("significant") and value.get("improved")
        else tr.gettext("a significant decline")
        if value.get("significant")
        else tr.gettext("no significant change")
    )
    return tr.gettext(
        "%(verdict)s (p = %(p)s): before %(before)s, after %(after)s",
        verdict=verdict,
        p=value.get("p_value"),
        before=_text("before", value.get("before"), tr),
        after=_text("after", value.get("after"), tr),
    )


def _text(key: str, value: Any, tr: Translator) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return tr.gettext("yes") if value else tr.gettext("no")
    if isinstance(value, int | float):
        return _number(key, value)
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        if _is_proportion(value):
            return _proportion(value, tr)
        if "p_value" in value and "before" in value:
            return _comparison(value, tr)
        if key == "views" and "total" in value:
            return tr.gettext(
                "%(total)s (from agents' replies %(replies)s, found by readers %(organic)s)",
                total=_number("total", value.get("total", 0)),
                replies=_number("total", value.get("from_replies", 0)),
                organic=_number("total", value.get("organic", 0)),
            )
        if key == "merge" and "from" in value and "into" in value:
            return tr.gettext(
                "FAQ %(source)s into FAQ %(target)s", source=value["from"], target=value["into"]
            )
        return "; ".join(f"{_label(k, tr)}: {_text(k, v, tr)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_text(key, v, tr) for v in value)
    return str(value)


def _label(key: str, tr: Translator) -> str:
    return tr.gettext(LABELS[key]) if key in LABELS else key.replace("_", " ")


def evidence_facts(evidence: Mapping[str, Any] | None, tr: Translator) -> list[tuple[str, str]]:
    """(label, readable value) for each figure of a flag's evidence, in its stored order."""
    return [
        (_label(key, tr), _text(key, value, tr))
        for key, value in (evidence or {}).items()
        if key not in SHOWN_ELSEWHERE
    ]
