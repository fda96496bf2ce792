"""Flags on a real database: each kind with its evidence, no duplicate open flags, dismissed
flags stay quiet until new evidence, rewrites resolve and start clean, merges redirect and
carry the numbers over, and the API and CLI around them."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from api.settings import Settings
from indexer.embedding.encoders import CachedEmbedder
from indexer.lexical.tokenizer import default_tokenizer
from kb.capture.ingest import QuestionVectors
from kb.db import session_scope
from kb.faqs import entries as faqs
from kb.health import flags
from kb.health import scores as health_scores
from kb.health.scores import HealthPolicy
from kb.models import (
    EntryChange,
    EntryStatus,
    FaqEntry,
    Flag,
    FlagKind,
    FlagStatus,
    PhrasingSource,
    QuestionPhrasing,
    ViewSource,
    utcnow,
)
from kb.site import stats
from tests.support.serve import run as run_cli
from tests.support.serve import serve_env
from tests.support.traffic import (
    add_abstained,
    add_failed_searches,
    add_outcomes,
    add_views,
    add_votes,
    backdate_revision,
    recompute_via_api,
)

POLICY = HealthPolicy(min_views=50, min_votes=10, min_suggestions=10, stale_days=90)

TOPICS = [
    ("How do I change my billing address?", "Go to **My Sorami > Billing > Address**."),
    ("How do I turn on international roaming?", "Open **Settings > Roaming** and switch it on."),
    ("How can I check my data usage?", "Your usage is on the **Home** tab of My Sorami."),
    ("How do I set up voicemail?", "Call **1416** from your phone and follow the guide."),
    ("What are the shop opening hours?", "Shops are open 10:00 to 20:00 every day."),
    ("How do I cancel my contract?", "Cancel online in **My Sorami > Contract > Cancel**."),
    ("Why is my bill higher this month?", "Check **Bill details** for calls and extra data."),
    ("How do I recycle my old phone?", "Bring it to any shop; we recycle it for free."),
]


def _entries(session: Session) -> list[FaqEntry]:
    out = []
    for i, (question, answer) in enumerate(TOPICS):
        out.append(
            faqs.create_entry(
                session,
                question=question,
                answer=answer,
                category="plans" if i % 2 else "billing",
                language="en",
                author="seed",
            )
        )
    return out


def _traffic(session: Session, entries: list[FaqEntry], *, bad: int = 0) -> None:
    """Healthy articles around 80 % helpful; `entries[bad]` at 20 %; the last has little data."""
    today = utcnow().date()
    for i, e in enumerate(entries[:-1]):
        add_views(session, e, 60, day=today, source=ViewSource.direct)
        add_views(session, e, 40, day=today, source=ViewSource.reply)
        if i == bad:
            add_votes(session, e, 4, 16, comment="does not explain it")
        else:
            add_votes(session, e, 16 + i % 3, 4 - i % 3)
    add_views(session, entries[-1], 5, day=today)
    add_votes(session, entries[-1], 0, 3)


def _recompute(session: Session, **kwargs: object) -> flags.RecomputeReport:
    return flags.recompute(session, POLICY, **kwargs)  # type: ignore[arg-type]


def _open(session: Session, kind: FlagKind | None = None) -> list[Flag]:
    rows, _ = flags.list_flags(session, kind=kind, limit=500)
    return rows


@pytest.fixture
def built(session_factory: sessionmaker[Session]) -> list[int]:
    with session_scope(session_factory) as s:
        entries = _entries(s)
        _traffic(s, entries)
        return [e.id for e in entries]


def test_low_helpfulness_is_flagged_with_evidence_only_with_enough_data(
    session_factory: sessionmaker[Session], built: list[int]
) -> None:
    with session_scope(session_factory) as s:
        report = _recompute(s)
    assert report.created == {"low_helpfulness": 1}
    assert report.skipped == ["duplicate", "content_gap"]
    with session_factory() as s:
        [flag] = _open(s)
        assert flag.kind == FlagKind.low_helpfulness and flag.entry_id == built[0]
        ev = flag.evidence
        assert (ev["helpful"], ev["not_helpful"]) == (4, 16)
        assert ev["views"]["total"] == 100 and ev["views"]["from_replies"] == 40
        assert ev["views"]["organic"] == 60
        ratio = ev["helpful_ratio"]
        assert ratio["ratio"] == 0.2 and ratio["wilson_high"] < ev["site_typical"]
        # Impact: views × (1 − Bayesian average against the site prior).
        bayes = (4 + ev["site_prior"] * POLICY.prior_votes) / (20 + POLICY.prior_votes)
        assert flag.score == pytest.approx(100 * (1 - bayes), abs=0.01)
        assert flag.language == "en" and flag.category == "billing"
        assert flag.revision_id == s.get(FaqEntry, built[0]).current_revision_id  # type: ignore[union-attr]
        # The last article is 0 % helpful but has 3 votes and 5 views: no judgement.
        assert not [f for f in _open(s) if f.entry_id == built[-1]]


def test_one_open_flag_per_problem_even_when_recomputed_or_inserted_twice(
    session_factory: sessionmaker[Session], built: list[int]
) -> None:
    with session_scope(session_factory) as s:
        _recompute(s)
    with session_scope(session_factory) as s:
        add_views(s, s.get(FaqEntry, built[0]), 50, day=utcnow().date())  # type: ignore[arg-type]
        again = _recompute(s)
    assert again.created == {} and again.updated == {"low_helpfulness": 1}
    with session_factory() as s:
        [flag] = _open(s)
        assert flag.evidence["views"]["total"] == 150  # refreshed, not duplicated
        key = flag.key
    # The database itself refuses a second open flag for the same problem.
    with pytest.raises(IntegrityError), session_scope(session_factory) as s:
        s.add(Flag(kind=FlagKind.low_helpfulness, key=key, status=FlagStatus.open, evidence={}))
        s.flush()
    with session_scope(session_factory) as s:  # a resolved or dismissed one may repeat
        s.add(Flag(kind=FlagKind.low_helpfulness, key=key, status=FlagStatus.resolved))
        s.add(Flag(kind=FlagKind.low_helpfulness, key=key, status=FlagStatus.dismissed))


def test_dismissed_flag_stays_quiet_until_the_evidence_doubles(
    session_factory: sessionmaker[Session], built: list[int]
) -> None:
    with session_scope(session_factory) as s:
        _recompute(s)
        [flag] = _open(s)
        flags.dismiss_flag(s, flag.id, reason="seasonal: a campaign ended", by="ed")
        dismissed_id = flag.id
    with session_scope(session_factory) as s:
        entry = s.get(FaqEntry, built[0])
        assert entry is not None
        add_votes(s, entry, 2, 8)  # 30 votes: more, but not twice the 20 seen
        report = _recompute(s)
    assert report.quiet == {"low_helpfulness": 1} and report.created == {}
    with session_scope(session_factory) as s:
        assert _open(s) == []
        entry = s.get(FaqEntry, built[0])
        assert entry is not None
        add_votes(s, entry, 1, 9)  # 40 votes = 2 × 20: new evidence
        report = _recompute(s)
    assert report.created == {"low_helpfulness": 1}
    with session_factory() as s:
        [flag] = _open(s)
        assert flag.evidence["previous_flag"] == dismissed_id
        old = s.get(Flag, dismissed_id)
        assert old is not None and old.status == FlagStatus.dismissed
        assert old.resolution == "seasonal: a campaign ended" and old.resolved_by == "ed"


def test_dismiss_needs_a_reason_and_an_open_flag(
    session_factory: sessionmaker[Session], built: list[int]
) -> None:
    from kb.errors import InvalidInput, InvalidTransition, NotFound

    with session_scope(session_factory) as s:
        _recompute(s)
        [flag] = _open(s)
        with pytest.raises(InvalidInput):
            flags.dismiss_flag(s, flag.id, reason="  ", by="ed")
        flags.dismiss_flag(s, flag.id, reason="ok", by="ed")
        with pytest.raises(InvalidTransition):
            flags.dismiss_flag(s, flag.id, reason="again", by="ed")
        with pytest.raises(NotFound):
            flags.dismiss_flag(s, 10_000, reason="x", by="ed")


def test_rewrite_resolves_the_flag_and_the_new_revision_starts_clean(
    session_factory: sessionmaker[Session], built: list[int]
) -> None:
    with session_scope(session_factory) as s:
        _recompute(s)
        [flag] = _open(s)
        result = flags.rewrite_entry(
            s,
            built[0],
            question=TOPICS[0][0],
            answer="1. Open **My Sorami**.\n2. Tap **Billing > Address** and save.",
            author="ed",
            flag_id=flag.id,
        )
        assert [f.id for f in result.resolved] == [flag.id]
        assert (
            result.revision.number == 2 and result.revision.reason == f"rewrite for flag {flag.id}"
        )
    with session_factory() as s:
        resolved = s.get(Flag, flag.id)
        assert resolved is not None and resolved.status == FlagStatus.resolved
        assert resolved.resolution == "rewritten as revision 2" and resolved.resolved_by == "ed"
        report = health_scores.article_health(s, built[0], POLICY)
        new = next(r for r in report.revisions if r.current)
        assert (new.counts.views_total, new.counts.votes) == (0, 0)  # clean numbers
        old = next(r for r in report.revisions if not r.current)
        assert (old.counts.helpful, old.counts.not_helpful) == (4, 16)  # history kept
        [ba] = report.rewrites
        assert ba.comparison.before.n == 20 and ba.comparison.after.n == 0
    with session_scope(session_factory) as s:
        assert _recompute(s).created == {}  # nothing to judge yet on revision 2
        entry = s.get(FaqEntry, built[0])
        assert entry is not None
        add_views(s, entry, 120, day=utcnow().date())
        add_votes(s, entry, 19, 3)
        _recompute(s)
        assert _open(s) == []
    with session_factory() as s:
        [ba] = health_scores.article_health(s, built[0], POLICY).rewrites
        assert ba.comparison.improved and ba.comparison.p_value < 0.001
        # A rewrite must change the text; the unchanged one is refused.
        from kb.errors import InvalidInput

        entry = s.get(FaqEntry, built[0])
        assert entry is not None and entry.current_revision is not None
        with pytest.raises(InvalidInput):
            flags.rewrite_entry(
                s,
                built[0],
                question=entry.current_revision.question,
                answer=entry.current_revision.answer,
                author="ed",
            )


def test_a_revision_written_elsewhere_resolves_the_flag_at_the_next_recompute(
    session_factory: sessionmaker[Session], built: list[int]
) -> None:
    with session_scope(session_factory) as s:
        _recompute(s)
        faqs.revise_entry(
            s,
            built[0],
            question=TOPICS[0][0],
            answer="Updated answer.",
            category="billing",
            language="en",
            author="content",
        )
        report = _recompute(s)
    assert report.resolved == {"low_helpfulness": 1}
    with session_factory() as s:
        rows, _ = flags.list_flags(s, status=FlagStatus.resolved)
        assert [f.resolution for f in rows] == ["rewritten as revision 2"]


def test_low_acceptance_compares_with_other_articles(
    session_factory: sessionmaker[Session], built: list[int]
) -> None:
    with session_scope(session_factory) as s:
        entries = [s.get(FaqEntry, i) for i in built]
        for i, e in enumerate(entries):
            assert e is not None
            if i == 3:
                add_outcomes(s, e, accepted=3, rejected=12)
            else:
                add_outcomes(s, e, accepted=13 + i % 2, rejected=2, edited=1)
        add_outcomes(s, entries[5], accepted=0, rejected=4)  # type: ignore[arg-type]
        _recompute(s)
    with session_factory() as s:
        rows = _open(s, FlagKind.low_acceptance)
        assert [f.entry_id for f in rows] == [built[3]]
        ev = rows[0].evidence
        assert (ev["accepted"], ev["rejected"]) == (3, 12)
        assert ev["acceptance"]["wilson_high"] < ev["site_typical"] - POLICY.acceptance_margin
        report = health_scores.article_health(s, built[3], POLICY)
        assert report.revisions[0].acceptance.n == 15


def test_stale_needs_an_old_revision_and_falling_numbers(
    session_factory: sessionmaker[Session], built: list[int]
) -> None:
    today = utcnow().date()
    with session_scope(session_factory) as s:
        old_falling, old_steady, new_falling = (s.get(FaqEntry, i) for i in built[1:4])
        for e in (old_falling, old_steady, new_falling):
            assert e is not None
            add_views(s, e, 200, day=today - timedelta(days=45))
        add_views(s, old_steady, 190, day=today - timedelta(days=5))  # type: ignore[arg-type]
        add_views(s, old_falling, 40, day=today - timedelta(days=5))  # type: ignore[arg-type]
        add_views(s, new_falling, 40, day=today - timedelta(days=5))  # type: ignore[arg-type]
        backdate_revision(s, old_falling, 400)  # type: ignore[arg-type]
        backdate_revision(s, old_steady, 400)  # type: ignore[arg-type]
        _recompute(s)
    with session_factory() as s:
        rows = _open(s, FlagKind.stale)
        assert [f.entry_id for f in rows] == [built[1]]
        ev = rows[0].evidence
        assert ev["previous_views"] == 200 and ev["recent_views"] == 40 + 100
        assert ev["revised_days_ago"] >= 399 and "views fell" in ev["rule"]


def test_duplicates_by_texts_and_phrasings_not_translations_nor_the_seed(
    session_factory: sessionmaker[Session], seeded: None, embedder: CachedEmbedder
) -> None:
    encoder = QuestionVectors(embedder)
    tokenizer = default_tokenizer()
    with session_scope(session_factory) as s:
        report = _recompute(s, encoder=encoder, tokenizer=tokenizer, gaps=False)
        assert report.created.get("duplicate", 0) == 0  # 106 seed articles, no duplicate
        original = faqs.get_entry_by_slug(s, "esim-iphone-activate")
        assert original is not None
        copy = faqs.create_entry(
            s,
            question="How do I turn on eSIM on my iPhone?",
            answer="Scan the QR code in **Settings > Mobile Service > Add eSIM**.",
            category="sim-esim",
            language="en",
            phrasings=["I scanned the QR code but my iPhone eSIM won't activate"],
        )
        # A same-language copy in the article's own translation group is not a duplicate.
        twin = faqs.create_entry(
            s,
            question="How do I activate eSIM on an Android phone?",
            answer="Use **Settings > Network > SIMs > Add eSIM**.",
            category="sim-esim",
            language="en",
            translation_group="esim-android-activate",
        )
        add_views(s, original, 300, day=utcnow().date())
        add_views(s, copy, 20, day=utcnow().date())
        _recompute(s, encoder=encoder, tokenizer=tokenizer, gaps=False)
        rows = _open(s, FlagKind.duplicate)
        assert [sorted(f.evidence["pair"]) for f in rows] == [sorted([original.id, copy.id])]
        ev = rows[0].evidence
        assert ev["merge"] == {"from": copy.id, "into": original.id}  # more views stays
        assert rows[0].entry_id == copy.id and rows[0].score == 20
        assert ev["score"] >= POLICY.duplicate_threshold and ev["closest_texts"]
        assert twin.id not in ev["pair"]


def test_content_gap_clusters_unanswered_posts_and_searches(
    session_factory: sessionmaker[Session], embedder: CachedEmbedder
) -> None:
    encoder = QuestionVectors(embedder)
    tokenizer = default_tokenizer()
    pets = [
        "Can I bring my dog into the shop?",
        "are dogs allowed in your stores",
        "Can I take my dog into a Sorami shop?",
        "Is it OK to bring my dog to the store?",
    ]
    chatter = ["what a lovely day", "my cat is asleep on the keyboard", "pizza tonight?"]
    with session_scope(session_factory) as s:
        _entries(s)
        add_abstained(s, pets[:3], "en")
        add_abstained(s, chatter, "en")
        add_failed_searches(s, [pets[3], pets[3]], "en")
        add_abstained(s, ["ペットを店に連れて行ってもいいですか"], "ja")
        old = utcnow() - timedelta(days=POLICY.gap_days + 5)
        add_abstained(s, pets * 3, "en", at=old)  # outside the window: not counted
        _recompute(s, encoder=encoder, tokenizer=tokenizer)
        [gap] = _open(s, FlagKind.content_gap)
        ev = gap.evidence
        assert (ev["posts"], ev["searches"], ev["total"]) == (3, 2, 5)
        assert gap.entry_id is None and gap.language == "en" and gap.score == 5
        assert {e["text"] for e in ev["examples"]} == set(pets)
        assert ev["medoid"] in pets
        key = gap.key
        # More posts on the same topic refresh the same flag.
        add_abstained(s, ["Dogs in the shop, allowed or not?", *pets[:2]], "en")
        report = _recompute(s, encoder=encoder, tokenizer=tokenizer)
        assert report.updated.get("content_gap") == 1 and report.created == {}
        [gap] = _open(s, FlagKind.content_gap)
        assert gap.key == key and gap.evidence["total"] == 8
        # Once an article answers it, the gap resolves.
        report = _recompute(
            s, encoder=encoder, tokenizer=tokenizer, covered=lambda text, lang: (1, 0.9)
        )
        assert report.resolved == {"content_gap": 1}
        assert _open(s, FlagKind.content_gap) == []


def test_merge_redirects_and_carries_views_votes_phrasings(
    client: TestClient,
    editor_headers: dict[str, str],
    agent_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    with session_scope(session_factory) as s:
        target = faqs.get_entry_by_slug(s, "esim-iphone-activate")
        assert target is not None
        source = faqs.create_entry(
            s,
            question="Turning on eSIM on iPhone",
            answer="Scan the QR code.",
            category="sim-esim",
            language="en",
            phrasings=["iphone esim activation fails"],
        )
        add_views(s, source, 30, day=utcnow().date(), source=ViewSource.reply)
        add_votes(s, source, 2, 5)
        add_views(s, target, 10, day=utcnow().date())
        ids = (source.id, target.id)
        slug = source.slug
        changes_before = s.scalar(select(func.count(EntryChange.id)))
    r = client.post(f"/v1/faqs/{ids[0]}/merge", json={"into": ids[1]}, headers=agent_headers)
    assert r.status_code == 403
    r = client.post(f"/v1/faqs/{ids[0]}/merge", json={"into": ids[0]}, headers=editor_headers)
    assert r.status_code == 400 and r.json()["error"] == "invalid_input"
    r = client.post(f"/v1/faqs/{ids[0]}/merge", json={"into": ids[1]}, headers=editor_headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["views_moved"] == 30 and body["votes_moved"] == 7
    assert body["phrasings_added"] == 2 and body["redirect"] == f"/faq/{slug}"
    r = client.get(f"/faq/{slug}?src=reply", follow_redirects=False)
    assert r.status_code == 301 and r.headers["location"] == "/faq/esim-iphone-activate?src=reply"
    r = client.get(f"/v1/public/faqs/{slug}", follow_redirects=False)
    assert r.status_code == 301
    assert r.headers["location"] == "/v1/public/faqs/esim-iphone-activate"
    r = client.post(f"/v1/faqs/{ids[0]}/merge", json={"into": ids[1]}, headers=editor_headers)
    assert r.status_code == 409  # already merged
    with session_factory() as s:
        src = s.get(FaqEntry, ids[0])
        assert src is not None and src.status == EntryStatus.merged
        assert src.merged_into_id == ids[1]
        texts = {
            p.text: p.source
            for p in s.scalars(select(QuestionPhrasing).where(QuestionPhrasing.entry_id == ids[1]))
        }
        assert texts["Turning on eSIM on iPhone"] == PhrasingSource.editor
        assert "iphone esim activation fails" in texts
        assert s.scalar(select(func.count(EntryChange.id))) == (changes_before or 0) + 2
        report = health_scores.article_health(s, ids[1], POLICY)
        assert report.totals.views_total == 40 and report.totals.votes == 7
        carried = [r for r in report.revisions if r.merged_from == ids[0]]
        assert len(carried) == 1 and carried[0].counts.reply_views == 30
        current = next(r for r in report.revisions if r.current)
        assert current.counts.views_total == 10  # its own revision's judgement stays its own
    # The merged article is gone from search; its phrasing now finds the survivor.
    r = client.post(
        "/v1/suggest", json={"text": "iphone esim activation fails", "k": 3}, headers=agent_headers
    )
    assert ids[0] not in [c["faq_id"] for c in r.json()["candidates"]]


def test_flags_api_lists_filters_and_needs_an_editor(
    client: TestClient,
    editor_headers: dict[str, str],
    agent_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    with session_scope(session_factory) as s:
        entries = _entries(s)
        _traffic(s, entries)
        add_outcomes(s, entries[2], accepted=1, rejected=30)
        for e in entries[3:6]:
            add_outcomes(s, e, accepted=25, rejected=3)
        bad = entries[0].id
    assert client.get("/v1/flags", headers=agent_headers).status_code == 403
    assert client.get("/v1/flags").status_code == 401
    report = recompute_via_api(client, editor_headers)
    assert report["created"]["low_helpfulness"] >= 1
    body = client.get("/v1/flags", headers=editor_headers).json()
    scores = [f["score"] for f in body["items"]]
    assert scores == sorted(scores, reverse=True) and body["total"] == len(body["items"])
    assert {"kind", "faq_id", "score", "evidence"} <= set(body["items"][0])
    helpful = client.get(
        "/v1/flags", params={"kind": "low_helpfulness", "lang": "en"}, headers=editor_headers
    ).json()
    assert bad in [f["faq_id"] for f in helpful["items"]]
    assert all(f["kind"] == "low_helpfulness" for f in helpful["items"])
    acceptance = client.get(
        "/v1/flags", params={"kind": "low_acceptance"}, headers=editor_headers
    ).json()
    assert [f["faq_id"] for f in acceptance["items"]] == [entries[2].id]
    none = client.get(
        "/v1/flags", params={"kind": "low_helpfulness", "lang": "ja"}, headers=editor_headers
    ).json()
    assert none["items"] == [] or all(f["lang"] == "ja" for f in none["items"])
    billing = client.get("/v1/flags", params={"category": "billing"}, headers=editor_headers)
    assert all(f["category"] == "billing" for f in billing.json()["items"])
    assert (
        client.get("/v1/flags", params={"kind": "nope"}, headers=editor_headers).status_code == 422
    )
    flag_id = helpful["items"][0]["id"]
    r = client.post(f"/v1/flags/{flag_id}/dismiss", json={"reason": ""}, headers=editor_headers)
    assert r.status_code == 422
    r = client.post(
        f"/v1/flags/{flag_id}/dismiss", json={"reason": "ユーザーの誤解"}, headers=editor_headers
    )
    assert r.status_code == 200 and r.json()["status"] == "dismissed"
    r = client.post(f"/v1/flags/{flag_id}/dismiss", json={"reason": "x"}, headers=editor_headers)
    assert r.status_code == 409
    dismissed = client.get("/v1/flags", params={"status": "dismissed"}, headers=editor_headers)
    assert [f["id"] for f in dismissed.json()["items"]] == [flag_id]


def test_health_endpoint_and_rewrite_endpoint(
    client: TestClient, editor_headers: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    with session_scope(session_factory) as s:
        entries = _entries(s)
        _traffic(s, entries)
        bad = entries[0].id
    recompute_via_api(client, editor_headers)
    r = client.get(f"/v1/faqs/{bad}/health", headers=editor_headers)
    assert r.status_code == 200
    body = r.json()
    [rev] = body["revisions"]
    assert rev["counts"]["views"] == {
        "reply": 40,
        "search": 0,
        "direct": 60,
        "imported": 0,
        "total": 100,
        "from_replies": 40,
        "organic": 60,
    }
    assert rev["helpful_ratio"]["ratio"] == 0.2 and rev["enough_votes"]
    assert rev["helpful_ratio"]["wilson_low"] < 0.2 < rev["helpful_ratio"]["wilson_high"]
    assert [f["kind"] for f in body["open_flags"]] == ["low_helpfulness"]
    assert body["rewrites"] == [] and body["series"][0]["views"] == 100
    flag_id = body["open_flags"][0]["id"]
    r = client.post(
        f"/v1/faqs/{bad}/rewrite",
        json={"question": TOPICS[0][0], "answer": "New steps.", "flag_id": flag_id},
        headers=editor_headers,
    )
    assert r.status_code == 201, r.text
    assert r.json()["resolved_flags"] == [flag_id] and r.json()["revision"] == 2
    with session_scope(session_factory) as s:
        entry = s.get(FaqEntry, bad)
        assert entry is not None
        add_views(s, entry, 80, day=utcnow().date())
        add_votes(s, entry, 18, 2)
    body = client.get(f"/v1/faqs/{bad}/health", headers=editor_headers).json()
    [rewrite] = body["rewrites"]
    assert (rewrite["from_revision"], rewrite["to_revision"]) == (1, 2)
    assert rewrite["before"]["ratio"] == 0.2 and rewrite["after"]["ratio"] == 0.9
    assert rewrite["test"] == "fisher_exact_two_sided" and rewrite["significant"]
    assert rewrite["improved"] and rewrite["difference"] == pytest.approx(0.7)
    assert body["open_flags"] == []
    assert client.get("/v1/faqs/99999/health", headers=editor_headers).status_code == 404
    r = client.post(
        f"/v1/faqs/{bad}/rewrite",
        json={"question": "", "answer": "x"},
        headers=editor_headers,
    )
    assert r.status_code == 400


def test_health_numbers_agree_with_the_site_statistics(
    session_factory: sessionmaker[Session], built: list[int]
) -> None:
    with session_factory() as s:
        for entry_id in built:
            mine = {
                r.revision.id: r
                for r in health_scores.article_health(s, entry_id, POLICY).revisions
            }
            for row in stats.entry_stats(s, entry_id):
                counts = mine[row.revision.id].counts
                assert counts.views_total == row.views_total
                assert (counts.helpful, counts.not_helpful) == (row.helpful, row.not_helpful)


def test_faqloop_health_cli(settings: Settings, built: list[int], tmp_path: Path) -> None:
    env = serve_env(
        settings.data_dir,
        settings.db_url,
        settings.models_dir,
        FAQLOOP_EMBEDDING_MODEL=settings.embedding_model,
        FAQLOOP_HEALTH_MIN_VIEWS=str(POLICY.min_views),
        FAQLOOP_HEALTH_MIN_VOTES=str(POLICY.min_votes),
    )
    out = f"{tmp_path}/health.json"
    done = run_cli(env, "health", "--no-gaps", "--json", out)
    assert done.returncode == 0, done.stderr
    assert "created: low_helpfulness 1" in done.stdout
    assert "not checked: content_gap" in done.stdout
    assert f"FAQ {built[0]}" in done.stdout
    summary = json.loads(Path(out).read_text(encoding="utf-8"))
    assert summary["open_total"] >= 1 and summary["flags"][0]["kind"] in {
        "low_helpfulness",
        "duplicate",
    }
