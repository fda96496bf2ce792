"""Every label of the review queue's filters (and its counts and badges) is in the page's
language: no status, sort or language code shown raw on the Japanese page."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.support.html_dom import parse

pytestmark = pytest.mark.db

RAW = {"open", "rejected", "published", "merged", "all", "demand", "growth", "newest", "ja", "en"}


def test_the_queue_filters_speak_japanese(editor_client: TestClient) -> None:
    doc = parse(editor_client.get("/review?lang=ja").text)
    form = doc.one("form", class_="filters")
    labels = [option.text.strip() for option in form.find_all("option")]
    assert labels == [
        "未対応",
        "却下",
        "公開中",
        "統合済み",
        "すべて",
        "スレッド数が多い順",
        "増加が速い順",
        "直近7日",
        "新しい順",
        "すべての言語",
        "日本語",
        "英語",
    ]
    assert not RAW & set(labels)
    # The submit button and the fields' labels too.
    assert form.one("button").text.strip() == "絞り込む"
    captions = [label.children[0].strip() for label in form.find_all("label")]  # type: ignore[union-attr]
    assert captions == ["表示", "並び順", "言語"]
    counts = doc.by_id("thread-counts")
    assert counts is not None
    assert "covered" not in counts.text and "記事で回答済み" in counts.text


def test_the_queue_filters_in_english_keep_their_values(editor_client: TestClient) -> None:
    doc = parse(editor_client.get("/review?lang=en").text)
    form = doc.one("form", class_="filters")
    options = {o.get("value"): o.text.strip() for o in form.find_all("option")}
    assert options["open"] == "Open" and options["demand"] == "Most threads"
    assert options["ja"] == "Japanese" and options["en"] == "English"
