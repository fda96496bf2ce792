"""The ONNX Runtime backends (onnx, onnx-int8): parity with torch, the checks at load, the
fallback to torch, threads and the micro-batcher, and the setting's validation.

Uses the built model of the configured models folder (`faqloop models build`, which exports
the ONNX files); tampered copies are made in tmp dirs with links to the real files.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner

from api.cli.main import app as cli_app
from api.settings import Settings
from indexer.embedding.encoders import (
    DEFAULT_MODEL,
    CachedEmbedder,
    backend_of,
    load_embedder,
    model_threads,
)
from indexer.embedding.microbatch import BatchingEmbedder
from indexer.embedding.model_build import MARKER_NAME
from indexer.embedding.onnx_backend import (
    BUILD_MANIFEST,
    MIN_COSINE,
    ONNX,
    ONNX_FILES,
    ONNX_INT8,
    OnnxEmbedder,
    OnnxUnusable,
    check_backend,
    load_onnx_embedder,
    sha256_file,
)
from indexer.lexical.tokenizer import default_tokenizer
from kb.faqs.content import read_content_dir
from kb.indexing import IndexRecipe
from kb.suggest.evaluation import content_index
from kb.text.cleaning import clean_post
from kb.text.language import detect_language, normalize_text
from tests.support.paths import TEST_MODEL

pytest.importorskip("onnxruntime")

ROOT = Path(__file__).resolve().parents[2]
CASES = yaml.safe_load((ROOT / "tests" / "data" / "suggest_cases.yaml").read_text())
POSTS = [clean_post(c["text"]) or normalize_text(c["text"]) for c in CASES]


@pytest.fixture(scope="module")
def model_path(models_dir: Path) -> Path:
    if TEST_MODEL != DEFAULT_MODEL:
        pytest.skip("the ONNX files are built for multilingual-e5-small only")
    path = models_dir / DEFAULT_MODEL
    try:
        manifest = json.loads((path / MARKER_NAME).read_text())
    except OSError:
        pytest.skip("the model is not built (make model)")
    if "onnx" not in manifest:
        pytest.fail("the model was built without ONNX files: run `faqloop models build --force`")
    return path


@pytest.fixture(scope="module")
def onnx_fp32(model_path: Path) -> OnnxEmbedder:
    return load_onnx_embedder(DEFAULT_MODEL, model_path, backend=ONNX)


@pytest.fixture(scope="module")
def onnx_int8(model_path: Path) -> OnnxEmbedder:
    return load_onnx_embedder(DEFAULT_MODEL, model_path, backend=ONNX_INT8)


def _copy_with_links(src: Path, dst: Path, *, manifest: dict[str, Any] | None = None) -> Path:
    """A model folder at dst: links to src's files, its own onnx/ folder and manifest."""
    dst.mkdir(parents=True)
    for item in src.iterdir():
        if item.name not in ("onnx", MARKER_NAME):
            os.symlink(item, dst / item.name)
    (dst / "onnx").mkdir()
    for rel in ONNX_FILES.values():
        os.symlink(src / rel, dst / rel)
    body = manifest if manifest is not None else json.loads((src / MARKER_NAME).read_text())
    (dst / MARKER_NAME).write_text(json.dumps(body))
    return dst


def _ranked(index: Any, slugs: dict[int, str], text: str, k: int) -> list[str]:
    hits = index.search(text, k=k, language=detect_language(text)).hits
    return [slugs[h.entry_id] for h in hits]


def test_manifest_name_is_the_builds() -> None:
    assert BUILD_MANIFEST == MARKER_NAME


def test_unknown_backend_is_refused_with_the_choices(models_dir: Path) -> None:
    with pytest.raises(ValueError, match="torch, onnx, onnx-int8"):
        check_backend("gpu")
    with pytest.raises(ValueError, match="unknown embedding backend 'onnx-fp16'"):
        load_embedder(DEFAULT_MODEL, models_dir, backend="onnx-fp16")


def test_setting_accepts_the_backends_and_refuses_others(monkeypatch: pytest.MonkeyPatch) -> None:
    for value in ("torch", "onnx", "onnx-int8"):
        monkeypatch.setenv("FAQLOOP_EMBED_BACKEND", value)
        assert Settings().embed_backend == value
    monkeypatch.setenv("FAQLOOP_EMBED_BACKEND", "int8")
    with pytest.raises(ValidationError, match="embed_backend"):
        Settings()


def test_cli_refuses_a_bad_backend_with_a_message(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FAQLOOP_EMBED_BACKEND", "cuda")
    monkeypatch.setenv("FAQLOOP_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(cli_app, ["eval", str(tmp_path)])
    assert result.exit_code != 0
    assert "embed_backend" in result.output
    assert "onnx-int8" in result.output  # the allowed values are named


def test_fp32_vectors_equal_torchs(onnx_fp32: OnnxEmbedder, torch_embedder: CachedEmbedder) -> None:
    texts = [*POSTS[:20], "short", "  leading and trailing spaces  "]
    got = onnx_fp32.encode_queries(texts)
    want = torch_embedder.encode_queries(texts)
    assert got.shape == want.shape == (len(texts), 384)
    assert float(np.sum(got * want, axis=1).min()) >= 0.99999
    passages = ["iPhoneでeSIMを設定する方法", "How do I change my plan?"]
    got_p = onnx_fp32.encode_passages(passages)
    assert float(np.sum(got_p * torch_embedder.encode_passages(passages), axis=1).min()) >= 0.99999
    assert onnx_fp32.parity is not None and onnx_fp32.parity >= MIN_COSINE[ONNX]


def test_int8_vectors_are_close_and_do_not_depend_on_the_batch(
    onnx_int8: OnnxEmbedder, torch_embedder: CachedEmbedder
) -> None:
    got = onnx_int8.encode_queries(POSTS)
    want = torch_embedder.encode_queries(POSTS)
    cosines = np.sum(got * want, axis=1)
    # Posts at large, not the probes MIN_COSINE holds: min 0.99933 over the 1,497 queries and
    # posts of benchmarks/backend_quality.py (either recipe of INT8_RECIPES on its CPU).
    assert float(cosines.min()) >= 0.999, cosines.min()
    assert onnx_int8.parity is not None and onnx_int8.parity >= MIN_COSINE[ONNX_INT8]
    assert onnx_int8.name == DEFAULT_MODEL  # shares the index and the calibration
    # Activations are quantised per token block: a post's vector is the same alone.
    alone = np.stack([onnx_int8.encode_queries([p])[0] for p in POSTS[:8]])
    assert float(np.sum(alone * got[:8], axis=1).min()) >= 0.99999


@pytest.mark.parametrize("backend", [ONNX, ONNX_INT8])
def test_same_top_k_on_the_seed_content_and_customer_posts(
    backend: str, model_path: Path, torch_embedder: CachedEmbedder
) -> None:
    """Top-3 of every customer post against faq_content/ as with torch (hybrid, as suggest).

    Tolerance: fp32 the same top-3 for every post. int8 (vectors within cosine 0.999 of
    torch's) moves near-ties of the fused score: the same top-1 for all but at most 5 of
    the 80 posts, and hit@1 and hit@3 no more than one post below torch's (measured with
    the per-token recipe: 4 posts with another top-1, hit@1 58 against 56, hit@3 72 = 72;
    docs/scale.md, "Embedding backends").
    """
    articles = read_content_dir(ROOT / "faq_content")
    slugs = {n: a.slug for n, a in enumerate(articles, 1)}
    tokenizer = default_tokenizer()
    onnx = CachedEmbedder(load_onnx_embedder(DEFAULT_MODEL, model_path, backend=backend))
    ref = content_index(articles, torch_embedder, tokenizer, IndexRecipe())
    alt = content_index(articles, onnx, tokenizer, IndexRecipe())
    differ_top1 = differ_top3 = 0
    hits = {"ref@1": 0, "ref@3": 0, "alt@1": 0, "alt@3": 0}
    for post, case in zip(POSTS, CASES, strict=True):
        want, got = _ranked(ref, slugs, post, 3), _ranked(alt, slugs, post, 3)
        differ_top1 += want[:1] != got[:1]
        differ_top3 += want != got
        for tag, ranked in (("ref", want), ("alt", got)):
            hits[f"{tag}@1"] += ranked[:1] == [case["expect"]]
            hits[f"{tag}@3"] += case["expect"] in ranked
    report = f"{backend}: top-1 differs for {differ_top1}, top-3 for {differ_top3}; {hits}"
    print(report)
    if backend == ONNX:
        assert differ_top3 == 0, report
    else:
        assert differ_top1 <= 5, report
        assert hits["alt@1"] >= hits["ref@1"] - 1, report
        assert hits["alt@3"] >= hits["ref@3"] - 1, report


def test_threads_get_their_own_session_sharing_the_weights(onnx_int8: OnnxEmbedder) -> None:
    text = ["eSIMの設定方法を教えてください"]
    default = onnx_int8.encode_queries(text)
    seen: list[Any] = []

    def one_thread() -> None:
        onnx_int8.set_threads(1)
        seen.append(onnx_int8.encode_queries(text))

    worker = threading.Thread(target=one_thread)
    worker.start()
    worker.join()
    assert 1 in onnx_int8.sessions and onnx_int8.threads in onnx_int8.sessions
    np.testing.assert_allclose(seen[0], default, atol=1e-5)
    threads, set_threads = model_threads(CachedEmbedder(onnx_int8))
    assert threads == onnx_int8.threads
    assert set_threads == onnx_int8.set_threads


def test_many_batches_run_at_once_on_single_threaded_sessions(
    model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An index build's batches run in parallel, one single-threaded session per thread,
    and give the same vectors, in the same order, as one batch after the other."""
    embedder = load_onnx_embedder(DEFAULT_MODEL, model_path, backend=ONNX_INT8, threads=2)
    embedder.batch_size = 4
    texts = [f"{p} ({n})" for n, p in enumerate(POSTS[:30])]
    calls: list[tuple[str, int, int]] = []
    run = embedder._run_tokens

    def spy(rows: list[list[int]], threads: int) -> Any:
        calls.append((threading.current_thread().name, threads, len(rows)))
        return run(rows, threads)

    monkeypatch.setattr(embedder, "_run_tokens", spy)
    embedder.set_threads(2)
    parallel = embedder.encode_passages(texts)
    assert len(calls) == 8 and all(t == 1 for _, t, _ in calls)
    assert all(name.startswith("faqloop-encode") for name, _, _ in calls)
    assert len({name for name, _, _ in calls}) == 2
    calls.clear()
    embedder.set_threads(1)
    one_by_one = embedder.encode_passages(texts)
    assert len(calls) == 8 and {name for name, _, _ in calls} == {threading.current_thread().name}
    np.testing.assert_allclose(parallel, one_by_one, atol=1e-6)
    # each row is its own text's vector, not another's
    single = embedder.encode_passages([texts[17]])
    np.testing.assert_allclose(parallel[17], single[0], atol=1e-5)


def _record_widths(embedder: OnnxEmbedder, monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """The token counts of each model call's rows, appended as `embedder` runs."""
    widths: list[list[int]] = []
    run = embedder._run_tokens

    def spy(rows: list[list[int]], threads: int) -> Any:
        widths.append([len(r) for r in rows])
        return run(rows, threads)

    monkeypatch.setattr(embedder, "_run_tokens", spy)
    return widths


def test_batches_are_cut_by_token_count(
    onnx_int8: OnnxEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Texts are batched by their number of tokens, not characters: Japanese and English of
    the same length in characters differ several times in tokens, and a batch padded to its
    longest text would waste most of its work. Each text's vector is its own either way."""
    ja = ["料金プランの変更はマイページからいつでも申し込めます", "解約手数料はいくらですか"]
    en = ["Where can I download last month's invoice as a PDF?", "How do I reset my password"]
    texts = [t for pair in zip(ja * 3, en * 3, strict=True) for t in pair]
    widths = _record_widths(onnx_int8, monkeypatch)
    monkeypatch.setattr(onnx_int8, "batch_size", 3)
    onnx_int8.set_threads(1)
    vectors = onnx_int8.encode_passages(texts)
    flat = [w for batch in widths for w in batch]
    assert flat == sorted(flat, reverse=True)  # by tokens, longest first
    for text, vector in zip(texts, vectors, strict=True):
        np.testing.assert_allclose(vector, onnx_int8.encode_passages([text])[0], atol=1e-5)


def test_micro_batcher_runs_the_onnx_backend_in_lanes(onnx_fp32: OnnxEmbedder) -> None:
    threads, set_threads = model_threads(onnx_fp32)
    batcher = BatchingEmbedder(
        onnx_fp32, lanes=2, threads=max(2, threads), max_wait_ms=2, set_threads=set_threads
    )
    texts = [f"{p} ({i})" for i, p in enumerate(POSTS[:24])]
    out: dict[int, Any] = {}

    def call(i: int) -> None:
        out[i] = batcher.encode_queries([texts[i]])[0]

    workers = [threading.Thread(target=call, args=(i,)) for i in range(len(texts))]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    batcher.close()
    want = onnx_fp32.encode_queries(texts)
    got = np.stack([out[i] for i in range(len(texts))])
    assert float(np.sum(got * want, axis=1).min()) >= 0.99999
    assert batcher.stats.requests == len(texts)


def test_a_tampered_file_falls_back_to_torch(
    model_path: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = _copy_with_links(model_path, tmp_path / "models" / DEFAULT_MODEL)
    target = folder / ONNX_FILES[ONNX_INT8]
    target.unlink()
    data = bytearray((model_path / ONNX_FILES[ONNX_INT8]).read_bytes()[:4096])
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(OnnxUnusable, match="checksum"):
        load_onnx_embedder(DEFAULT_MODEL, folder, backend=ONNX_INT8)
    with caplog.at_level(logging.WARNING, logger="indexer.embedding.encoders"):
        embedder = load_embedder(DEFAULT_MODEL, folder.parent, backend=ONNX_INT8)
    assert backend_of(embedder) == "torch"
    assert embedder.name == DEFAULT_MODEL
    assert any("falling back to torch" in r.getMessage() for r in caplog.records)
    assert embedder.encode_queries(["eSIM"]).shape == (1, 384)


def test_the_build_keeps_the_first_int8_recipe_that_holds_and_rebuilds_the_shipped_file(
    model_path: Path, tmp_path: Path
) -> None:
    """The build's int8 step, on the built fp32 file:

    - a recipe whose vectors miss MIN_COSINE on this CPU (2-bit weights) is passed over for
      the next; when none holds, the build fails naming each recipe's cosine and leaves no
      int8 file;
    - the recipe on record rebuilds the shipped int8 file byte for byte, which loads and
      passes the check at load: the code and the file in use agree, and the graph survives
      ONNX Runtime's fusions (one Mul by the product of the scales gave a cosine of 0.74).
    """
    from indexer.embedding.onnx_export import (
        INT8_RECIPE,
        INT8_RECIPES,
        OnnxExportError,
        quantize_first_that_holds,
    )

    manifest = json.loads((model_path / MARKER_NAME).read_text())
    kept = manifest["onnx"]["quantization"]
    assert kept in INT8_RECIPES  # else: make model rebuilds it
    reference = manifest["onnx"]["reference"]
    folder = _copy_with_links(model_path, tmp_path / DEFAULT_MODEL)
    target = folder / ONNX_FILES[ONNX_INT8]
    target.unlink()
    coarse = {**INT8_RECIPE, "weight_bits": 2, "smooth_alpha": 0.0}
    with pytest.raises(OnnxExportError, match=r"2-bit weights: probe cosine 0\.\d+"):
        quantize_first_that_holds(folder, reference, (coarse,))
    assert not target.exists()
    recipe, cosine = quantize_first_that_holds(folder, reference, (coarse, kept))
    assert recipe == kept
    assert cosine >= MIN_COSINE[ONNX_INT8]
    assert sha256_file(target) == manifest["onnx"]["files"][ONNX_INT8]["sha256"]
    rebuilt = load_onnx_embedder(DEFAULT_MODEL, folder, backend=ONNX_INT8)
    assert rebuilt.parity is not None and rebuilt.parity >= MIN_COSINE[ONNX_INT8]


def test_pair_bounded_weights_cannot_saturate_an_int16_pair_sum(
    model_path: Path, tmp_path: Path
) -> None:
    """The pair-bounded recipe: any two neighbouring s8 weights along K sum to at most 128 in
    magnitude (255 x 128 < 32,767, the int16 sum of AVX2's u8 x s8 kernel), and the file's
    vectors still pass the check at load, on a CPU with VNNI or without."""
    import onnx
    from onnx import numpy_helper

    from indexer.embedding.onnx_export import PER_TOKEN_PAIRED_RECIPE, quantize_first_that_holds

    manifest = json.loads((model_path / MARKER_NAME).read_text())
    folder = _copy_with_links(model_path, tmp_path / DEFAULT_MODEL)
    (folder / ONNX_FILES[ONNX_INT8]).unlink()
    _, cosine = quantize_first_that_holds(
        folder, manifest["onnx"]["reference"], (PER_TOKEN_PAIRED_RECIPE,)
    )
    assert cosine >= MIN_COSINE[ONNX_INT8]
    weights = [
        numpy_helper.to_array(i).astype(np.int32)
        for i in onnx.load(str(folder / ONNX_FILES[ONNX_INT8])).graph.initializer
        if i.name.endswith("_q8") and i.data_type == onnx.TensorProto.INT8 and len(i.dims) == 2
    ]
    assert len(weights) == 12 * 6  # Q, K, V, attention output, FFN in and out per layer
    worst = max(int((np.abs(w[0::2]) + np.abs(w[1::2])).max()) for w in weights)
    assert 120 <= worst <= 128, worst


def test_a_build_whose_int8_file_fails_on_this_cpu_is_not_reused(
    model_path: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`faqloop models build` reuses a finished folder only when its int8 file passes the
    check at load on this CPU: one carried from a CPU with other int8 kernels (its vectors off
    the recorded torch ones here) is rebuilt instead of served on torch."""
    from indexer.embedding.model_build import int8_holds_here

    assert int8_holds_here(_copy_with_links(model_path, tmp_path / "a" / DEFAULT_MODEL))
    manifest = json.loads((model_path / MARKER_NAME).read_text())
    ref = np.asarray(manifest["onnx"]["reference"]["query"], dtype=np.float64)
    ref[0] += np.random.default_rng(1).normal(0, 0.01, ref.shape[1])
    manifest["onnx"]["reference"]["query"] = ref.tolist()
    carried = _copy_with_links(model_path, tmp_path / "b" / DEFAULT_MODEL, manifest=manifest)
    with caplog.at_level(logging.WARNING, logger="indexer.embedding.model_build"):
        assert not int8_holds_here(carried)
    assert "rebuilding it" in caplog.text
    manifest["onnx"] = None  # built without ONNX files: nothing to check
    plain = _copy_with_links(model_path, tmp_path / "c" / DEFAULT_MODEL, manifest=manifest)
    assert int8_holds_here(plain)


def test_vectors_beyond_the_tolerance_are_refused(model_path: Path, tmp_path: Path) -> None:
    """Checksums fine, but the torch vectors on record disagree: the probes catch it."""
    manifest = json.loads((model_path / MARKER_NAME).read_text())
    ref = np.asarray(manifest["onnx"]["reference"]["query"], dtype=np.float64)
    rng = np.random.default_rng(0)
    ref[2] += rng.normal(0, 0.01, ref.shape[1])  # cosine ~0.98 for one probe
    manifest["onnx"]["reference"]["query"] = ref.tolist()
    folder = _copy_with_links(model_path, tmp_path / DEFAULT_MODEL, manifest=manifest)
    for backend in (ONNX, ONNX_INT8):
        with pytest.raises(OnnxUnusable, match="differ from the torch model's"):
            load_onnx_embedder(DEFAULT_MODEL, folder, backend=backend)


def test_missing_files_or_an_old_build_are_refused(model_path: Path, tmp_path: Path) -> None:
    folder = _copy_with_links(model_path, tmp_path / "a" / DEFAULT_MODEL)
    (folder / ONNX_FILES[ONNX]).unlink()
    with pytest.raises(OnnxUnusable, match="missing"):
        load_onnx_embedder(DEFAULT_MODEL, folder, backend=ONNX)
    manifest = json.loads((model_path / MARKER_NAME).read_text())
    del manifest["onnx"]
    old = _copy_with_links(model_path, tmp_path / "b" / DEFAULT_MODEL, manifest=manifest)
    with pytest.raises(OnnxUnusable, match="built without ONNX"):
        load_onnx_embedder(DEFAULT_MODEL, old, backend=ONNX)


def test_services_serve_with_the_configured_backend(settings: Settings, model_path: Path) -> None:
    """build_services loads FAQLOOP_EMBED_BACKEND's model and gives its lanes ORT threads."""
    from api.state import build_services

    configured = settings.model_copy(update={"embed_backend": ONNX_INT8, "torch_threads": 2})
    services = build_services(configured)
    try:
        batcher = services.embedder
        assert isinstance(batcher, BatchingEmbedder)
        assert backend_of(batcher) == ONNX_INT8
        inner = batcher.inner.inner  # BatchingEmbedder -> CachedEmbedder -> OnnxEmbedder
        assert isinstance(inner, OnnxEmbedder) and inner.threads == 2
        assert batcher.threads == 2 and batcher.lanes == 2
        assert batcher.encode_queries(["eSIMが開通しない"]).shape == (1, 384)
    finally:
        services.close()


def test_a_micro_batch_of_long_and_short_posts_runs_as_cheaper_batches(
    onnx_int8: OnnxEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A micro-batch mixes long and short posts: the short ones are not padded to the long
    ones' width (`cut_batches`), and every post still gets its own vector."""
    long = [f"{POSTS[i % len(POSTS)]} {POSTS[(i + 1) % len(POSTS)]} ({i})" for i in range(4)]
    short = [f"eSIM? ({i})" for i in range(12)]
    texts = [t for pair in itertools.zip_longest(long, short) for t in pair if t is not None]
    widths = _record_widths(onnx_int8, monkeypatch)
    onnx_int8.set_threads(1)
    vectors = onnx_int8.encode_queries(texts)
    assert len(widths) >= 2  # cut where the width drops
    assert sum(len(w) for w in widths) == len(texts)
    padded = sum(len(w) * max(w) for w in widths)
    assert padded < len(texts) * max(max(w) for w in widths)
    widths.clear()
    for text, vector in zip(texts, vectors, strict=True):
        np.testing.assert_allclose(vector, onnx_int8.encode_queries([text])[0], atol=1e-5)
