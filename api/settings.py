"""Settings from environment variables prefixed FAQLOOP_ (and optionally a .env file)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_models_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "faqloop" / "models"


class Settings(BaseSettings):
    """Every setting, with its help text (the settings tables under docs/ list them)."""

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
    public_origins: str = Field(
        "",
        description="Comma-separated other public URLs of the FAQ site (old domains, mirrors) "
        "whose /faq/<slug> links in agents' replies count as answering with that article, "
        "besides `base_url`.",
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
    prune_interval: float = Field(
        3600.0,
        ge=0,
        description="Seconds between prunes of expired view de-duplication marks and editor "
        "sessions by `faqloop serve`, once per cluster (0: only `faqloop prune-visitors`).",
    )
    batch_wait_ms: float = Field(
        2.0,
        ge=0,
        le=100,
        description="Longest time a suggest request waits for concurrent ones to be embedded "
        "together (only while recent requests found the model busy; 0: never wait, still "
        "batch requests that queue up while the model is busy).",
    )
    embed_batch_max: int = Field(
        32,
        ge=1,
        le=1024,
        description="Most posts the micro-batcher embeds in one model call (1: no micro-batching).",
    )
    torch_threads: int | None = Field(
        None,
        ge=1,
        le=256,
        description="torch intra-op threads per process, applied when the model loads "
        "(default: torch's own choice, one per core). Set 1 with several replicas on one host.",
    )
    embed_lanes: int | None = Field(
        None,
        ge=1,
        le=64,
        description="Model calls the micro-batcher runs at once, each with torch_threads / "
        "lanes threads under load (default: one per torch thread, at most 4). A lone "
        "request at low load still gets every thread.",
    )
    request_threads: int = Field(
        16,
        ge=1,
        le=1024,
        description="Request handlers one replica runs at once in its thread pool (suggest, "
        "pages, the API); more wait for a free thread. Fewer Python threads contend less for "
        "the GIL on few cores: at 32 clients on 2 cores, 16 answered 124-142 req/s against "
        "117-126 with AnyIO's default of 40 (docs/scale.md).",
    )
    gil_switch_ms: float = Field(
        1.0,
        ge=0.05,
        le=100.0,
        description="Python's GIL switch interval in a serving process, milliseconds "
        "(sys.setswitchinterval; Python's default is 5). The request handlers, the event loop "
        "and the model threads share one GIL: a shorter interval hands it sooner to a thread "
        "back from the model or the database. At 32 clients on 2 cores (onnx-int8), 1 ms "
        "answered 9 % more requests than 5 ms over five interleaved pairs (docs/scale.md).",
    )
    gc_freeze: bool = Field(
        True,
        description="Freeze the objects built at start-up (model, index, app) out of Python's "
        "cyclic garbage collector while the app runs (gc.freeze, released when it stops). "
        "Full collections then skip ~200,000 long-lived objects: they took ~140 ms with the "
        "GIL held about once per 1,000 requests at 32 clients (docs/scale.md).",
    )
    embed_trace: bool = Field(
        True,
        description="Run the embedding model as a TorchScript trace (checked against the eager "
        "model at load; falls back to eager when it differs). Faster, and it does not hold "
        "Python's GIL while it computes, so a busy server keeps the model fed.",
    )
    embed_backend: Literal["torch", "onnx", "onnx-int8"] = Field(
        "onnx-int8",
        description="Runtime of the embedding model: torch (sentence-transformers), onnx (the "
        "model's fp32 ONNX export on ONNX Runtime) or onnx-int8 (its int8 quantisation). The "
        "ONNX files come from `faqloop models build`; they are checked against the torch "
        "model at load and torch is used instead, with a warning, when they differ. "
        "torch_threads sets ONNX Runtime's intra-op threads too.",
    )
    log_level: str = Field("INFO", description="Python logging level.")
    log_format: Literal["json", "text"] = Field(
        "json",
        description="Log format of `faqloop serve`: one JSON object per line (request id, "
        "method, route, status, duration; no secrets or post texts) or plain text.",
    )
    max_body_bytes: int = Field(
        4 * 1024 * 1024,
        ge=1024,
        description="Largest request body accepted (bytes); larger ones get 413. The default "
        "fits the largest batch of the longest posts (JSON-escaped Japanese).",
    )
    suggest_rate_limit: int = Field(
        600,
        ge=0,
        description="Suggest requests one API key may send per `suggest_rate_window` seconds "
        "(a moving window, per process; a batch counts one per post; 0: no limit). Over it: "
        "429 with Retry-After.",
    )
    suggest_rate_window: float = Field(
        60.0, gt=0, description="Window in seconds of `suggest_rate_limit`."
    )
    request_timeout: float = Field(
        30.0,
        gt=0,
        description="Seconds a request may take before it is answered 504 (the work is "
        "abandoned, not killed).",
    )
    pseudonym_secret: str = Field(
        "faqloop-dev",
        min_length=8,
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
    # Agent reply drafts, triage, batch suggestions and the learnt threshold
    # (docs/replies.md).
    brand_name: str = Field(
        "Sorami Mobile",
        min_length=1,
        description="Brand named in English reply drafts and recognised in posts.",
    )
    brand_name_ja: str = Field(
        "ソラミモバイル",
        min_length=1,
        description="Brand named in Japanese reply drafts and recognised in posts.",
    )
    brand_handles: str = Field(
        "SoramiMobile",
        description="Comma-separated social handles of the brand; a post mentioning only "
        "other handles is customers talking among themselves.",
    )
    agent_name: str = Field(
        "", max_length=40, description="Agent name in draft greetings and signatures (^name)."
    )
    reply_signature: str = Field(
        "",
        max_length=60,
        description="Signature line of drafts (default: ^agent name, or the brand's support).",
    )
    channel_limits: str = Field(
        "",
        description="Reply length limits overriding the defaults, name=limit,... (0: none).",
    )
    batch_max: int = Field(
        100, ge=1, le=10_000, description="Most posts in one POST /v1/suggest/batch (more: 413)."
    )
    threshold_learning: bool = Field(
        True, description="Learn the abstention threshold from the outcomes agents report."
    )
    threshold_target_acceptance: float = Field(
        0.85,
        gt=0,
        le=1,
        description="Share of suggestions accepted by agents that the learnt threshold keeps.",
    )
    threshold_min_outcomes: int = Field(
        50, ge=1, description="Outcomes needed before the learnt threshold moves."
    )
    threshold_max_shift: float = Field(
        0.1,
        ge=0,
        le=1,
        description="Largest distance of the learnt threshold from the calibrated one.",
    )
    threshold_window_days: float = Field(
        30.0, gt=0, description="Days of outcomes the learnt threshold is computed from."
    )
    threshold_refresh_seconds: float = Field(
        300.0, gt=0, description="Seconds between recomputations of the learnt threshold."
    )

    # Content health: scores, flags and their thresholds (docs/health.md).
    health_interval: float = Field(
        900.0,
        ge=0,
        description="Seconds between background recomputes of health scores and flags in "
        "`faqloop serve` (0: only on demand, `faqloop health`).",
    )
    health_min_views: int = Field(
        100, ge=1, description="Views a revision needs before its helpfulness is judged."
    )
    health_min_votes: int = Field(
        20, ge=1, description="Helpful/not-helpful votes a revision needs before it is judged."
    )
    health_min_suggestions: int = Field(
        20, ge=1, description="Reported suggestion outcomes before acceptance is judged."
    )
    health_prior_votes: float = Field(
        10.0, ge=0, description="Weight, in votes, of the site prior in Bayesian averages."
    )
    health_acceptance_margin: float = Field(
        0.15,
        ge=0,
        le=1,
        description="How far below the typical acceptance rate an article's upper bound must "
        "be to be flagged low_acceptance.",
    )
    health_stale_days: int = Field(
        180, ge=1, description="Days without a new revision after which an article may be stale."
    )
    health_trend_days: int = Field(
        30, ge=1, description="Length of the two windows compared to see numbers fall."
    )
    health_stale_drop: float = Field(
        0.3,
        gt=0,
        le=1,
        description="Share of views lost between the windows that counts as falling.",
    )
    health_significance: float = Field(
        0.05, gt=0, lt=1, description="Significance level of the before/after and trend tests."
    )
    health_duplicate_threshold: float = Field(
        0.81,
        gt=0,
        le=1,
        description="Duplicate score (0.8 question similarity + 0.2 word overlap) at which two "
        "articles are flagged as duplicates.",
    )
    health_gap_similarity: float = Field(
        0.905,
        gt=0,
        le=1,
        description="Average cosine similarity for unanswered posts to form one content gap.",
    )
    health_gap_min_count: int = Field(
        5, ge=1, description="Unanswered posts plus failed searches that make a content gap."
    )
    health_gap_days: int = Field(
        30, ge=1, description="Days of abstained posts and failed searches read for gaps."
    )
    health_renew_factor: float = Field(
        2.0,
        gt=1,
        description="A dismissed flag returns when its evidence (votes, outcomes, posts) grows "
        "by this factor.",
    )

    # Integrity across replicas and against abuse (docs/operations.md).
    trusted_proxies: str = Field(
        "",
        description="Comma-separated addresses or CIDR networks of reverse proxies whose "
        "X-Forwarded-For / X-Forwarded-Proto / Forwarded headers are believed (default: none, "
        "the connecting address is the client).",
    )
    allow_insecure_secrets: bool = Field(
        False,
        description="Let `faqloop serve` bind to a non-loopback address although a secret is "
        "a development default or shorter than 32 bytes (demos only).",
    )
    redis_url: str = Field(
        "",
        description="redis://host:port/db shared by every replica for the rate limits (suggest, "
        "votes, public search, view counting, sign-in); empty: limits per process.",
    )
    search_rate_limit: int = Field(
        30,
        ge=0,
        description="Public searches (site search page and GET /v1/public/search) one address "
        "may make per `search_rate_window` seconds (0: no limit). Over it: 429 with Retry-After.",
    )
    search_rate_window: float = Field(
        60.0, gt=0, description="Window in seconds of `search_rate_limit`."
    )
    public_search_concurrency: int = Field(
        1,
        ge=0,
        description="Public searches one replica runs at once (0: no limit); one more is "
        "answered 503 with Retry-After at once, so a search flood from many addresses cannot "
        "take every core from agents' suggest. Raise it on machines with more cores.",
    )
    view_count_limit_ip: int = Field(
        30,
        ge=0,
        description="Article views one address may have counted per `view_count_window` seconds "
        "(pages still render beyond it; a visitor's first view from a reply link always counts; "
        "0: no limit).",
    )
    view_count_window: float = Field(
        600.0, gt=0, description="Window in seconds of `view_count_limit_ip`."
    )
    phrasing_agreement_agents: int = Field(
        3,
        ge=1,
        description="Distinct agents (API keys) whose outcomes must agree before a phrasing "
        "learnt from outcomes is indexed without an editor's approval.",
    )

    # Editor accounts and their sessions (docs/editors.md).
    session_idle_minutes: float = Field(
        60.0,
        gt=0,
        description="An editor's session ends after this many minutes without a request.",
    )
    session_max_hours: float = Field(
        12.0,
        gt=0,
        description="An editor's session ends this many hours after sign-in, however active.",
    )
    login_rate_limit: int = Field(
        10,
        ge=0,
        description="Sign-in attempts per account per `login_rate_window` seconds (0: no limit).",
    )
    login_rate_limit_ip: int = Field(
        30,
        ge=0,
        description="Sign-in attempts per address per `login_rate_window` seconds (0: no limit).",
    )
    login_rate_window: float = Field(
        900.0, gt=0, description="Window in seconds of the sign-in limits."
    )

    # Outgoing webhooks (docs/webhooks.md).
    webhook_draft_min_demand: int = Field(
        5,
        ge=1,
        le=100_000,
        description="Default threshold of a new webhook's draft.demand event: a new draft is "
        "announced once this many customer threads ask for it.",
    )
    webhook_max_attempts: int = Field(
        8, ge=1, le=50, description="Attempts per webhook delivery before it is marked failed."
    )
    webhook_backoff_seconds: float = Field(
        30.0,
        ge=0,
        le=86_400,
        description="Wait after a webhook delivery's first failure; it doubles with each "
        "further failure (at most 6 hours).",
    )
    webhook_timeout: float = Field(
        5.0, gt=0, le=60, description="Seconds a webhook receiver has to answer a delivery."
    )
    webhook_poll_interval: float = Field(
        5.0,
        ge=0,
        description="Seconds between the delivery worker's looks at the outbox in "
        "`faqloop serve` (0: no worker in this process; `faqloop webhooks deliver` sends).",
    )

    @field_validator("data_dir", "models_dir", "content_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("channel_limits")
    @classmethod
    def _valid_channel_limits(cls, value: str) -> str:
        from kb.errors import InvalidInput
        from kb.replies.channels import parse_channel_limits

        try:
            parse_channel_limits(value)
        except InvalidInput as exc:
            raise ValueError(exc.message) from exc
        return value

    @field_validator("stats_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (use an IANA name)") from exc
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _valid_proxies(cls, value: str) -> str:
        import ipaddress
        import re

        for item in re.split(r"[,\s]+", value.strip()):
            if item:
                try:
                    ipaddress.ip_network(item, strict=False)
                except ValueError as exc:
                    raise ValueError(f"{item!r} is not an IP address or CIDR network") from exc
        return value

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'faqloop.db').resolve()}"

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"
