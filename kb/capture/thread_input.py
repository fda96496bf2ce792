"""A thread as it arrives (API body or file row): parsed and validated."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from kb.errors import InvalidInput
from kb.models import (
    PostRole,
)

MAX_POSTS = 200
MAX_POST_CHARS = 10_000
MAX_CHANNEL = 32
MAX_EXTERNAL_ID = 200
MAX_URL = 2000
MAX_REASON = 500
MAX_CATEGORY = 64
_X_HOSTS = frozenset({"x.com", "twitter.com", "mobile.twitter.com", "mobile.x.com"})
_INSTAGRAM_HOSTS = frozenset({"instagram.com", "m.instagram.com"})
_INSTAGRAM_POSTS = frozenset({"p", "reel", "reels", "tv"})
_HANDLE_FIRST_HOSTS = frozenset({"threads.net", "threads.com", "tiktok.com", "m.tiktok.com"})


def url_without_handle(url: str) -> str | None:
    """A thread's URL with the customer's handle removed, or None when it only names them.

    X/Twitter `https://x.com/<handle>/status/<id>` becomes `https://x.com/i/status/<id>`
    (which X still resolves); Instagram `/<handle>/p/<code>` becomes `/p/<code>`; on other
    sites a path segment `@handle` is dropped. Profile and story URLs, and `mailto:` (an
    e-mail address), give None. Query strings and fragments of these sites (share and
    tracking ids) are dropped; other URLs lose only a `user:password@` part.
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:  # not parseable: it cannot be checked for a handle, so it is dropped
        return None
    if parts.scheme.lower() == "mailto":
        return None
    host = (parts.hostname or "").lower()
    bare = host.removeprefix("www.")
    netloc = (f"[{host}]" if ":" in host else host) + (f":{port}" if port else "")
    segments = [seg for seg in parts.path.split("/") if seg]
    scheme = parts.scheme.lower() or "https"
    if bare in _X_HOSTS:
        for i, seg in enumerate(segments[:-1]):
            if seg in ("status", "statuses") and segments[i + 1].isdigit():
                return f"https://x.com/i/status/{segments[i + 1]}"
        return None
    if bare in _INSTAGRAM_HOSTS:
        for i, seg in enumerate(segments[:-1]):
            if seg in _INSTAGRAM_POSTS:
                return f"https://www.instagram.com/{seg}/{segments[i + 1]}/"
        return None
    if bare in _HANDLE_FIRST_HOSTS:
        kept = [seg for seg in segments if not seg.startswith(("@", "%40"))]
        if len(kept) < 2:  # a profile, not a post
            return None
        return urlunsplit((scheme, netloc, "/" + "/".join(kept), "", ""))
    kept = [seg for seg in segments if not seg.startswith(("@", "%40"))]
    path = "/" + "/".join(kept) if kept else ("/" if parts.path else "")
    if path and parts.path.endswith("/") and kept:
        path += "/"
    return urlunsplit((scheme, netloc, path, parts.query, parts.fragment))


# --------------------------------------------------------------------------------------
# Input
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PostIn:
    role: PostRole
    author: str
    text: str
    created_at: datetime | None = None


@dataclass(frozen=True)
class ThreadIn:
    """A resolved thread as received (API body or one import row), validated."""

    channel: str
    external_id: str
    posts: tuple[PostIn, ...]
    url: str | None = None
    resolved_at: datetime | None = None
    faq_id: int | None = None


CHANNEL_ALIASES = {"twitter": "x", "x.com": "x", "ig": "instagram", "mail": "email"}


def parse_time(value: object, what: str) -> datetime | None:
    """An aware UTC datetime from a datetime, an ISO 8601 string or a Unix time; None for empty.

    Naive times are taken as UTC, the convention of the exports this reads.
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        # Milliseconds since the epoch are common in exports; seconds would be before 1973.
        seconds = value / 1000 if value > 100_000_000_000 else value
        try:
            parsed = datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise InvalidInput(f"{what} is not a valid time: {value!r}") from exc
    elif isinstance(value, str):
        text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
        if "T" not in text and " " in text and text.count(":") >= 1:
            text = text.replace(" ", "T", 1)
        text = text.replace("/", "-")
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError as exc:
            raise InvalidInput(
                f"{what} is not an ISO 8601 time (e.g. 2026-11-20T09:15:00+09:00): {value!r}"
            ) from exc
    else:
        raise InvalidInput(f"{what} must be a time string, got {type(value).__name__}")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _text(data: Mapping[str, Any], key: str, what: str, *, required: bool, limit: int) -> str:
    value = data.get(key)
    if value is None:
        value = ""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # numeric ids in exports
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a string")
    value = value.strip()
    if required and not value:
        raise InvalidInput(f"{what} must not be empty")
    if len(value) > limit:
        raise InvalidInput(f"{what} is longer than {limit} characters")
    return value


def normalize_channel(value: str) -> str:
    """Lower-case channel name with common aliases folded (twitter → x)."""
    channel = value.strip().lower()
    return CHANNEL_ALIASES.get(channel, channel)


def post_from_dict(data: object, where: str) -> PostIn:
    """One post of a thread body; raises InvalidInput naming `where`."""
    if not isinstance(data, Mapping):
        raise InvalidInput(f"{where} must be an object")
    role = _text(data, "role", f"{where}.role", required=True, limit=32).lower()
    if role not in (PostRole.customer.value, PostRole.agent.value):
        raise InvalidInput(f"{where}.role must be customer or agent, got {role!r}")
    text = _text(data, "text", f"{where}.text", required=True, limit=MAX_POST_CHARS)
    author = _text(data, "author", f"{where}.author", required=False, limit=200)
    created = parse_time(data.get("created_at"), f"{where}.created_at")
    return PostIn(role=PostRole(role), author=author, text=text, created_at=created)


def thread_from_dict(data: object) -> ThreadIn:
    """Validate a thread body (the API body and one JSONL line share it); InvalidInput if bad.

    Unknown keys are ignored: exports carry extra fields.
    """
    if not isinstance(data, Mapping):
        raise InvalidInput("a thread must be a JSON object")
    channel = normalize_channel(_text(data, "channel", "channel", required=True, limit=MAX_CHANNEL))
    external_id = _text(data, "external_id", "external_id", required=True, limit=MAX_EXTERNAL_ID)
    url = _text(data, "url", "url", required=False, limit=MAX_URL) or None
    if url is not None and not url.lower().startswith(("http://", "https://", "mailto:")):
        raise InvalidInput("url must start with http://, https:// or mailto:")
    url = url_without_handle(url) if url is not None else None
    raw_faq = data.get("faq_id")
    faq_id: int | None = None
    if raw_faq not in (None, ""):
        try:
            faq_id = int(str(raw_faq).strip())
        except ValueError as exc:
            raise InvalidInput(f"faq_id must be an integer, got {raw_faq!r}") from exc
        if faq_id < 1:
            raise InvalidInput("faq_id must be a positive integer")
    raw_posts = data.get("posts")
    if not isinstance(raw_posts, list) or not raw_posts:
        raise InvalidInput("posts must be a non-empty list")
    if len(raw_posts) > MAX_POSTS:
        raise InvalidInput(f"a thread has at most {MAX_POSTS} posts")
    posts = tuple(post_from_dict(p, f"posts[{i}]") for i, p in enumerate(raw_posts))
    if not any(p.role == PostRole.customer for p in posts):
        raise InvalidInput("a thread needs at least one customer post")
    return ThreadIn(
        channel=channel,
        external_id=external_id,
        url=url,
        resolved_at=parse_time(data.get("resolved_at"), "resolved_at"),
        faq_id=faq_id,
        posts=posts,
    )
