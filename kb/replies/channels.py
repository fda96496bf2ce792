"""Where a reply goes and how long it may be: per-channel limits and how each counts length.

X counts "weighted" characters (twitter-text v3): most Latin-script characters count 1,
CJK characters and emoji count 2 (an emoji sequence joined by ZWJ or with a skin tone counts
as one emoji), and every URL counts 23 whatever its length. That is delegated to
twitter-text-parser, the Python port of X's own twitter-text library (it passes the official
conformance suite). The other channels count characters.

Limits are configurable (``FAQLOOP_CHANNEL_LIMITS``, e.g. ``x=280,instagram=2200,email=0``,
where 0 means no limit).
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import sys
import threading
import types
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from kb.errors import InvalidInput

X_WEIGHTED_LIMIT = 280

# Character limits of a reply or comment on each channel (None: no practical limit).
DEFAULT_LIMITS: dict[str, int | None] = {
    "x": X_WEIGHTED_LIMIT,
    "twitter": X_WEIGHTED_LIMIT,
    "instagram": 2200,
    "facebook": 8000,
    "threads": 500,
    "line": 5000,
    "email": None,
}
# Channels whose length is X's weighted length.
WEIGHTED_CHANNELS = frozenset({"x", "twitter"})


@dataclass(frozen=True)
class Channel:
    """A channel's name, its length limit (None: none) and whether it counts like X."""

    name: str
    limit: int | None
    weighted: bool

    def length(self, text: str) -> int:
        """The length of `text` as this channel counts it."""
        return x_weighted_length(text) if self.weighted else len(unicodedata.normalize("NFC", text))

    def fits(self, text: str) -> bool:
        """Whether `text` is within this channel's limit."""
        return self.limit is None or self.length(text) <= self.limit


NO_CHANNEL = Channel(name="", limit=None, weighted=False)


def parse_channel_limits(spec: str) -> dict[str, int | None]:
    """Parse ``name=limit,...`` (0 or "none" for no limit) into a mapping; InvalidInput if bad."""
    limits: dict[str, int | None] = {}
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, value = part.partition("=")
        name, value = name.strip().lower(), value.strip().lower()
        if not sep or not name:
            raise InvalidInput(f"channel limit {part!r} is not name=number")
        if value in ("0", "none", ""):
            limits[name] = None
            continue
        if not value.isdigit():
            raise InvalidInput(f"channel limit {part!r} is not name=number")
        limits[name] = int(value)
    return limits


def channel_limits(overrides: Mapping[str, int | None] | None = None) -> dict[str, int | None]:
    """The default limits with `overrides` applied."""
    limits = dict(DEFAULT_LIMITS)
    limits.update(overrides or {})
    return limits


def resolve_channel(name: str | None, limits: Mapping[str, int | None]) -> Channel:
    """The channel called `name` (case-insensitive); unknown or absent names have no limit."""
    if not name or not name.strip():
        return NO_CHANNEL
    key = name.strip().lower()
    return Channel(name=key, limit=limits.get(key), weighted=key in WEIGHTED_CHANNELS)


# -- X's weighted length -------------------------------------------------------------------

_parse_tweet: Callable[[str], object] | None = None
_import_lock = threading.Lock()


def _resource_string(module: str, name: str) -> bytes:
    spec = importlib.util.find_spec(module)
    package = module if spec and spec.submodule_search_locations else module.rpartition(".")[0]
    return importlib.resources.files(package).joinpath(name).read_bytes()


def _load_parse_tweet() -> Callable[[str], object]:
    """Import twitter_text.parse_tweet.

    twitter-text-parser 3.0.0 reads its emoji table with ``pkg_resources``, which recent
    setuptools no longer ships. When it is missing, a stand-in providing only
    ``resource_string`` is registered for the duration of the import and removed afterwards,
    so nothing else ever sees it.
    """
    global _parse_tweet
    with _import_lock:
        if _parse_tweet is not None:
            return _parse_tweet
        shimmed = False
        if "pkg_resources" not in sys.modules and importlib.util.find_spec("pkg_resources") is None:
            shim = types.ModuleType("pkg_resources")
            shim.resource_string = _resource_string  # type: ignore[attr-defined]
            sys.modules["pkg_resources"] = shim
            shimmed = True
        try:
            from twitter_text import parse_tweet
        finally:
            if shimmed:
                sys.modules.pop("pkg_resources", None)
        _parse_tweet = parse_tweet
        return parse_tweet


@lru_cache(maxsize=4096)  # drafts are measured again after they are chosen
def x_weighted_length(text: str) -> int:
    """The length of `text` as X counts it (CJK and emoji 2, each URL 23, the rest 1)."""
    result = _load_parse_tweet()(text)
    return int(result.weightedLength)  # type: ignore[attr-defined]
