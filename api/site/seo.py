"""What the site offers search engines: absolute canonical and alternate links, meta
descriptions, `robots.txt`, `sitemap.xml` and the favicon."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlencode
from xml.etree import ElementTree as ET

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response

from api.settings import Settings
from api.site.state import SiteStateDep
from api.web.deps import ServicesDep, SessionDep
from api.web.i18n import languages
from api.web.origin import public_origin
from kb.site import articles as site_articles
from kb.site import sitemap

router = APIRouter(include_in_schema=False)

FAVICON = Path(__file__).parent / "static" / "favicon.svg"
SITEMAP_NS = "http://www.sitemaps.org/schemas/sitemap/0.9"
XHTML_NS = "http://www.w3.org/1999/xhtml"
# Paths search engines have no business in: editors' pages, the APIs and their docs.
DISALLOWED = ("/review", "/v1", "/docs", "/redoc", "/openapi.json", "/healthz", "/metrics")
# Shared caches may keep these this long (they change when articles are published).
CACHE_SECONDS = 3600


def site_origin(request: Request, settings: Settings) -> str:
    """The site's public origin: FAQLOOP_BASE_URL when set, else the request's own (its
    scheme as the trusted proxies report it), as suggest makes its reply links absolute."""
    return public_origin(settings.base_url, request)


def _query(path: str, params: Mapping[str, str]) -> str:
    return f"{path}?{urlencode(params, quote_via=quote)}" if params else path


@dataclass
class PageMeta:
    """A page's head for search engines: canonical URL, language alternates, description."""

    canonical: str | None = None
    # (hreflang, absolute URL), x-default last; empty when the page has one language only.
    alternates: list[tuple[str, str]] = field(default_factory=list)
    description: str = ""
    noindex: bool = False


def language_alternates(
    origin: str, path: str, page_languages: Iterable[str], params: Mapping[str, str] | None = None
) -> list[tuple[str, str]]:
    """Alternates of a page that takes `?lang=`: one per language, and x-default the page
    without it (which follows the browser's language)."""
    found = [
        (lang, origin + _query(path, {**(params or {}), "lang": lang})) for lang in page_languages
    ]
    if len(found) < 2:
        return []
    return [*found, ("x-default", origin + _query(path, dict(params or {})))]


def article_alternates(origin: str, versions: Mapping[str, str]) -> list[tuple[str, str]]:
    """Alternates of an article: its published versions by language, and x-default."""
    if len(versions) < 2:
        return []
    found = [(lang, f"{origin}/faq/{slug}") for lang, slug in sorted(versions.items())]
    default = sitemap.x_default(dict(versions))
    return [*found, ("x-default", f"{origin}/faq/{default}")]


def home_meta(origin: str, language: str, description: str) -> PageMeta:
    """The home page in one language."""
    return PageMeta(
        canonical=f"{origin}/?lang={language}",
        alternates=language_alternates(origin, "/", languages()),
        description=description,
    )


def category_meta(
    origin: str, key: str, language: str, in_languages: Iterable[str], description: str
) -> PageMeta:
    """A category page: alternates in the site's languages the category has articles in."""
    shown = [lang for lang in languages() if lang in set(in_languages) or lang == language]
    path = f"/category/{quote(key, safe='')}"
    return PageMeta(
        canonical=f"{origin}{path}?lang={language}",
        alternates=language_alternates(origin, path, shown),
        description=description,
    )


# -- robots.txt, sitemap.xml, favicon -----------------------------------------------------


@router.get("/robots.txt", response_class=PlainTextResponse)
def robots_txt(request: Request, services: ServicesDep) -> Response:
    """Everything public may be crawled; editors' pages and the APIs may not."""
    origin = site_origin(request, services.settings)
    lines = ["User-agent: *", "Allow: /", *(f"Disallow: {path}" for path in DISALLOWED)]
    body = "\n".join([*lines, "", f"Sitemap: {origin}/sitemap.xml", ""])
    return PlainTextResponse(body, headers={"Cache-Control": f"public, max-age={CACHE_SECONDS}"})


def _url(
    urlset: ET.Element, loc: str, alternates: list[tuple[str, str]], lastmod: str | None
) -> None:
    url = ET.SubElement(urlset, f"{{{SITEMAP_NS}}}url")
    ET.SubElement(url, f"{{{SITEMAP_NS}}}loc").text = loc
    if lastmod:
        ET.SubElement(url, f"{{{SITEMAP_NS}}}lastmod").text = lastmod
    for hreflang, href in alternates:
        ET.SubElement(
            url, f"{{{XHTML_NS}}}link", {"rel": "alternate", "hreflang": hreflang, "href": href}
        )


@router.get("/sitemap.xml")
def sitemap_xml(
    request: Request, services: ServicesDep, session: SessionDep, state: SiteStateDep
) -> Response:
    """The home and category pages in each language, and every published article with its
    translations (xhtml:link alternates) and the time of its current revision."""
    origin = site_origin(request, services.settings)
    ET.register_namespace("", SITEMAP_NS)
    ET.register_namespace("xhtml", XHTML_NS)
    urlset = ET.Element(f"{{{SITEMAP_NS}}}urlset")
    site_languages = languages()
    home = language_alternates(origin, "/", site_languages)
    for lang in site_languages:
        _url(urlset, f"{origin}/?lang={lang}", home, None)
    names = state.categories()
    for lang in site_languages:
        for summary in site_articles.list_categories(
            session, language=lang, names=names, per_category=0
        ):
            meta = category_meta(
                origin,
                summary.key,
                lang,
                sitemap.category_languages(session, summary.key),
                description="",
            )
            assert meta.canonical is not None
            _url(urlset, meta.canonical, meta.alternates, None)
    for article in sitemap.published_articles(session):
        _url(
            urlset,
            f"{origin}/faq/{article.slug}",
            article_alternates(origin, article.alternates),
            article.updated_at.isoformat(timespec="seconds"),
        )
    ET.indent(urlset)
    body = ET.tostring(urlset, encoding="utf-8", xml_declaration=True)
    return Response(
        body,
        media_type="application/xml",
        headers={"Cache-Control": f"public, max-age={CACHE_SECONDS}"},
    )


@router.get("/favicon.ico")
def favicon() -> Response:
    """The site's icon (SVG) where browsers and crawlers look for it without a link."""
    return Response(
        FAVICON.read_bytes(),
        media_type="image/svg+xml",
        headers={"Cache-Control": "public, max-age=86400"},
    )
