"""Anonymous visitors: cookie tokens, their HMAC, CSRF tokens, robots and request parsing.

Only an HMAC of a visitor's random token (keyed by a server secret) is stored, so the
database holds nothing that leads back to a person.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from kb.errors import CsrfRejected, InvalidInput
from kb.models import (
    ViewSource,
)
from kb.text.language import LANGUAGES

# -- visitors ----------------------------------------------------------------------------

_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{20,64}$")


def new_visitor_token() -> str:
    """A fresh random visitor token (the cookie value)."""
    return secrets.token_urlsafe(24)


def is_valid_visitor_token(token: str | None) -> bool:
    """Whether a cookie value looks like a token this site issued."""
    return bool(token) and _TOKEN_RE.match(token or "") is not None


def _mac(secret: str, purpose: str, token: str) -> str:
    # One key, separate purposes: a leaked CSRF token says nothing about the stored hash.
    return hmac.new(secret.encode(), f"{purpose}:{token}".encode(), hashlib.sha256).hexdigest()


def visitor_hash(secret: str, token: str) -> str:
    """The stored identity of a visitor: HMAC-SHA256 of the cookie token (64 hex chars)."""
    return _mac(secret, "visitor", token)


def csrf_token(secret: str, token: str) -> str:
    """The anti-forgery token that vote forms and the JSON vote endpoint must echo."""
    return _mac(secret, "csrf", token)[:40]


def check_csrf(secret: str, token: str | None, submitted: str | None) -> None:
    """Raise CsrfRejected unless `submitted` is the token derived from the visitor cookie."""
    if not is_valid_visitor_token(token):
        raise CsrfRejected(
            "your browser did not send the site's cookie; allow cookies for this site, "
            "reload the page and try again"
        )
    expected = csrf_token(secret, token or "")
    if not submitted or not hmac.compare_digest(expected, submitted.strip()):
        raise CsrfRejected(
            "the form is missing its security token or the token has expired; "
            "reload the page and try again"
        )


# Known robots, crawlers, link previewers, monitors and HTTP libraries. Matched anywhere in
# the User-Agent, case-insensitively. Headless browsers are deliberately absent: they are
# how people test the site, and a robot that wants to pass as a browser will anyway.
BOT_PATTERNS: tuple[str, ...] = (
    r"(?<!cu)bot\b",  # googlebot, bingbot, twitterbot, ... (but not the CUBOT phone brand)
    r"crawl",
    r"spider",
    r"slurp",
    r"archiver",
    r"facebookexternalhit",
    r"facebookcatalog",
    r"mediapartners-google",
    r"adsbot",
    r"google-inspectiontool",
    r"googleother",
    r"feedfetcher",
    r"embedly",
    r"quora link preview",
    r"outbrain",
    r"vkshare",
    r"whatsapp",
    r"skypeuripreview",
    r"bitlybot",
    r"w3c_validator",
    r"validator\.nu",
    r"lighthouse",
    r"pagespeed",
    r"gtmetrix",
    r"pingdom",
    r"uptime",
    r"statuscake",
    r"monitor",
    r"prerender",
    r"phantomjs",
    r"ahrefs",
    r"semrush",
    r"mj12",
    r"petalsearch",
    r"yandex",
    r"baidu",
    r"sogou",
    r"bytespider",
    r"gptbot",
    r"ccbot",
    r"anthropic-ai",
    r"claude-web",
    r"perplexity",
    r"cohere-ai",
    r"diffbot",
    r"curl/",
    r"wget",
    r"libwww",
    r"python-requests",
    r"python-urllib",
    r"python-httpx",
    r"aiohttp",
    r"httpie",
    r"go-http-client",
    r"java/",
    r"okhttp",
    r"apache-httpclient",
    r"node-fetch",
    r"axios/",
    r"undici",
    r"scrapy",
    r"postmanruntime",
    r"insomnia",
)
_BOT_RE = re.compile("|".join(BOT_PATTERNS), re.I)


def is_bot(user_agent: str | None) -> bool:
    """Whether a User-Agent is a known robot; an empty one counts as a robot too."""
    if not user_agent or not user_agent.strip():
        return True
    return _BOT_RE.search(user_agent) is not None


def is_prefetch(*purpose_headers: str | None) -> bool:
    """Whether a request is a speculative prefetch (Sec-Purpose, Purpose, X-Moz headers)."""
    return any(h and "prefetch" in h.lower() for h in purpose_headers)


def negotiate_language(accept_language: str | None, default: str = "ja") -> str:
    """The first of the site's languages in an Accept-Language header, by preference."""
    if not accept_language:
        return default
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(accept_language.split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        match = re.search(r"q\s*=\s*([0-9.]+)", params)
        if match:
            try:
                q = float(match.group(1))
            except ValueError:
                q = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGUAGES and q > 0:
            ranked.append((-q, position, primary))
    return min(ranked)[2] if ranked else default


def parse_language(value: str | None) -> str | None:
    """A `lang` parameter: None when absent, InvalidInput when not a site language."""
    if value is None or value == "":
        return None
    if value not in LANGUAGES:
        raise InvalidInput(f"lang must be one of {', '.join(LANGUAGES)}")
    return value


def parse_source(value: str | None) -> ViewSource:
    """The arrival source of a `src` parameter; anything unknown counts as direct.

    Lenient on purpose: social apps append and mangle parameters, and a reader who
    arrives through a mangled link must still get the article.
    """
    try:
        return ViewSource((value or "").strip().lower())
    except ValueError:
        return ViewSource.direct


def parse_id(value: str | None, name: str) -> int | None:
    """An optional id field of a form: None when absent, InvalidInput when malformed."""
    if value is None or not value.strip():
        return None
    number = parse_int(value)
    if number is None:
        raise InvalidInput(f"{name} must be a positive whole number")
    return number


def parse_int(value: str | None) -> int | None:
    """A positive integer parameter, or None when absent or malformed."""
    if value is None or not value.strip().isdigit():
        return None
    number = int(value.strip())
    return number if 0 < number < 2**31 else None


# Personal data (comments, search logs) is masked by kb.text.personal_data.scrub_personal_data,
# the one implementation for the whole service.
