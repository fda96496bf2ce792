"""Reply drafts: how they fit X, what drafting and triage cost, and batch throughput.

    .venv/bin/python benchmarks/reply_drafts.py [--posts N]

1. Drafts for every seed article (ja and en) for a problem post and a question post, on X
   (280 weighted): weighted lengths and how much of the answer's gist survived.
2. The cost of drafting alone (triage + personal-data scan + compose + X counting).
3. End to end on a temporary SQLite database with the seed content: the 80 customer-style
   posts of tests/data/suggest_cases.yaml through plain suggest and through
   suggest-with-reply (one transaction per post, as `faqloop suggest-file` does).
Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from api.replies.deps import reply_policy  # noqa: E402
from api.settings import Settings  # noqa: E402
from kb.faqs.content import read_content_dir  # noqa: E402
from kb.replies.channels import DEFAULT_LIMITS, resolve_channel  # noqa: E402
from kb.replies.compose import FaqForReply, answer_gist, compose_reply  # noqa: E402
from kb.replies.triage import triage_post  # noqa: E402
from kb.text.personal_data import personal_data_kinds  # noqa: E402

POSTS = {
    "en": [
        "@SoramiMobile this doesn't work for me at all 😭 what now",
        "@SoramiMobile quick question about this, how does it work?",
    ],
    "ja": [
        "@ソラミモバイル これができなくて困ってます😭",
        "@ソラミモバイル これってどうすればいいですか？",
    ],
}
BASE = "https://help.sorami-mobile.com"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def drafts_on_x() -> None:
    policy = reply_policy(Settings(_env_file=None))  # type: ignore[call-arg]
    x = resolve_channel("x", DEFAULT_LIMITS)
    articles = read_content_dir(ROOT / "faq_content")
    lengths, times = [], []
    kept = {"two sentences": 0, "one sentence": 0, "cut sentence": 0, "no gist": 0, "dm": 0}
    for article in articles:
        faq = FaqForReply(
            1, article.question, article.answer, f"{BASE}/faq/{article.slug}", article.category
        )
        gist = answer_gist(article.answer)
        for post in POSTS[article.language]:
            started = time.perf_counter()
            triage = triage_post(
                post,
                brand_handles=policy.brand_handles,
                brand_names=(policy.brand_name, policy.brand_name_ja),
                matched=True,
            )
            draft = compose_reply(
                post,
                article.language,
                faq=faq,
                triage=triage,
                personal_data=personal_data_kinds(post),
                channel=x,
                policy=policy,
            )
            times.append((time.perf_counter() - started) * 1000)
            assert draft is not None and draft.fits
            lengths.append(draft.weighted_length)
            joiner = "" if article.language == "ja" else " "
            if draft.kind == "dm":
                kept["dm"] += 1
            elif len(gist) > 1 and joiner.join(gist[:2]) in draft.text:
                kept["two sentences"] += 1
            elif gist and gist[0] in draft.text:
                kept["one sentence"] += 1
            elif any(line.endswith("…") for line in draft.text.split("\n")):
                kept["cut sentence"] += 1
            else:
                kept["no gist"] += 1
    n = len(lengths)
    print(f"X drafts for {len(articles)} seed articles × 2 posts = {n} drafts, all within 280")
    print(
        f"  weighted length: min {min(lengths)}, median {statistics.median(lengths):.0f}, "
        f"max {max(lengths)}"
    )
    print("  gist kept: " + ", ".join(f"{k} {v} ({v / n:.0%})" for k, v in kept.items()))
    print(f"  drafting time per post: p50 {pct(times, 0.5):.2f} ms, p95 {pct(times, 0.95):.2f} ms")


def end_to_end(limit: int) -> None:
    from api.replies.deps import build_reply_kit
    from api.state import build_services
    from kb.db import migrate, session_scope
    from kb.faqs.entries import load_articles
    from kb.replies.compose import suggest_with_reply
    from kb.suggest.service import suggest

    cases = yaml.safe_load((ROOT / "tests" / "data" / "suggest_cases.yaml").read_text())
    texts = [c["text"] for c in cases][:limit]
    with tempfile.TemporaryDirectory(prefix="faqloop-bench-") as tmp:
        settings = Settings(data_dir=Path(tmp), base_url=BASE, _env_file=None)  # type: ignore[call-arg]
        migrate(settings.db_url)
        services = build_services(settings)
        try:
            with session_scope(services.session_factory) as s:
                load_articles(s, read_content_dir(ROOT / "faq_content"), author="bench")
            services.index.open(services.session_factory)
            kit = build_reply_kit(services)
            for t in texts[:5]:  # warm-up
                with services.session_factory() as s:
                    suggest(s, services.index, services.calibration, services.policy, text=t)
            plain, full = [], []
            for text in texts:
                started = time.perf_counter()
                with session_scope(services.session_factory) as s:
                    suggest(s, services.index, services.calibration, services.policy, text=text)
                plain.append((time.perf_counter() - started) * 1000)
            started_all = time.perf_counter()
            replies = 0
            for text in texts:
                started = time.perf_counter()
                with session_scope(services.session_factory) as s:
                    a = suggest_with_reply(
                        s,
                        services.index,
                        services.calibration,
                        kit.suggest_policy(),
                        kit.policy,
                        text=text,
                        channel="x",
                    )
                    replies += a.reply is not None
                full.append((time.perf_counter() - started) * 1000)
            elapsed = time.perf_counter() - started_all
        finally:
            services.close()
    print(f"end to end, {len(texts)} customer-style posts, SQLite, one transaction each:")
    print(f"  suggest only:       p50 {pct(plain, 0.5):.1f} ms, p95 {pct(plain, 0.95):.1f} ms")
    print(f"  suggest + draft:    p50 {pct(full, 0.5):.1f} ms, p95 {pct(full, 0.95):.1f} ms")
    print(f"  throughput (suggest-file path): {len(texts) / elapsed:.1f} posts/s")
    print(f"  drafts produced: {replies}/{len(texts)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--posts", type=int, default=80, help="Posts for the end-to-end run.")
    args = parser.parse_args()
    drafts_on_x()
    end_to_end(args.posts)


if __name__ == "__main__":
    main()
