"""The embedding model on ONNX Runtime: a thin encoder over the exported graph.

`faqloop models build` exports the sentence-transformers model (transformer, mean pooling and
normalisation in one graph) to ONNX, fp32 and int8 (`indexer/embedding/onnx_export.py`), and
records in the build manifest each file's sha256 and the torch model's vectors of a fixed set
of probe texts. This module loads one of those files and encodes with the model folder's own
`tokenizer.json` and the same prompts ("query: ", "passage: "), as sentence-transformers does
(prompt + text, stripped, truncated to the model's max_seq_length, padded to the longest).

Why not sentence-transformers' own `backend="onnx"`: its extra needs optimum-onnx, which pins
transformers < 4.58 and would downgrade the pinned stack (docs/scale.md, "Backends").

`load_onnx_embedder` refuses (raises `OnnxUnusable`) when a file is missing, its checksum
differs from the manifest, the session cannot be built, or the session's vectors of the
probes are further from the torch model's than `MIN_COSINE` allows; the caller then falls
back to torch with a warning (`indexer.embedding.encoders.load_embedder`). The check needs
no torch: the reference vectors come from the manifest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from indexer.embedding.memory import TRIM_INTERVAL, MemoryTrimmer
from indexer.embedding.telemetry import observe_batch_size

Vectors = npt.NDArray[np.float32]

log = logging.getLogger(__name__)

TORCH = "torch"
ONNX = "onnx"
ONNX_INT8 = "onnx-int8"
# Values of FAQLOOP_EMBED_BACKEND.
BACKENDS = (TORCH, ONNX, ONNX_INT8)
ONNX_BACKENDS = (ONNX, ONNX_INT8)
# Where each ONNX variant lives inside the model folder.
ONNX_FILES = {ONNX: "onnx/model.onnx", ONNX_INT8: "onnx/model-int8.onnx"}
# The build manifest (indexer.embedding.model_build.MARKER_NAME; a test keeps them equal).
BUILD_MANIFEST = "faqloop-build.json"
# Smallest cosine to the torch model's vector that every probe must reach at build and at
# load. fp32 differs from torch by round-off only (measured >= 0.999999); int8 by its
# quantisation (measured at build, recorded in the manifest; docs/scale.md, "Backends"):
# 0.9997-0.9999 for the shipped recipes, whose ranking stays within the quality budget, while
# 0.99934 (7-bit weights) cost 0.88 points of JSTS hybrid MRR@10 and 0.99889 (8-bit weights
# saturating on an AVX2 CPU) more, so 0.9995 keeps the budget's files and refuses the others.
MIN_COSINE = {ONNX: 0.9999, ONNX_INT8: 0.9995}
# What one model call costs beyond its tokens, in tokens: the time of a call is about
# CALL_COST_TOKENS + batch × width token-times (width: the batch's longest text, padding
# included). Fitted on the int8 file, one thread, batches of 1-16 texts of 8-48 tokens:
# 3.1 ms per call + 0.18 ms per token, 17 tokens (docs/scale.md, "Batches cut by cost").
CALL_COST_TOKENS = 16
# Every backend reports the torch model's name: their vectors agree with torch's to the
# cosine MIN_COSINE checks at load (int8: measured >= 0.9997 on the probes, its ranking
# figures in docs/scale.md, "Backends"), so an index and the confidence calibration fitted
# with one serve the others. A recipe further from torch would need its own name (an index
# and a calibration of its own): give it a suffix here.
NAME_SUFFIX = {TORCH: "", ONNX: "", ONNX_INT8: ""}

# Texts the ONNX session is checked on against the torch model: Japanese and English,
# queries (posts) and passages (FAQ texts), short to long.
PROBES: dict[str, tuple[str, ...]] = {
    "query": (
        "eSIMが開通しない…QRコード読んだのに",
        "解約手数料はいくらかかりますか？",
        "パスワードを忘れてログインできません。メールアドレスも変わってしまいました。",
        "How do I reset my password?",
        "my parcel never arrived and tracking has said 'in transit' for two weeks, what now",
        "hi",
    ),
    "passage": (
        "iPhoneでeSIMを設定する方法",
        "料金プランの変更は、マイページの「契約内容」からいつでも申し込めます。変更は翌月1日に反映されます。",
        "Where can I download last month's invoice?",
        "Invoices are available in your account under Billing. Each invoice can be downloaded "
        "as a PDF for twelve months after it was issued; older ones are sent on request.",
    ),
}


class OnnxUnusable(RuntimeError):
    """The ONNX model cannot stand in for the torch model (the reason is the message)."""


def model_name(base: str, backend: str) -> str:
    """The name an embedder of `backend` reports (see NAME_SUFFIX)."""
    return base + NAME_SUFFIX[backend]


def check_backend(backend: str) -> str:
    """`backend` if it is one of BACKENDS, else ValueError naming the choices."""
    if backend not in BACKENDS:
        raise ValueError(
            f"unknown embedding backend {backend!r}; choose one of {', '.join(BACKENDS)}"
        )
    return backend


def default_threads() -> int:
    """Cores this process may run on (the intra-op threads when none are configured)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def sha256_file(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def read_manifest(path: Path) -> dict[str, Any]:
    """The model folder's build manifest, or OnnxUnusable."""
    try:
        manifest = json.loads((path / BUILD_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise OnnxUnusable(f"no readable build manifest in {path} ({exc})") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("onnx"), dict):
        raise OnnxUnusable(
            f"the model in {path} was built without ONNX files; run `faqloop models build --force`"
        )
    return manifest


def _session_options(threads: int) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # A session with a pool (the lone post's, with every thread) lets its workers spin
    # between the graph's ~300 small operators: waking a sleeping worker for each cost
    # ~1 ms of a 5 ms post (docs/scale.md, "Threads"). The pool is used at low load only;
    # under load the lanes run single-threaded sessions, which have no pool to spin.
    spin = "1" if threads > 1 else "0"
    opts.add_session_config_entry("session.intra_op.allow_spinning", spin)
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return opts


class OnnxEmbedder:
    """Sentence embeddings from an exported ONNX graph on ONNX Runtime (thread-safe).

    Threads: ONNX Runtime fixes a session's intra-op threads when it is built, so there is
    one session per thread count asked for (the micro-batcher asks for `threads` for a lone
    post and `threads // lanes` per lane under load: two sessions on 2 cores). The sessions
    share the large weights (the token embedding table above all), so a second session
    costs the per-session copies of the packed matrix weights only. `set_threads(n)` sets
    the count for the calling thread's next calls, as torch's does.
    """

    def __init__(
        self,
        name: str,
        path: Path,
        *,
        backend: str,
        threads: int | None = None,
        batch_size: int = 32,
    ) -> None:
        if backend not in ONNX_BACKENDS:
            raise ValueError(f"not an ONNX backend: {backend!r}")
        try:
            import onnxruntime  # noqa: F401
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise OnnxUnusable(f"onnxruntime is not installed ({exc})") from exc
        self.base_name = name
        self.name = model_name(name, backend)
        self.backend = backend
        self.path = path
        self.batch_size = batch_size
        self.threads = threads or default_threads()
        self.file = path / ONNX_FILES[backend]
        st_config = _read_json(path / "sentence_bert_config.json")
        prompts = dict(_read_json(path / "config_sentence_transformers.json").get("prompts") or {})
        self._query_prompt = str(prompts.get("query", ""))
        self._passage_prompt = str(prompts.get("passage", ""))
        tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        # Padding as the model folder's tokenizer config says (<pad>, id 1 for XLM-R).
        pad = _read_json(path / "tokenizer_config.json").get("pad_token")
        pad_token = pad if isinstance(pad, str) else "<pad>"
        pad_id = tokenizer.token_to_id(pad_token)
        if pad_id is None:
            raise OnnxUnusable(f"the tokenizer has no padding token {pad_token!r}")
        tokenizer.enable_truncation(int(st_config.get("max_seq_length", 512)))
        # No padding here: _encode pads each batch itself, after sorting by token count.
        # Settings are fixed here; encode_batch itself only reads the tokenizer.
        self._tokenizer = tokenizer
        self._pad_id = int(pad_id)
        self._local = threading.local()
        self._sessions: dict[int, Any] = {}
        self._shared: dict[str, Any] = {}
        self._sessions_lock = threading.Lock()
        self.trimmer = MemoryTrimmer(TRIM_INTERVAL)
        # Smallest probe cosine to the torch model, once checked (load_onnx_embedder).
        self.parity: float | None = None
        self._shared = self._large_initializers()
        probe = self._run_tokens([self._tokenizer.encode("query: x").ids], self.threads)
        self.dim = int(probe.shape[1])

    # -- sessions --------------------------------------------------------------------------
    def _large_initializers(self) -> dict[str, Any]:
        """The graph's big weights as OrtValues every session is given instead of its own."""
        import onnx
        import onnxruntime as ort
        from onnx import numpy_helper

        try:
            model = onnx.load(str(self.file))
        except Exception as exc:
            raise OnnxUnusable(f"cannot read {self.file} ({exc})") from exc
        shared: dict[str, Any] = {}
        for init in model.graph.initializer:
            if int(np.prod(init.dims)) >= 1_000_000:
                array = np.ascontiguousarray(numpy_helper.to_array(init))
                shared[init.name] = ort.OrtValue.ortvalue_from_numpy(array)
        return shared

    def _session(self, threads: int) -> Any:
        session = self._sessions.get(threads)
        if session is not None:
            return session
        import onnxruntime as ort

        with self._sessions_lock:
            session = self._sessions.get(threads)
            if session is None:
                opts = _session_options(threads)
                for key, value in self._shared.items():
                    opts.add_initializer(key, value)
                try:
                    session = ort.InferenceSession(
                        str(self.file), opts, providers=["CPUExecutionProvider"]
                    )
                except Exception as exc:
                    raise OnnxUnusable(f"ONNX Runtime cannot load {self.file} ({exc})") from exc
                self._sessions[threads] = session
        return session

    @property
    def sessions(self) -> dict[int, Any]:
        """The sessions built so far, by intra-op thread count."""
        return dict(self._sessions)

    def set_threads(self, n: int) -> None:
        """Intra-op threads for the calling thread's next model calls."""
        self._local.threads = max(1, int(n))

    # -- encoding --------------------------------------------------------------------------
    def _run_tokens(self, rows: list[list[int]], threads: int) -> Vectors:
        """Vectors of token id rows, right-padded to the longest (as the tokenizer pads)."""
        width = max(len(r) for r in rows)
        ids = np.full((len(rows), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        out = self._session(threads).run(None, {"input_ids": ids, "attention_mask": mask})[0]
        return np.asarray(out, dtype=np.float32)

    def _encode(self, texts: list[str], prompt: str) -> Vectors:
        """Tokenised, sorted by token count and cut into the cheapest batches (`cut_batches`).

        sentence-transformers sorts by characters; by tokens, a batch of Japanese and
        English texts pads far less (a Japanese character is often a token, English ones
        four to a token): on 1,024 texts of the index-build benchmark the padded tokens
        fell from 1.52 to 1.10 per real one, and one thread went from 143 to 204 texts/s.
        With several threads and several batches (an index build), the batches run at
        once, one single-threaded session per thread, instead of one after the other on
        one session's threads: the int8 kernels of one batch of short texts split poorly
        over two intra-op threads (docs/scale.md, "Embedding backends", index build). ONNX
        Runtime releases the GIL while it runs; each text's vector is the same either way
        (it is computed on its own tokens only; padding is masked).
        """
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        threads = getattr(self._local, "threads", self.threads)
        rows = [e.ids for e in self._tokenizer.encode_batch([(prompt + t).strip() for t in texts])]
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))
        out = np.empty((len(rows), self.dim), dtype=np.float32)
        cuts = cut_batches([len(rows[i]) for i in order], self.batch_size, CALL_COST_TOKENS)
        batches = [order[start:end] for start, end in cuts]
        if threads > 1 and len(batches) > 1:
            with ThreadPoolExecutor(min(threads, len(batches)), "faqloop-encode") as pool:
                done = pool.map(lambda b: self._run_tokens([rows[i] for i in b], 1), batches)
                for batch, vectors in zip(batches, done, strict=True):
                    out[batch] = vectors
        else:
            for batch in batches:
                out[batch] = self._run_tokens([rows[i] for i in batch], threads)
        self.trimmer.note_use()
        return out

    def encode_queries(self, texts: list[str]) -> Vectors:
        observe_batch_size(len(texts), "query")
        return self._encode(texts, self._query_prompt)

    def encode_passages(self, texts: list[str]) -> Vectors:
        observe_batch_size(len(texts), "passage")
        return self._encode(texts, self._passage_prompt)

    def encode_probes(self) -> dict[str, Vectors]:
        """The probes' vectors (what the parity check compares with the manifest's)."""
        return {
            "query": self.encode_queries(list(PROBES["query"])),
            "passage": self.encode_passages(list(PROBES["passage"])),
        }


def cut_batches(widths: list[int], max_batch: int, call_cost: float) -> list[tuple[int, int]]:
    """The cheapest way to cut texts, longest first, into batches of at most `max_batch`.

    `widths` are the texts' token counts in descending order; the result is the batches as
    (start, end) index ranges, in order. A batch costs `call_cost` plus its size times its
    first (longest) width: every text is padded to the longest. A micro-batch of posts is
    a mix of short and long (the benchmark's: 22 tokens on average, up to 47), and one
    call padded to the longest did 1.69 padded tokens per real one; cut by cost, 32
    posts take 5-6 calls and one thread encodes 1.5 × the posts per second (docs/scale.md,
    "Batches cut by cost"). Dynamic programming over the sorted widths: the best cut of
    the first i texts is the best of (the best cut of the first j) + one batch j..i.
    """
    n = len(widths)
    best = [0.0] + [float("inf")] * n
    start = [0] * (n + 1)
    for end in range(1, n + 1):
        for first in range(max(0, end - max_batch), end):
            cost = best[first] + call_cost + (end - first) * widths[first]
            if cost <= best[end]:  # ties: the later start, so batches fill in order
                best[end], start[end] = cost, first
    cuts: list[tuple[int, int]] = []
    end = n
    while end > 0:
        cuts.append((start[end], end))
        end = start[end]
    return cuts[::-1]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise OnnxUnusable(f"cannot read {path} ({exc})") from exc
    return data if isinstance(data, dict) else {}


def probe_cosines(embedder: OnnxEmbedder, reference: dict[str, Any]) -> npt.NDArray[np.float64]:
    """Cosine of each probe's ONNX vector to the torch vector recorded at build time."""
    got = embedder.encode_probes()
    cosines = []
    for kind in ("query", "passage"):
        want = np.asarray(reference.get(kind), dtype=np.float64)
        have = got[kind].astype(np.float64)
        if want.shape != have.shape:
            raise OnnxUnusable(
                f"the manifest's {kind} probe vectors have shape {want.shape}, "
                f"the model gives {have.shape}"
            )
        want /= np.linalg.norm(want, axis=1, keepdims=True)
        cosines.append(np.sum(want * have, axis=1) / np.linalg.norm(have, axis=1))
    return np.concatenate(cosines)


def load_onnx_embedder(
    name: str, path: Path, *, backend: str, threads: int | None = None
) -> OnnxEmbedder:
    """The ONNX variant `backend` of the built model at `path`, checked; else OnnxUnusable.

    Checks, in order: the manifest lists the file, the file's sha256 and the tokenizer's
    match the manifest, ONNX Runtime builds a session, the probes were encoded with this
    build's probe texts, and every probe's cosine to the torch vector is >= MIN_COSINE.
    """
    check_backend(backend)
    if backend not in ONNX_BACKENDS:
        raise ValueError(f"not an ONNX backend: {backend!r}")
    manifest = read_manifest(path)
    onnx_info: dict[str, Any] = manifest["onnx"]
    entry = (onnx_info.get("files") or {}).get(backend)
    if not isinstance(entry, dict):
        raise OnnxUnusable(f"the build manifest lists no {backend} file")
    file = path / str(entry.get("path", ""))
    if not file.is_file():
        raise OnnxUnusable(f"{file} is missing; run `faqloop models build --force`")
    if sha256_file(file) != entry.get("sha256"):
        raise OnnxUnusable(f"{file} does not match its checksum in the build manifest")
    tokenizer_sha = onnx_info.get("tokenizer_sha256")
    if tokenizer_sha and sha256_file(path / "tokenizer.json") != tokenizer_sha:
        raise OnnxUnusable("tokenizer.json does not match its checksum in the build manifest")
    probes = onnx_info.get("probes") or {}
    if {k: tuple(v) for k, v in probes.items()} != PROBES:
        raise OnnxUnusable("the build's probe texts differ from this version's; rebuild the model")
    embedder = OnnxEmbedder(name, path, backend=backend, threads=threads)
    cosines = probe_cosines(embedder, onnx_info.get("reference") or {})
    worst = float(cosines.min())
    if not np.isfinite(worst) or worst < MIN_COSINE[backend]:
        raise OnnxUnusable(
            f"{backend} vectors differ from the torch model's: probe cosine {worst:.6f} "
            f"< {MIN_COSINE[backend]}"
            + (
                " (int8 kernels differ between CPUs: a file built on another machine is "
                "rebuilt for this one by `faqloop models build --force`)"
                if backend == ONNX_INT8
                else ""
            )
        )
    embedder.parity = worst
    log.info("embedding backend %s: probe cosine to torch >= %.6f", backend, worst)
    return embedder
