"""Interface text: every msgid in the code and templates is translated in every catalog, pages
speak the language asked for, and adding a language is adding a catalog file."""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from fastapi.testclient import TestClient

from api.web import i18n
from api.web.templating import environment, gettext_callables
from tests.support.html_dom import Node, parse
from tests.support.paths import ROOT

PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]")
CATALOG_LANGUAGES = [code for code in i18n.languages() if code != i18n.SOURCE_LANGUAGE]


def used_msgids() -> dict[str, str]:
    """Every msgid the code and templates use (as `make messages` extracts them): where."""
    with (ROOT / "babel.cfg").open(encoding="utf-8") as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    found: dict[str, str] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(
        str(ROOT), method_map, options_map
    ):
        for msgid in message if isinstance(message, tuple) else (message,):
            if msgid:
                found.setdefault(msgid, f"{filename}:{lineno}")
    return found


def read_catalog(language: str) -> Catalog:
    with i18n.catalog_path(language).open("rb") as po:
        return read_po(po, locale=language)


def test_there_is_a_japanese_catalog() -> None:
    assert "ja" in CATALOG_LANGUAGES
    assert i18n.languages()[0] == "en"


@pytest.mark.parametrize("language", CATALOG_LANGUAGES)
def test_every_msgid_used_has_a_translation(language: str) -> None:
    catalog = read_catalog(language)
    used = used_msgids()
    assert len(used) > 100  # the extraction found the interface text
    missing = [
        f"{where}: {msgid!r}"
        for msgid, where in sorted(used.items())
        if msgid not in catalog or not catalog[msgid].string or catalog[msgid].fuzzy
    ]
    assert not missing, f"untranslated in {language} (run `make messages`):\n" + "\n".join(missing)


@pytest.mark.parametrize("language", CATALOG_LANGUAGES)
def test_translations_keep_the_placeholders_and_nothing_is_stale(language: str) -> None:
    catalog = read_catalog(language)
    problems = [f"{message.id!r}: {errors}" for message, errors in catalog.check()]
    # Every msgid is a %-format string, filled with its own variables: same names, no stray %.
    for message in catalog:
        if not message.id or not message.string:
            continue
        names = set(PLACEHOLDER.findall(message.id))
        if set(PLACEHOLDER.findall(message.string)) != names:
            problems.append(f"{message.id!r}: placeholders differ in {message.string!r}")
            continue
        try:
            message.string % dict.fromkeys(names, 1)
        except (KeyError, TypeError, ValueError) as exc:
            problems.append(f"{message.id!r}: {message.string!r} is no format string ({exc})")
    assert not problems, "\n".join(problems)
    used = used_msgids()
    stale = sorted(m.id for m in catalog if m.id and m.id not in used)
    assert not stale, f"msgids no longer used (run `make messages`): {stale}"


def test_python_and_templates_fill_placeholders_and_escape() -> None:
    ja = i18n.translator("ja")
    assert (
        ja.gettext("Please check your input: %(detail)s", detail="x")
        == "入力内容をご確認ください：x"
    )
    assert i18n.translator("en").gettext("95%% interval") == "95% interval"
    assert i18n.translator("xx").language == "en"  # no catalog: English
    template = environment.from_string('<h1>{{ _("Results for “%(q)s”", q=q) }}</h1>')
    html = template.render(q="<b>&", **gettext_callables("ja"))
    assert html == "<h1>「&lt;b&gt;&amp;」の検索結果</h1>"
    # A translation is text: its own characters are escaped too.
    apostrophe = environment.from_string('{{ _("p (Fisher\'s exact test)") }}')
    assert apostrophe.render(**gettext_callables("en")) == "p (Fisher&#39;s exact test)"


def test_concurrent_renders_keep_their_own_language() -> None:
    template = environment.from_string('{{ _("Search") }}/{{ _("%(n)s flags", n=n) }}')
    expected = {"ja": "検索/{n} 件", "en": "Search/{n} flags"}

    def render(i: int) -> bool:
        lang = ("ja", "en")[i % 2]
        return template.render(n=i, **gettext_callables(lang)) == expected[lang].format(n=i)

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert all(pool.map(render, range(400)))


@pytest.fixture
def french(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A locales folder holding the real catalogs plus a French one of a single message."""
    for language in CATALOG_LANGUAGES:
        target = tmp_path / language / "LC_MESSAGES"
        target.mkdir(parents=True)
        (target / "messages.po").write_bytes(i18n.catalog_path(language).read_bytes())
    (tmp_path / "fr" / "LC_MESSAGES").mkdir(parents=True)
    (tmp_path / "fr" / "LC_MESSAGES" / "messages.po").write_text(
        'msgid ""\nmsgstr ""\n"Language: fr\\n"\n"Content-Type: text/plain; charset=utf-8\\n"\n\n'
        'msgid "Search"\nmsgstr "Rechercher"\n',
        encoding="utf-8",
    )
    caches = (i18n.languages, i18n.translations, i18n.translator)
    monkeypatch.setattr(i18n, "LOCALES_DIR", tmp_path)
    for cached in caches:
        cached.cache_clear()
    yield
    monkeypatch.undo()
    for cached in caches:
        cached.cache_clear()


def test_adding_a_language_is_adding_its_catalog(french: None) -> None:
    assert i18n.languages() == ("en", "fr", "ja")
    fr = i18n.translator("fr")
    assert fr.gettext("Search") == "Rechercher"
    assert fr.gettext("Home") == "Home"  # not translated yet: the English text
    assert fr.language_name("ja") == "japonais"


# -- pages in both languages -------------------------------------------------------------


def page(client: TestClient, url: str, **headers: str) -> Node:
    r = client.get(url, headers=headers)
    assert r.status_code == 200, (url, r.status_code, r.text[:300])
    return parse(r.text)


def texts(doc: Node) -> tuple[str, str, str]:
    """The page's language, its h1 and its footer."""
    return doc.one("html").get("lang") or "", doc.one("h1").text, doc.one("footer").text.strip()


def test_site_pages_speak_the_language_asked_for(client: TestClient) -> None:
    assert texts(page(client, "/?lang=ja")) == (
        "ja",
        "どのようなことでお困りですか？",
        "ソラミモバイル ヘルプセンター",
    )
    assert texts(page(client, "/?lang=en")) == (
        "en",
        "How can we help?",
        "Sorami Mobile Help Center",
    )
    ja = page(client, "/faq/apn-iphone-ja")
    assert ja.by_id("feedback-h").text == "この記事は役に立ちましたか？"  # type: ignore[union-attr]
    assert ja.one("a", class_="translation").text == "Read this article in English"
    assert ja.one("a", class_="lang-switch").text == "English"
    en = page(client, "/faq/apn-iphone")
    assert en.by_id("feedback-h").text == "Was this helpful?"  # type: ignore[union-attr]
    assert en.one("a", class_="translation").text == "この記事を日本語で読む"
    assert en.one("a", class_="lang-switch").text == "日本語"
    search_ja = page(client, "/search?q=eSIM&lang=ja")
    assert search_ja.one("h1").text == "「eSIM」の検索結果"
    assert search_ja.one("p", class_="other-lang").text.strip() == "英語の記事を検索する"
    search_en = page(client, "/search?q=eSIM&lang=en")
    assert search_en.one("h1").text == "Results for “eSIM”"
    assert (
        search_en.one("p", class_="other-lang").text.strip()
        == "Search the Japanese articles instead"
    )
    missing = client.get("/faq/no-such-article", headers={"Accept-Language": "ja"})
    assert (
        missing.status_code == 404
        and parse(missing.text).one("h1").text == "ページが見つかりません"
    )


def test_editor_pages_speak_the_language_asked_for(
    client: TestClient, editor_headers: dict[str, str]
) -> None:
    login = page(client, "/review/login?lang=ja")
    assert texts(login) == ("ja", "FAQレビュー: ログイン", "ソラミモバイル · 編集者専用")
    assert page(client, "/review/login", **{"Accept-Language": "en-US"}).one("h1").text == (
        "FAQ review: Sign in"
    )
    assert texts(page(client, "/review?lang=ja", **editor_headers)) == (
        "ja",
        "レビュー待ち",
        "ソラミモバイル · 編集者専用",
    )
    assert page(client, "/review?lang=en", **editor_headers).one("h1").text == "Review queue"
    health = page(client, "/review/health?lang=ja", **editor_headers)
    assert health.one("h1").text == "コンテンツの健全性"
    kinds = [o.text for o in health.one("select", name="kind").find_all("option")]
    assert kinds[:3] == ["すべての種類", "役に立たない", "採用されない"]
    health_en = page(client, "/review/health?lang=en&done=recomputing", **editor_headers)
    assert health_en.one("p", class_="notice").text.startswith("Recompute started")
