"""What agents did with a suggestion, and what the service learns from it.

An outcome is one of:

- **sent**: the draft (or at least the suggested FAQ) went out as it was;
- **edited**: it went out after the agent changed the text (the final text is kept,
  personal data masked);
- **rejected**: the suggestion was wrong; the agent may name the FAQ that was right.

Sent and edited outcomes teach the chosen FAQ the post's cleaned text as a new question
phrasing (so the next customer asking that way finds it); a rejection naming a better FAQ
teaches that FAQ instead. Thank-you drafts (and skipped posts) teach nothing.

Learning needs trust: a phrasing learnt from outcomes starts **pending** and is not indexed
(so it moves neither suggest nor public search) until an editor approves it
(`approve_phrasing`) or outcomes from `agreement` distinct agents (API keys) have taught the
same phrasing to the same FAQ. One agent, however many outcomes it reports, cannot reroute
a question.

Outcomes also move the abstention threshold: the **learnt threshold** is the lowest one at
which, among recent outcomes, the share where the agent used the suggested FAQ is still at
least the target, given enough outcomes, and never further than `max_shift` from the
calibrated threshold. Posts the service abstained on count too when an agent reports that
it sent the top candidate anyway: that is the evidence for lowering the threshold.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from kb.errors import Conflict, InvalidInput, NotFound
from kb.faqs.entries import MAX_QUESTION, add_phrasings, record_change
from kb.models import (
    EntryStatus,
    FaqEntry,
    PhrasingAgreement,
    PhrasingSource,
    PhrasingStatus,
    QuestionPhrasing,
    Suggestion,
    SuggestionOutcome,
    TriageAdvice,
    utcnow,
)
from kb.suggest.service import SuggestPolicy
from kb.text.cleaning import shorten
from kb.text.language import dedup_key, normalize_text
from kb.text.personal_data import mask_personal_data, strip_placeholders

MAX_FINAL_TEXT = 10_000
ACCEPTED = (SuggestionOutcome.sent, SuggestionOutcome.edited)


@dataclass(frozen=True)
class OutcomeResult:
    """The recorded outcome and what it taught."""

    suggestion_id: int
    outcome: SuggestionOutcome
    faq_id: int | None
    phrasing_added: bool
    phrasing_faq_id: int | None
    repeated: bool = False  # the same outcome had been recorded before: nothing changed
    phrasing_pending: bool = False  # learnt, but waiting for trust (not indexed yet)


def parse_outcome(value: str) -> SuggestionOutcome:
    """The outcome named `value`; InvalidInput for anything else."""
    try:
        return SuggestionOutcome(value)
    except ValueError as exc:
        raise InvalidInput("outcome must be sent, edited or rejected") from exc


def top_candidate(row: Suggestion) -> int | None:
    """The FAQ ranked first for the suggestion (also when it abstained)."""
    if row.candidates and isinstance(row.candidates[0], dict):
        faq_id = row.candidates[0].get("faq_id")
        return faq_id if isinstance(faq_id, int) else None
    return None


def _agree(session: Session, phrasing: QuestionPhrasing, agent: int | None) -> int:
    """Count `agent` as agreeing with a pending phrasing; the distinct agents so far."""
    if agent is not None:
        known = session.get(PhrasingAgreement, (phrasing.id, agent))
        if known is None:
            try:
                with session.begin_nested():
                    session.add(PhrasingAgreement(phrasing_id=phrasing.id, api_key_id=agent))
            except IntegrityError:  # the same agent, concurrently: already counted
                pass
    count = session.scalar(select(func.count()).where(PhrasingAgreement.phrasing_id == phrasing.id))
    return int(count or 0)


def _learn_phrasing(
    session: Session, row: Suggestion, faq: FaqEntry, *, agent: int | None, agreement: int
) -> tuple[bool, bool]:
    """Teach `faq` the post's cleaned text: (indexed now, pending) — (False, False) if the
    text is not fit to teach or already known."""
    if row.triage in (TriageAdvice.thank, TriageAdvice.skip):
        return False, False  # "thanks!" is not a way of asking anything
    if faq.status != EntryStatus.published or faq.language != row.language:
        return False, False
    text = shorten(strip_placeholders(row.text), MAX_QUESTION)
    if len(dedup_key(text)) < 3:
        return False, False
    phrasing = session.scalar(
        select(QuestionPhrasing).where(
            QuestionPhrasing.entry_id == faq.id,
            QuestionPhrasing.normalized == dedup_key(normalize_text(text)),
        )
    )
    if phrasing is None:
        added = add_phrasings(session, faq, [text], source=PhrasingSource.outcome)
        if not added:
            return False, False  # the title itself
        phrasing = added[0]
        phrasing.status = PhrasingStatus.pending
    elif phrasing.status != PhrasingStatus.pending:
        return False, False  # known and indexed already
    agents = _agree(session, phrasing, agent)
    if agents < agreement:
        session.flush()
        return False, True
    phrasing.status = PhrasingStatus.approved
    phrasing.approved_by = f"{agents} agents"
    phrasing.approved_at = utcnow()
    record_change(session, faq.id)
    session.flush()
    return True, False


def approve_phrasing(session: Session, phrasing_id: int, by: str) -> QuestionPhrasing:
    """Approve a pending phrasing: it is indexed from the next commit and sync.

    Approving an approved phrasing changes nothing. NotFound when there is no such phrasing.
    """
    phrasing = session.scalar(
        select(QuestionPhrasing).where(QuestionPhrasing.id == phrasing_id).with_for_update()
    )
    if phrasing is None:
        raise NotFound(f"phrasing {phrasing_id} not found")
    if phrasing.status == PhrasingStatus.pending:
        phrasing.status = PhrasingStatus.approved
        phrasing.approved_by = by[:200]
        phrasing.approved_at = utcnow()
        record_change(session, phrasing.entry_id)
        session.flush()
    return phrasing


def record_outcome(
    session: Session,
    suggestion_id: int,
    *,
    outcome: str,
    final_text: str | None = None,
    faq_id: int | None = None,
    now: datetime | None = None,
    agent: int | None = None,
    agreement: int = 3,
) -> OutcomeResult:
    """Record what the agent did with a suggestion; teach the FAQ a phrasing when it helped.

    `agent` is the reporting API key's id; the phrasing is indexed once `agreement`
    distinct agents taught it (else it stays pending for an editor).

    Sending the same outcome again changes nothing; a different outcome for a suggestion
    that has one already is a Conflict. Raises NotFound and InvalidInput for bad input,
    before anything is written.
    """
    kind = parse_outcome(outcome)
    row = session.scalar(select(Suggestion).where(Suggestion.id == suggestion_id).with_for_update())
    if row is None:
        raise NotFound(f"suggestion {suggestion_id} not found")
    text = (final_text or "").replace("\x00", "").strip() or None
    if kind == SuggestionOutcome.edited and text is None:
        raise InvalidInput("an edited outcome needs final_text: the text that was sent")
    if text is not None and len(text) > MAX_FINAL_TEXT:
        raise InvalidInput(f"final_text is longer than {MAX_FINAL_TEXT} characters")
    if kind in ACCEPTED:
        chosen = faq_id if faq_id is not None else row.best_faq_id
        if chosen is None:
            raise InvalidInput("the suggestion abstained: name the FAQ that was sent with faq_id")
    else:
        chosen = faq_id
    faq = session.get(FaqEntry, chosen) if chosen is not None else None
    if chosen is not None and faq is None:
        raise NotFound(f"FAQ {chosen} not found")
    masked = mask_personal_data(text) if text is not None else None

    if row.outcome is not None:
        if (row.outcome, row.outcome_faq_id, row.outcome_text) == (kind, chosen, masked):
            return OutcomeResult(row.id, kind, chosen, False, None, repeated=True)
        raise Conflict(f"suggestion {suggestion_id} already has the outcome {row.outcome.value!r}")
    row.outcome = kind
    row.outcome_faq_id = chosen
    row.outcome_text = masked
    row.outcome_at = now or utcnow()
    learnt, pending = (
        _learn_phrasing(session, row, faq, agent=agent, agreement=agreement)
        if faq is not None
        else (False, False)
    )
    session.flush()
    return OutcomeResult(
        suggestion_id=row.id,
        outcome=kind,
        faq_id=chosen,
        phrasing_added=learnt,
        phrasing_faq_id=faq.id if learnt and faq is not None else None,
        phrasing_pending=pending,
    )


# -- the learnt threshold --------------------------------------------------------------------


@dataclass(frozen=True)
class ThresholdPolicy:
    """How the abstention threshold follows outcomes (from settings)."""

    base: float
    enabled: bool = True
    target_acceptance: float = 0.85
    min_outcomes: int = 50
    max_shift: float = 0.1
    window_days: float = 30.0

    @property
    def bounds(self) -> tuple[float, float]:
        """The lowest and highest threshold learning may choose."""
        return max(0.0, self.base - self.max_shift), min(1.0, self.base + self.max_shift)


@dataclass(frozen=True)
class LearntThreshold:
    """The threshold in force and the evidence behind it."""

    threshold: float
    base: float
    outcomes: int  # outcomes in the window
    judged: int  # of them at or above the threshold
    accepted_share: float | None  # accepted share among the judged
    reason: str


def choose_threshold(
    points: Sequence[tuple[float, bool]], policy: ThresholdPolicy
) -> LearntThreshold:
    """The lowest threshold within bounds keeping the accepted share ≥ target on ≥ min points.

    `points` are (confidence, accepted) pairs. With too few points the base threshold
    stays; when no threshold within bounds reaches the target, the upper bound is used.
    """
    base = round(policy.base, 4)
    n = len(points)
    if not policy.enabled:
        return LearntThreshold(base, base, n, 0, None, "learning is off")
    if n < policy.min_outcomes:
        return LearntThreshold(
            base, base, n, 0, None, f"{n} outcomes, fewer than {policy.min_outcomes}: calibrated"
        )
    lo, hi = policy.bounds
    ordered = sorted(points, key=lambda p: p[0])
    confidences = [c for c, _ in ordered]
    # accepted_from[i]: accepted outcomes among ordered[i:], i.e. at or above confidences[i].
    accepted_from = [0] * (n + 1)
    for i in range(n - 1, -1, -1):
        accepted_from[i] = accepted_from[i + 1] + int(ordered[i][1])

    def judged_at(t: float) -> tuple[int, int]:
        i = bisect_left(confidences, t)
        return n - i, accepted_from[i]

    for t in sorted({lo, hi} | {c for c in confidences if lo < c < hi}):
        judged, accepted = judged_at(t)
        if judged < policy.min_outcomes:
            break  # higher thresholds only judge fewer
        if accepted / judged >= policy.target_acceptance:
            return LearntThreshold(
                round(t, 4),
                base,
                n,
                judged,
                round(accepted / judged, 4),
                f"lowest threshold with ≥ {policy.target_acceptance:.0%} accepted",
            )
    judged, accepted = judged_at(hi)
    return LearntThreshold(
        round(hi, 4),
        base,
        n,
        judged,
        round(accepted / judged, 4) if judged else None,
        f"target {policy.target_acceptance:.0%} not reached within bounds: upper bound",
    )


def outcome_points(session: Session, since: datetime) -> list[tuple[float, bool]]:
    """(confidence, accepted) of the suggestions since `since` with an outcome.

    Accepted: sent or edited with the FAQ ranked first. Thank-you and skipped posts are not
    about the match and are left out.
    """
    rows = session.execute(
        select(
            Suggestion.confidence,
            Suggestion.outcome,
            Suggestion.outcome_faq_id,
            Suggestion.candidates,
        ).where(
            Suggestion.created_at >= since,
            Suggestion.outcome.is_not(None),
            or_(Suggestion.triage.is_(None), Suggestion.triage == TriageAdvice.reply),
        )
    )
    points = []
    for confidence, outcome, faq_id, candidates in rows:
        first = None
        if candidates and isinstance(candidates[0], dict):
            first = candidates[0].get("faq_id")
        accepted = outcome in ACCEPTED and faq_id is not None and faq_id == first
        points.append((float(confidence), accepted))
    return points


def learn_threshold(
    session: Session, policy: ThresholdPolicy, *, now: datetime | None = None
) -> LearntThreshold:
    """The threshold learnt from the outcomes of the last `window_days`."""
    if not policy.enabled:
        return choose_threshold([], policy)
    since = (now or utcnow()) - timedelta(days=policy.window_days)
    return choose_threshold(outcome_points(session, since), policy)


class ThresholdLearner:
    """Keeps the learnt threshold of one process, recomputed every `refresh_seconds`.

    Every process computes it from the same database, so replicas agree within one refresh.
    """

    def __init__(self, policy: ThresholdPolicy, *, refresh_seconds: float = 300.0) -> None:
        self.policy = policy
        self.refresh_seconds = refresh_seconds
        self._lock = threading.Lock()
        self._value: LearntThreshold | None = None
        self._at = 0.0

    def invalidate(self) -> None:
        """Recompute on next use (after this process recorded an outcome)."""
        with self._lock:
            self._value = None

    def current(self, factory: sessionmaker[Session]) -> LearntThreshold:
        """The learnt threshold, recomputed when stale."""
        with self._lock:
            fresh = time.monotonic() - self._at < self.refresh_seconds
            if self._value is not None and fresh:
                return self._value
        with factory() as session:
            value = learn_threshold(session, self.policy)
        with self._lock:
            self._value, self._at = value, time.monotonic()
        return value

    def suggest_policy(self, base: SuggestPolicy, factory: sessionmaker[Session]) -> SuggestPolicy:
        """`base` with the learnt threshold."""
        learnt = self.current(factory)
        if learnt.threshold == base.threshold:
            return base
        return replace(base, threshold=learnt.threshold)
