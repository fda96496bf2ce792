"""CLI commands of suggestions: one post, a file of posts, evaluation and calibration."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from api.commands import (
    domain_errors,
    fail,
    load_services,
    settings,
)

# Mirrors indexer.retrieval.confidence.DEFAULT_FEATURES without importing numpy at start.
DEFAULT_FEATURES_CLI = ("dense_top", "dense_margin", "coverage", "japanese")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `faqloop` app."""

    @app.command("suggest-file")
    def suggest_file(
        file: Annotated[
            Path,
            typer.Argument(help="Posts as JSONL (one object a line) or CSV with a header."),
        ],
        output: Annotated[
            Path,
            typer.Option(
                "--output", "-o", help="JSONL results; ids already in it are skipped (resume)."
            ),
        ],
        fmt: Annotated[
            str, typer.Option("--format", help="auto (by extension), jsonl or csv.")
        ] = "auto",
        channel: Annotated[
            str | None,
            typer.Option(help="Channel for posts without one (x, instagram, email, ...)."),
        ] = None,
    ) -> None:
        """Suggest a FAQ, triage and draft a reply for every post of a file.

        Fields: id (default: the line number), text, and optional lang, channel, k. Each
        result is one line of the output, written at once; re-running with the same output
        skips the posts already done, so an interrupted run resumes without repeating work.
        Posts that cannot be suggested get an error line (exit code 2 at the end).
        """
        from tqdm import tqdm

        from api.replies.deps import build_reply_kit
        from kb.db import session_scope
        from kb.errors import IndexNotReady
        from kb.replies.compose import suggest_with_reply
        from kb.replies.file_batch import (
            PostRow,
            ResultWriter,
            assisted_record,
            done_ids,
            read_posts,
            run_batch,
        )

        if fmt not in ("auto", "jsonl", "csv"):
            raise fail("--format must be auto, jsonl or csv")
        s = settings()
        with domain_errors():
            rows = read_posts(file, fmt)  # type: ignore[arg-type]
        if output.resolve() == file.resolve():
            raise fail("the output must not be the input file")
        try:
            already = done_ids(output)
        except OSError as exc:
            raise fail(f"cannot read {output}: {exc}") from exc
        services = load_services(s)
        try:
            services.index.open(services.session_factory)
            kit = build_reply_kit(services)
            policy = kit.suggest_policy()

            def process(row: PostRow) -> dict[str, Any]:
                with session_scope(services.session_factory) as session:
                    assisted = suggest_with_reply(
                        session,
                        services.index,
                        services.calibration,
                        policy,
                        kit.policy,
                        text=row.text,
                        lang=row.lang,
                        k=row.k,
                        channel=row.channel or channel,
                    )
                # Written only after the commit: a line in the output is a stored suggestion.
                return assisted_record(assisted)

            with (
                ResultWriter(output) as writer,
                tqdm(total=len(rows), desc="posts", unit="post", file=sys.stderr) as bar,
            ):
                summary = run_batch(
                    rows, already=already, process=process, writer=writer, progress=bar.update
                )
        except IndexNotReady as exc:
            raise fail(exc.message) from exc
        except OSError as exc:
            raise fail(f"cannot write {output}: {exc}") from exc
        finally:
            services.close()
        typer.echo(
            f"{summary.total} posts: {summary.done} suggested, {summary.skipped} already in "
            f"{output.name}, {summary.failed} failed, {summary.duplicates} duplicate ids skipped"
        )
        for line, ident, message in summary.errors:
            typer.echo(f"line {line} (id {ident}): {message}", err=True)
        if summary.failed:
            raise fail(f"{summary.failed} posts failed (error lines written to {output})")

    @app.command("suggest")
    def suggest_cmd(
        text: Annotated[str, typer.Argument(help="The customer's post.")],
        lang: Annotated[str | None, typer.Option(help="ja or en (default: detected).")] = None,
        k: Annotated[int | None, typer.Option(help="How many candidates.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """Print the ranked FAQ candidates for a post."""
        from kb.db import session_scope
        from kb.suggest.service import SuggestPolicy, suggest, validate_post

        s = settings()
        # Bad input is refused before the model loads (seconds); the limits are settings.
        with domain_errors():
            validate_post(text, lang, k, SuggestPolicy(max_chars=s.max_text_chars, max_k=s.max_k))
        services = load_services(s)
        try:
            with domain_errors():
                services.index.open(services.session_factory)
                with session_scope(services.session_factory) as session:
                    out = suggest(
                        session,
                        services.index,
                        services.calibration,
                        services.policy,
                        text=text,
                        lang=lang,
                        k=k,
                        record=False,
                    )
        finally:
            services.close()
        if as_json:
            body = {
                "candidates": [c.__dict__ for c in out.candidates],
                "confidence": out.confidence,
                "abstained": out.abstained,
                "lang": out.language,
            }
            typer.echo(json.dumps(body, ensure_ascii=False, indent=2))
            return
        verdict = "abstained (no FAQ fits well enough)" if out.abstained else "suggest #1"
        typer.echo(f"confidence {out.confidence:.3f}: {verdict}")
        for rank, c in enumerate(out.candidates, 1):
            typer.echo(f"{rank:>2}. [{c.faq_id}] {c.title}  {c.url}  (score {c.score:.4f})")

    @app.command("eval")
    def eval_cmd(
        dataset: Annotated[Path, typer.Argument(help="Folder with faqs.jsonl and queries.jsonl.")],
        json_out: Annotated[
            Path | None, typer.Option("--json", help="Also write the figures as JSON here.")
        ] = None,
        clean: Annotated[
            bool,
            typer.Option(
                "--clean/--no-clean",
                help="Clean queries as suggest cleans posts (mentions, URLs, greetings...).",
            ),
        ] = True,
    ) -> None:
        """Recall@1/5/10, MRR@10, nDCG@10 and latency for lexical, dense and hybrid retrieval.

        Queries are cleaned as suggest cleans a post, unless --no-clean.
        """
        import tempfile

        from tqdm import tqdm

        from indexer.embedding.encoders import ModelNotFound, load_embedder
        from indexer.lexical.tokenizer import default_tokenizer
        from kb.suggest.evaluation import (
            DatasetError,
            build_index,
            evaluate,
            load_dataset,
            save_temp_index,
        )

        s = settings()
        try:
            data = load_dataset(dataset)
            embedder = load_embedder(
                s.embedding_model,
                s.models_dir,
                backend=s.embed_backend,
                threads=s.torch_threads,
            )
        except (DatasetError, ModelNotFound) as exc:
            raise fail(str(exc)) from exc
        typer.echo(
            f"{data.name}: {len(data.faqs)} FAQs, {len(data.queries)} queries, "
            f"model {embedder.name}",
            err=True,
        )
        index, ids = build_index(data, embedder, default_tokenizer())
        with tempfile.TemporaryDirectory(prefix="faqloop-eval-") as tmp:
            save_temp_index(index, Path(tmp))
        with tqdm(total=len(data.queries) * 4, desc="queries", unit="q", file=sys.stderr) as bar:
            reports = evaluate(data, index, ids, progress=bar.update, clean=clean)
        cols = ("recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10", "p50_ms", "p95_ms")
        typer.echo(f"{'mode':<8}" + "".join(f"{c:>11}" for c in cols))
        for mode, rep in reports.items():
            typer.echo(f"{mode:<8}" + "".join(f"{rep.metrics[c]:>11.3f}" for c in cols))
        if json_out:
            body = {
                "dataset": data.name,
                "model": embedder.name,
                "queries": len(data.queries),
                "faqs": len(data.faqs),
                "cleaned": clean,
                "modes": {m: {c: round(r.metrics[c], 4) for c in cols} for m, r in reports.items()},
            }
            json_out.write_text(json.dumps(body, indent=2) + "\n")

    @app.command()
    def calibrate(
        datasets: Annotated[
            list[Path], typer.Argument(help="Data set folders; the English one first.")
        ],
        output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the model.")],
        chatter: Annotated[
            Path | None,
            typer.Option(help="Off-topic posts, one a line (default: the shipped list)."),
        ] = None,
        target_precision: Annotated[
            float, typer.Option(help="Precision the threshold keeps.")
        ] = 0.9,
        gap_weight: Annotated[
            float, typer.Option(help="Weight of content-gap rankings (vs answerable posts).")
        ] = 0.25,
        off_topic_weight: Annotated[
            float, typer.Option(help="Weight of off-topic posts (vs answerable posts).")
        ] = 0.5,
        features: Annotated[
            str,
            typer.Option(help="Comma-separated features (see indexer/retrieval/confidence.py)."),
        ] = ",".join(DEFAULT_FEATURES_CLI),
    ) -> None:
        """Fit the confidence model and its abstention threshold (see docs/retrieval.md).

        Positives: the data sets' queries. Negatives: the same queries with their answers left
        out (content gaps) and off-topic posts against the content folder; every other
        off-topic line is held out to check the threshold.
        """
        from tqdm import tqdm

        from indexer.embedding.encoders import ModelNotFound, load_embedder
        from indexer.lexical.tokenizer import default_tokenizer
        from indexer.retrieval.confidence import CALIBRATION_DIR, FEATURES
        from kb.faqs.content import read_content_dir
        from kb.indexing import IndexRecipe
        from kb.suggest.evaluation import (
            DatasetError,
            build_index,
            chatter_features,
            content_index,
            evaluate,
            load_dataset,
            read_lines,
        )
        from kb.suggest.evaluation import calibrate as run_calibration

        names = tuple(n.strip() for n in features.split(",") if n.strip())
        unknown = set(names) - set(FEATURES)
        if unknown or not names:
            raise fail(f"unknown features {sorted(unknown)}; choose from {', '.join(FEATURES)}")
        s = settings()
        try:
            data = [load_dataset(d) for d in datasets]
            embedder = load_embedder(
                s.embedding_model,
                s.models_dir,
                backend=s.embed_backend,
                threads=s.torch_threads,
            )
            posts = read_lines(chatter or CALIBRATION_DIR / "chatter.txt")
            with domain_errors():
                articles = read_content_dir(s.content_dir)
        except (DatasetError, ModelNotFound, OSError) as exc:
            raise fail(str(exc)) from exc
        tokenizer = default_tokenizer()
        per_set = {}
        for d in data:
            index, ids = build_index(d, embedder, tokenizer)
            with tqdm(total=len(d.queries) * 2, desc=d.name, unit="q", file=sys.stderr) as bar:
                per_set[d.name] = evaluate(d, index, ids, modes=("hybrid",), progress=bar.update)[
                    "hybrid"
                ]
        recipe = IndexRecipe()
        seed = content_index(articles, embedder, tokenizer, recipe)
        chat = chatter_features(seed, posts)
        result = run_calibration(
            per_set,
            chat[0::2],
            chat[1::2],
            model_name=embedder.name,
            names=names,
            gap_weight=gap_weight,
            off_topic_weight=off_topic_weight,
            target_precision=target_precision,
            vectors=f"{embedder.backend} vectors, answers in up to "
            f"{recipe.dense_answer_chunks} chunks (discount {recipe.chunk_discount})",
        )
        for name, t in result.per_set_threshold.items():
            typer.echo(f"{name}: lowest threshold with precision >= {target_precision}: {t:.3f}")
        typer.echo(
            f"off-topic posts: threshold {result.chatter_threshold:.3f} abstains on "
            f"{result.chatter_fit_abstain:.1%} (fit half), {result.chatter_heldout_abstain:.1%} "
            "(held-out half)"
        )
        for name, (rows, ece) in result.reliability.items():
            typer.echo(f"reliability on {name} (ECE {ece:.3f}):")
            typer.echo(f"{'confidence':>14}{'queries':>9}{'mean conf':>11}{'right':>8}")
            for lo, hi, n, mean_conf, share in rows:
                typer.echo(f"{lo:>6.1f} - {hi:<5.1f}{n:>9}{mean_conf:>11.3f}{share:>8.3f}")
        typer.echo(f"precision/coverage on {data[0].name} (hybrid):")
        typer.echo(f"{'threshold':>10}{'coverage':>10}{'precision':>11}")
        for t, cov, prec in result.curve:
            typer.echo(f"{t:>10.3f}{cov:>10.3f}{prec:>11.3f}")
        result.model.save(output)
        typer.echo(f"confidence model written to {output} (threshold {result.model.threshold})")
