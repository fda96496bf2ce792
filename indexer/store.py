"""Index generations on disk: a directory per generation, a manifest, an atomic CURRENT."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from indexer.embedding.encoders import Embedder, backend_of
from indexer.lexical.tokenizer import Tokenizer
from indexer.retrieval.hybrid import FusionConfig, HybridIndex

MANIFEST = "manifest.json"
CURRENT = "CURRENT"
_FILES = ("vectors.faiss", "docs.jsonl", "entries.jsonl")


class IndexUnusable(Exception):
    """The saved index is missing, corrupt, or built with another model or format."""


@dataclass(frozen=True)
class Manifest:
    format: int
    model: str
    dim: int
    generation: int
    last_change_id: int
    entries: int
    docs: int
    created_at: float
    checksums: dict[str, str]
    # Free-form description of how the texts were chosen (so a config change forces a rebuild).
    recipe: str
    # The runtime that computed the vectors (torch, onnx, onnx-int8; "" in older manifests).
    # Informational: the backends share an index (their vectors agree within the cosine
    # checked at load, indexer/embedding/onnx_backend.py), so a different one is not refused.
    backend: str = ""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class IndexStore:
    """Keeps index generations under `root`; CURRENT names the live one.

    A generation is written to a temporary directory, fsynced, renamed into place, and only
    then does CURRENT (replaced atomically) point at it: a crash leaves the old generation or
    the new one, never a mix.
    """

    def __init__(self, root: Path, *, keep: int = 2) -> None:
        self.root = root
        self.keep = keep

    def current_manifest(self) -> Manifest | None:
        """The manifest of the live generation, or None when there is none readable."""
        try:
            name = (self.root / CURRENT).read_text().strip()
            data = json.loads((self.root / name / MANIFEST).read_text())
            return Manifest(**data)
        except (OSError, ValueError, TypeError):
            return None

    def save(
        self, index: HybridIndex, *, generation: int, last_change_id: int, recipe: str
    ) -> Manifest:
        """Write `index` as a new generation and make it current."""
        self.root.mkdir(parents=True, exist_ok=True)
        name = f"gen-{generation:08d}"
        tmp = self.root / f".{name}.tmp-{os.getpid()}-{time.monotonic_ns()}"
        tmp.mkdir()
        try:
            counts = index.save(tmp)
            checksums = {f: _sha256(tmp / f) for f in _FILES}
            manifest = Manifest(
                format=HybridIndex.FORMAT,
                model=index.embedder.name,
                dim=index.embedder.dim,
                generation=generation,
                last_change_id=last_change_id,
                entries=counts["entries"],
                docs=counts["docs"],
                created_at=time.time(),
                checksums=checksums,
                recipe=recipe,
                backend=backend_of(index.embedder),
            )
            (tmp / MANIFEST).write_text(json.dumps(asdict(manifest), indent=2))
            for f in (*_FILES, MANIFEST):
                with (tmp / f).open("rb") as fh:
                    os.fsync(fh.fileno())
            _fsync_dir(tmp)  # the files' names, not only their bytes
            final = self.root / name
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            # The rename must be on disk before CURRENT can point at it (power loss).
            _fsync_dir(self.root)
            pointer = self.root / f".{CURRENT}.tmp-{os.getpid()}"
            pointer.write_text(name + "\n")
            with pointer.open("rb") as fh:
                os.fsync(fh.fileno())
            os.replace(pointer, self.root / CURRENT)
            _fsync_dir(self.root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._prune(name)
        return manifest

    def load(
        self,
        embedder: Embedder,
        tokenizer: Tokenizer,
        *,
        recipe: str,
        fusion: FusionConfig | None = None,
    ) -> tuple[HybridIndex, Manifest]:
        """Load the live generation, checking model, format, recipe and checksums."""
        manifest = self.current_manifest()
        if manifest is None:
            raise IndexUnusable("no saved index")
        problems = self._check(manifest, embedder, recipe)
        if problems:
            raise IndexUnusable("; ".join(problems))
        directory = self.root / f"gen-{manifest.generation:08d}"
        try:
            index = HybridIndex.load(directory, embedder, tokenizer, fusion)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise IndexUnusable(f"cannot read index: {exc}") from exc
        if index.doc_count != manifest.docs or index.entry_count != manifest.entries:
            raise IndexUnusable("index counts disagree with its manifest")
        return index, manifest

    def _check(self, manifest: Manifest, embedder: Embedder, recipe: str) -> list[str]:
        problems = []
        if manifest.format != HybridIndex.FORMAT:
            problems.append(f"format {manifest.format} != {HybridIndex.FORMAT}")
        if manifest.model != embedder.name or manifest.dim != embedder.dim:
            problems.append(
                f"built with model {manifest.model!r} ({manifest.dim}-d), "
                f"configured {embedder.name!r} ({embedder.dim}-d)"
            )
        if manifest.recipe != recipe:
            problems.append("built with other indexing settings")
        directory = self.root / f"gen-{manifest.generation:08d}"
        for f, digest in manifest.checksums.items():
            path = directory / f
            if not path.exists():
                problems.append(f"{f} is missing")
            elif _sha256(path) != digest:
                problems.append(f"{f} is corrupt (checksum mismatch)")
        return problems

    def _prune(self, current: str) -> None:
        gens = sorted(p for p in self.root.glob("gen-*") if p.is_dir())
        for old in gens[: max(0, len(gens) - self.keep)]:
            if old.name != current:
                shutil.rmtree(old, ignore_errors=True)
        for tmp in self.root.glob(".gen-*.tmp-*"):
            # Leftovers of a crashed writer; a live writer's tmp is younger than a minute.
            if time.time() - tmp.stat().st_mtime > 60:
                shutil.rmtree(tmp, ignore_errors=True)

    def describe(self) -> dict[str, Any]:
        """The live manifest as a dict (for health and CLI output)."""
        m = self.current_manifest()
        return asdict(m) if m else {}
