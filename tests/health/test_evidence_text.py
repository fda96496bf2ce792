"""A flag's evidence reads as labelled sentences and numbers in the page's language, never
JSON — for every figure a detector stores, and for keys no label knows yet."""

from __future__ import annotations

from api.health.evidence import evidence_facts
from api.web.i18n import translator

EVIDENCE = {
    "helpful": 3,
    "not_helpful": 17,
    "helpful_ratio": {
        "successes": 3,
        "n": 20,
        "ratio": 0.15,
        "wilson_low": 0.0524,
        "wilson_high": 0.3604,
        "bayesian": 0.2,
    },
    "site_typical": 0.72,
    "views": {"total": 1200, "from_replies": 200, "organic": 1000, "site": 1000, "reply": 200},
    "trend_test": {
        "before": {"successes": 30, "n": 40, "wilson_low": 0.6, "wilson_high": 0.86},
        "after": {"successes": 3, "n": 20, "wilson_low": 0.05, "wilson_high": 0.36},
        "p_value": 0.00012,
        "significant": True,
        "improved": False,
    },
    "merge": {"from": 12, "into": 7},
    "closest_texts": ["reset password", "forgot password"],
    "rule": "upper 95% bound 0.360 < site typical 0.720",
    "brand_new_figure": 0.5,
}


def test_english_evidence_is_sentences_and_numbers() -> None:
    facts = dict(evidence_facts(EVIDENCE, translator("en")))
    assert facts["Helpful share"] == "3 of 20 (15%; 95% interval 5%–36%)"
    assert facts["Typical on the site"] == "72%"
    assert facts["Views"] == "1,200 (from agents' replies 200, found by readers 1,000)"
    assert facts["Change test"].startswith("a significant decline (p = 0.00012): before 30 of 40")
    assert facts["Proposed merge"] == "FAQ 12 into FAQ 7"
    assert facts["Closest texts"] == "reset password, forgot password"
    assert facts["brand new figure"] == "0.5"
    assert "Rule" not in facts and "rule" not in facts  # shown on its own line
    assert not any(v.startswith(("{", "[")) for v in facts.values())


def test_japanese_evidence_is_translated() -> None:
    facts = dict(evidence_facts(EVIDENCE, translator("ja")))
    assert facts["役に立った割合"] == "20 件中 3 件（15%、95% 区間 5%〜36%）"
    assert facts["提案された統合"] == "FAQ 12 を FAQ 7 に統合"


def test_empty_and_missing_evidence() -> None:
    assert evidence_facts(None, translator("en")) == []
    facts = dict(
        evidence_facts(
            {"helpful_ratio": {"successes": 0, "n": 0, "wilson_low": 0, "wilson_high": 1}},
            translator("en"),
        )
    )
    assert facts == {"Helpful share": "no data yet"}
