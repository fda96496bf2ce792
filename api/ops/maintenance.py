"""Housekeeping of `faqloop serve`, once per cluster: forget what no longer counts.

Every FAQLOOP_PRUNE_INTERVAL seconds one replica (kb/ops/jobs.py) deletes view
de-duplication marks older than the view window (they no longer change any count; what
`faqloop prune-visitors` does) and editor sessions past their idle or absolute limit.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from api.settings import Settings
from api.state import PeriodicJob, Services
from kb.auth.sessions import SessionPolicy, purge_expired
from kb.db import session_scope
from kb.models import utcnow
from kb.site.views import prune_visitors

log = logging.getLogger(__name__)

PRUNE_JOB = "prune"


def prune(services: Services) -> dict[str, int]:
    """Delete expired visitor marks and editor sessions now; how many of each."""
    settings: Settings = services.settings
    cutoff = utcnow() - timedelta(minutes=settings.view_window_minutes)
    policy = SessionPolicy(
        idle=timedelta(minutes=settings.session_idle_minutes),
        absolute=timedelta(hours=settings.session_max_hours),
    )
    with session_scope(services.session_factory) as session:
        marks = prune_visitors(session, older_than=cutoff)
    with session_scope(services.session_factory) as session:
        sessions = purge_expired(session, policy)
    removed = {"visitor_marks": marks, "editor_sessions": sessions}
    log.info("pruned %s", removed)
    return removed


def start_prune_loop(app_state: object, services: Services) -> PeriodicJob:
    """Start the prune job's timer (FAQLOOP_PRUNE_INTERVAL; 0: never)."""
    loop = PeriodicJob(
        services.jobs,
        PRUNE_JOB,
        lambda: prune(services),
        services.settings.prune_interval,
    ).start()
    app_state.prune_loop = loop  # type: ignore[attr-defined]
    return loop
