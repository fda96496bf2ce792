"""Helpers for tests of HTML pages: a person's browser, and the structure a page must have."""

from __future__ import annotations

import itertools
import re

from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from indexer.embedding.encoders import CachedEmbedder
from tests.support.html_dom import Node

BROWSER_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)


def check_accessible(doc: Node) -> None:
    """Structure a screen reader and a keyboard need: lang, one h1, labels, named buttons."""
    html = doc.one("html")
    assert html.get("lang") in ("ja", "en")
    assert doc.find("meta", name="viewport") is not None
    assert len(doc.find_all("h1")) == 1
    levels = [int(n.tag[1]) for n in doc.iter() if re.fullmatch(r"h[1-6]", n.tag)]
    assert levels[0] == 1
    for before, after in itertools.pairwise(levels):
        assert after <= before + 1, f"heading level jumps from h{before} to h{after}"
    labelled = {n.get("for") for n in doc.find_all("label")}
    for control in doc.find_all("input") + doc.find_all("textarea"):
        if control.get("type") in ("hidden", "submit"):
            continue
        assert control.get("id") in labelled or control.get("aria-label"), control.attrs
    for button in doc.find_all("button"):
        assert button.text.strip(), "a button without a name"
    skip = doc.find("a", class_="skip")
    assert skip is not None and skip.get("href") == "#main" and doc.by_id("main") is not None
    ids = [n.get("id") for n in doc.iter() if n.get("id")]
    assert len(ids) == len(set(ids)), "duplicate ids"


def limited_client(settings: Settings, embedder: CachedEmbedder, **limits: float) -> TestClient:
    """A browser-like client of an app built with other limits (e.g. vote_rate_limit=3)."""
    app = create_app(settings.model_copy(update=limits), embedder=embedder)
    client = TestClient(app)
    client.headers["User-Agent"] = BROWSER_UA
    return client
