"""Triage on a labelled set of 303 posts in eleven languages (tests/data/triage_posts.yaml):
quality floors per class on the tuned part and on the held-out part (figures in
docs/replies.md, "How well triage does")."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml

from kb.replies.triage import triage_post

DATA = yaml.safe_load(
    (Path(__file__).parents[1] / "data" / "triage_posts.yaml").read_text(encoding="utf-8")
)
ADVICE = {
    "question": "reply",
    "complaint": "reply",
    "thanks": "thank",
    "chatter": "skip",
    "spam": "skip",
}
BRAND = {"brand_handles": ("SoramiMobile",), "brand_names": ("Sorami Mobile", "ソラミモバイル")}


def _run(split: str) -> list[tuple[str, str, str]]:
    """(label, expected advice, given advice) per post of a part of the set."""
    out = []
    for line in DATA[split]:
        label, text = (part.strip() for part in line.split(" | ", 1))
        out.append((label, ADVICE[label], triage_post(text, **BRAND).advice.value))  # type: ignore[arg-type]
    return out


def per_class(rows: list[tuple[str, str, str]]) -> dict[str, tuple[float, float]]:
    """Precision and recall of each advice."""
    out = {}
    for advice in ("reply", "thank", "skip"):
        tp = sum(1 for _, want, got in rows if want == advice and got == advice)
        predicted = sum(1 for _, _, got in rows if got == advice)
        actual = sum(1 for _, want, _ in rows if want == advice)
        out[advice] = (tp / predicted if predicted else 0.0, tp / actual if actual else 0.0)
    return out


def label_recall(rows: list[tuple[str, str, str]], *labels: str) -> float:
    """Share of the posts with these labels that got their advice."""
    mine = [(want, got) for label, want, got in rows if label in labels]
    return sum(1 for want, got in mine if want == got) / len(mine)


def test_the_set_is_large_and_varied() -> None:
    labels = Counter(line.split(" | ", 1)[0] for split in DATA.values() for line in split)
    assert sum(labels.values()) >= 300
    assert set(labels) == set(ADVICE) and min(labels.values()) >= 20


@pytest.mark.parametrize("split", ["tune", "held_out"])
def test_complaints_and_chatter_are_heard(split: str) -> None:
    rows = _run(split)
    assert label_recall(rows, "complaint") >= 0.9
    assert label_recall(rows, "chatter", "spam") >= 0.9
    for advice, (precision, recall) in per_class(rows).items():
        assert precision >= 0.85, (advice, precision)
        assert recall >= 0.85, (advice, recall)
