"""Content health's process-wide parts: the policy from settings, the vectors used for
duplicates and gaps, the recompute, and the background loop of `faqloop serve`."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import Depends, Request
from sqlalchemy.exc import OperationalError

from api.settings import Settings
from api.state import PeriodicJob, Services
from api.web.lazy import Lazy
from indexer.lexical.tokenizer import Tokenizer, default_tokenizer
from kb.capture.ingest import QuestionVectors
from kb.db import session_scope
from kb.errors import IndexNotReady
from kb.health import flags
from kb.health.scores import HealthPolicy, SiteBaseline, compute_baseline
from kb.models import EntryStatus, FaqEntry, utcnow
from kb.ops.jobs import JobResult

log = logging.getLogger(__name__)
# How long article pages reuse the site baseline (it moves slowly; computing it reads every
# article's counts).
BASELINE_TTL = 300.0
WRITE_ATTEMPTS = 3
# The cluster-wide job (kb/ops/jobs.py) and how long "recompute now" waits for a recompute
# under way on another replica.
HEALTH_JOB = "health"
LOCK_WAIT = 600.0


def health_policy(settings: Settings) -> HealthPolicy:
    """Every threshold, from the FAQLOOP_HEALTH_* settings."""
    return HealthPolicy(
        min_views=settings.health_min_views,
        min_votes=settings.health_min_votes,
        min_suggestions=settings.health_min_suggestions,
        prior_votes=settings.health_prior_votes,
        acceptance_margin=settings.health_acceptance_margin,
        stale_days=settings.health_stale_days,
        trend_days=settings.health_trend_days,
        stale_drop=settings.health_stale_drop,
        significance=settings.health_significance,
        duplicate_threshold=settings.health_duplicate_threshold,
        gap_similarity=settings.health_gap_similarity,
        gap_min_count=settings.health_gap_min_count,
        gap_days=settings.health_gap_days,
        renew_factor=settings.health_renew_factor,
    )


@dataclass
class HealthKit:
    """What a recompute needs from the process; one per app (its vector cache lives on)."""

    services: Services
    policy: HealthPolicy
    tz: ZoneInfo
    vectors: QuestionVectors
    tokenizer: Tokenizer
    # One recompute at a time per process (the loop and an editor's "recompute now").
    running: threading.Lock = field(default_factory=threading.Lock)
    _baseline: tuple[float, SiteBaseline] | None = None
    last_report: flags.RecomputeReport | None = None
    last_error: str | None = None
    finished_at: datetime | None = None
    completed: int = 0  # recomputes finished (or failed) in this process
    _worker: threading.Thread | None = None
    _start_lock: threading.Lock = field(default_factory=threading.Lock)

    def baseline(self) -> SiteBaseline:
        """The site's baseline, from the last recompute or computed (kept BASELINE_TTL s)."""
        cached = self._baseline
        if cached is not None and time.monotonic() - cached[0] < BASELINE_TTL:
            return cached[1]
        with self.services.session_factory() as session:
            fresh = compute_baseline(session, self.policy)
        self._baseline = (time.monotonic(), fresh)
        return fresh

    def covered(self, text: str, language: str) -> tuple[int, float] | None:
        """The published article that answers `text` now with suggest's confidence, if any."""
        services = self.services
        try:
            result = services.index.search(text, k=5, language=language)
        except IndexNotReady:
            return None
        if not result.hits:
            return None
        confidence = services.calibration.confidence(result)
        if confidence < services.policy.threshold:
            return None
        with services.session_factory() as session:
            entry = session.get(FaqEntry, result.hits[0].entry_id)
            if entry is None or entry.status != EntryStatus.published:
                return None
        return result.hits[0].entry_id, confidence

    def _compute(self) -> flags.RecomputeReport:
        """Recompute scores and flags and commit (content gaps need the index)."""
        factory = self.services.session_factory
        # Detection reads (and embeds) for a while; it holds no write lock meanwhile.
        with factory() as session:
            found = flags.detect_all(
                session,
                self.policy,
                tz=self.tz,
                encoder=self.vectors,
                tokenizer=self.tokenizer,
                covered=self.covered,
                gaps=self.services.index.ready,
            )
            session.rollback()
        # The writes: one short transaction on a fresh snapshot. SQLite refuses to turn a
        # reader into a writer when another connection committed in between, so a busy
        # moment is retried rather than failing the whole recompute.
        for attempt in range(WRITE_ATTEMPTS):
            try:
                with session_scope(factory) as session:
                    return flags.apply_detected(session, found, self.policy)
            except OperationalError:
                if attempt == WRITE_ATTEMPTS - 1:
                    raise
                time.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")  # pragma: no cover

    def _finished(self, report: flags.RecomputeReport) -> flags.RecomputeReport:
        if report.baseline is not None:
            self._baseline = (time.monotonic(), report.baseline)
        self.last_report, self.last_error = report, None
        self.finished_at = utcnow()
        self.completed += 1
        return report

    def recompute(self) -> flags.RecomputeReport:
        """Recompute now (an editor's "recompute now", `faqloop health`), on any replica.

        It takes the cluster-wide lock of the health job, waiting for a recompute under way
        on another replica to end, so two never run at once; the interval does not apply.
        """
        with self.running:
            result = self.services.jobs.run(HEALTH_JOB, self._compute, wait=LOCK_WAIT)
        if not result.ran or result.value is None:
            raise RuntimeError(
                f"another process kept the health recompute's lock for over {LOCK_WAIT:.0f} s"
            )
        return self._finished(result.value)

    def recompute_if_due(self, interval: float) -> JobResult[flags.RecomputeReport]:
        """The background loop's tick: recompute unless this process is recomputing, another
        replica is, or one did less than `interval` seconds ago (raises what the run raised)."""
        if not self.running.acquire(blocking=False):
            return JobResult(ran=False, reason="busy")
        started = time.perf_counter()
        try:
            result = self.services.jobs.run(HEALTH_JOB, self._compute, interval=interval)
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            self.finished_at = utcnow()
            self.completed += 1
            raise
        finally:
            self.running.release()
        if result.ran and result.value is not None:
            self._finished(result.value)
            log.info(
                "health recomputed in %.1f s: %s",
                time.perf_counter() - started,
                result.value.as_dict(),
            )
        return result

    def recompute_in_background(self) -> bool:
        """Start a recompute in a daemon thread; False when one is already under way."""
        with self._start_lock:
            if self._worker is not None and self._worker.is_alive():
                return False
            self._worker = threading.Thread(
                target=self.recompute_logged, name="faqloop-health-now", daemon=True
            )
            self._worker.start()
            return True

    @property
    def busy(self) -> bool:
        """Whether a recompute runs now (in the background or the loop)."""
        worker = self._worker
        return (worker is not None and worker.is_alive()) or self.running.locked()

    def recompute_logged(self) -> flags.RecomputeReport | None:
        """Recompute; log the outcome, keep the error for the status, never raise."""
        started = time.perf_counter()
        try:
            report = self.recompute()
        except Exception as exc:  # keep serving; the status says what happened
            self.last_error = f"{type(exc).__name__}: {exc}"
            self.finished_at = utcnow()
            self.completed += 1
            log.exception("health recompute failed")
            return None
        log.info("health recomputed in %.1f s: %s", time.perf_counter() - started, report.as_dict())
        return report


def build_health_kit(services: Services) -> HealthKit:
    """A HealthKit over the process's services."""
    settings = services.settings
    return HealthKit(
        services=services,
        policy=health_policy(settings),
        tz=ZoneInfo(settings.stats_timezone),
        vectors=QuestionVectors(services.embedder),
        tokenizer=default_tokenizer(),
    )


_health_kits: Lazy[HealthKit] = Lazy("health", build_health_kit)


def get_health_kit(request: Request) -> HealthKit:
    """The app's HealthKit, made on first use and kept."""
    return _health_kits.of(request)


HealthDep = Annotated[HealthKit, Depends(get_health_kit)]


class HealthLoop(PeriodicJob):
    """Recomputes health in a daemon thread every `interval` seconds, once per cluster.

    Requests never wait for it: it has its own sessions, writes its flags in one short
    transaction at the end, and a failure is logged and retried at the next interval. With
    several replicas only one recomputes per interval (`PeriodicJob`, kb/ops/jobs.py).
    """

    def __init__(self, kit: HealthKit, interval: float) -> None:
        super().__init__(
            kit.services.jobs,
            HEALTH_JOB,
            kit._compute,
            interval,
            tick=lambda: kit.recompute_if_due(interval),
        )
        self.kit = kit

    def stop(self, wait: float = 30.0) -> None:
        """Stop the loop; wait up to `wait` s for a recompute under way (before the engine
        is disposed under it)."""
        super().stop(wait)
        worker = self.kit._worker
        if worker is not None and worker.is_alive():
            worker.join(wait)


def start_health_loop(app_state: object, services: Services) -> HealthLoop:
    """Build the app's HealthKit and start its loop (interval FAQLOOP_HEALTH_INTERVAL)."""
    kit = _health_kits.put(app_state, services, build_health_kit(services))
    loop = HealthLoop(kit, services.settings.health_interval).start()
    app_state.health_loop = loop  # type: ignore[attr-defined]
    return loop
