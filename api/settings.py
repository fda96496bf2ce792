"""Settings from environment variables prefixed FAQLOOP_ (and optionally a .env file)."""

from __future__ import annotations

import os
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_models_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "faqloop" / "models"


class Settings(BaseSettings):
    """Every setting, with its help text (the README's configuration table lists them)."""

    model_config = SettingsConfigDict(env_prefix="FAQLOOP_", env_file=".env", extra="ignore")

    host: str = Field("127.0.0.1", description="Address `faqloop serve` binds to.")
    port: int = Field(8000, ge=1, le=65535, description="Port `faqloop serve` listens on.")
    data_dir: Path = Field(
        Path("data"), description="Holds the SQLite file and the search indexes."
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL; default sqlite:///<data_dir>/faqloop.db. "
        "Use postgresql+psycopg://... for PostgreSQL.",
    )
    embedding_model: str = Field(
        "multilingual-e5-small",
        description="multilingual-e5-small (built by `faqloop models build`), "
        "all-minilm-l6-v2 (English only), or a local sentence-transformers folder.",
    )
    models_dir: Path = Field(
        default_factory=_default_models_dir,
        description="Where `faqloop models build` writes models (default ~/.cache/faqloop/models).",
    )
    content_dir: Path = Field(
        Path("faq_content"), description="Seed articles loaded by `faqloop load-content`."
    )
    base_url: str = Field(
        "", description="Public site URL used in article links (default: relative links)."
    )
    max_text_chars: int = Field(5000, ge=1, description="Longest post accepted by suggest.")
    max_k: int = Field(50, ge=1, description="Largest k accepted by suggest.")
    abstain_threshold: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="Confidence below which suggest abstains (default: the model's calibrated "
        "threshold).",
    )
    sync_interval: float = Field(
        5.0, gt=0, description="Seconds between checks for content changed by other processes."
    )
    log_level: str = Field("INFO", description="Python logging level.")
    pseudonym_secret: str = Field(
        "faqloop-dev",
        min_length=1,
        description="Key of the HMAC-SHA256 that pseudonymises customer handles of ingested "
        "threads. The default is for development only: set a long random value in "
        "production and keep it (changing it makes the same customer look new).",
    )
    visitor_secret: str = Field(
        "faqloop-development-visitor-secret",
        min_length=16,
        description="Key of the HMAC that turns the site's visitor cookie into the stored "
        "visitor hash and the vote form's CSRF token. The default is for development only: "
        "set a long random value in production (changing it resets view de-duplication).",
    )
    view_window_minutes: float = Field(
        30.0,
        gt=0,
        description="A visitor reloading an article within this many minutes counts as one view.",
    )
    stats_timezone: str = Field(
        "Asia/Tokyo", description="Time zone whose calendar days the page-view counters use."
    )
    vote_rate_limit: int = Field(
        10, ge=1, description="Votes one visitor may send per `vote_rate_window` seconds."
    )
    vote_rate_limit_ip: int = Field(
        60,
        ge=1,
        description="Votes one IP address may send per `vote_rate_window` seconds (generous: "
        "mobile customers share addresses behind carrier NAT).",
    )
    vote_rate_window: float = Field(
        60.0, gt=0, description="Length in seconds of the sliding window of the vote limits."
    )

    @field_validator("data_dir", "models_dir", "content_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("stats_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (use an IANA name)") from exc
        return value

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'faqloop.db').resolve()}"

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"
