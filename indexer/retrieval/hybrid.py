"""The hybrid index: dense vectors (FAISS) and BM25 over FAQ entries, fused per entry."""

from __future__ import annotations

import json
import math
import statistics
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from indexer.embedding.encoders import Embedder, Vectors
from indexer.lexical.bm25 import LexicalIndex
from indexer.lexical.tokenizer import Tokenizer
from indexer.vectors import FaissIndex

Mode = Literal["lexical", "dense", "hybrid"]
MODES: tuple[Mode, ...] = ("lexical", "dense", "hybrid")


@dataclass(frozen=True)
class EntryDocs:
    """What one entry contributes to the index."""

    entry_id: int
    language: str
    # Each text gets its own vector; the entry's dense score is the best of them.
    dense_texts: tuple[str, ...]
    # One BM25 document per entry (title, phrasings and answer together).
    lexical_text: str
    # Per dense text, what is taken off its cosine before it competes for the entry's
    # score (a chunk of a long answer counts less than the question); empty: all 0.
    dense_discounts: tuple[float, ...] = ()

    def discount(self, position: int) -> float:
        """The discount of the dense text at `position`."""
        return self.dense_discounts[position] if position < len(self.dense_discounts) else 0.0


@dataclass(frozen=True)
class FusionConfig:
    """How the two rankings are combined (chosen by measurement, see docs/retrieval.md).

    "rrf": weighted reciprocal-rank fusion. "linear": the dense cosine, plus
    `lexical_weight` times the BM25 score relative to the query's best BM25 score, plus
    `coverage_weight` times the IDF-weighted share of the query's terms the entry contains
    (absolute, so a weak best lexical match counts little).
    """

    method: Literal["rrf", "linear"] = "linear"
    rrf_k: float = 60.0
    dense_weight: float = 1.0
    # Lexical evidence as a tie-breaker between close cosines helps; a larger weight lets
    # word overlap override meaning (docs/retrieval.md).
    lexical_weight: float = 0.02
    coverage_weight: float = 0.02
    # Per-language (lexical_weight, coverage_weight) overriding the two above. Japanese
    # paraphrases share fewer surface words (kana/kanji spellings, synonyms Sudachi does
    # not normalise), so BM25 relative to the best match misleads more often: a small BM25
    # weight plus IDF coverage keeps the gain on customer posts without losing to dense on
    # JSTS (docs/retrieval.md).
    language_weights: tuple[tuple[str, float, float], ...] = (("ja", 0.005, 0.015),)
    # How many entries of each ranking enter the fusion.
    depth: int = 50


@dataclass
class Hit:
    """One entry in a ranking, with the evidence behind its place."""

    entry_id: int
    score: float
    dense: float = math.nan  # best cosine among the entry's texts
    lexical: float = 0.0  # BM25 score
    dense_rank: int | None = None
    lexical_rank: int | None = None
    matched_text: str = ""
    # IDF-weighted share of the query's terms found in the entry (absolute lexical evidence).
    coverage: float = 0.0


@dataclass
class SearchResult:
    """A ranking plus the query-level signals the confidence model uses."""

    hits: list[Hit]
    mode: Mode
    query_terms: list[str] = field(default_factory=list)
    # Median cosine of the dense candidates: how similar the query is to "anything" here.
    # Off-topic posts sit close to everything (embedding anisotropy) with no clear peak.
    dense_background: float = math.nan
    # The language the search was restricted to (the post's), when it was.
    language: str | None = None
    # The query's vector (None for a lexical search): a second search of the same text, in
    # other languages, passes it back instead of running the model again.
    query_vector: Vectors | None = field(default=None, repr=False, compare=False)


class HybridIndex:
    """FAISS + BM25 over FAQ entries; thread-safe; saved to and loaded from a directory."""

    FORMAT = 1

    def __init__(
        self, embedder: Embedder, tokenizer: Tokenizer, fusion: FusionConfig | None = None
    ) -> None:
        self.embedder = embedder
        self.tokenizer = tokenizer
        self.fusion = fusion or FusionConfig()
        self._vectors = FaissIndex(embedder.dim)
        self._lexical = LexicalIndex()
        self._doc_entry: dict[int, int] = {}
        self._doc_text: dict[int, str] = {}
        # Discounts of the texts that have one (docs absent here count at their cosine).
        self._doc_discount: dict[int, float] = {}
        self._entry_docs: dict[int, list[int]] = {}
        self._entry_lang: dict[int, str] = {}
        self._next_doc = 1
        self._lock = threading.RLock()
        # Per language, which rows of the lexical index's score array are in it; cleared
        # by every write (the rows change), rebuilt on the next search.
        self._lang_masks: dict[str, npt.NDArray[np.bool_]] = {}

    # -- size ---------------------------------------------------------------------------
    @property
    def entry_count(self) -> int:
        return len(self._entry_docs)

    @property
    def doc_count(self) -> int:
        return len(self._doc_entry)

    def entry_ids(self) -> set[int]:
        """Ids of every indexed entry."""
        with self._lock:
            return set(self._entry_docs)

    def passages(self) -> tuple[list[str], Vectors]:
        """Every indexed text and its stored vector, as the embedder gave them."""
        with self._lock:
            doc_ids = list(self._doc_text)
            texts = [self._doc_text[d] for d in doc_ids]
            vectors = self._vectors.vectors_of(np.asarray(doc_ids, dtype=np.int64))
        return texts, vectors

    # -- writes -------------------------------------------------------------------------
    def upsert(self, entries: list[EntryDocs]) -> None:
        """Add entries or replace their texts (only new texts are embedded)."""
        if not entries:
            return
        texts = [t for e in entries for t in e.dense_texts]
        vecs = self.embedder.encode_passages(texts)
        tokens = {e.entry_id: self.tokenizer.tokenize(e.lexical_text) for e in entries}
        with self._lock:
            self._remove_locked([e.entry_id for e in entries])
            ids: list[int] = []
            row = 0
            for e in entries:
                doc_ids = []
                for position, text in enumerate(e.dense_texts):
                    doc_id = self._next_doc
                    self._next_doc += 1
                    self._doc_entry[doc_id] = e.entry_id
                    self._doc_text[doc_id] = text
                    if discount := e.discount(position):
                        self._doc_discount[doc_id] = discount
                    doc_ids.append(doc_id)
                    ids.append(doc_id)
                    row += 1
                self._entry_docs[e.entry_id] = doc_ids
                self._entry_lang[e.entry_id] = e.language
            self._vectors.add(np.asarray(ids, dtype=np.int64), vecs)
            self._lexical.upsert(tokens)
            self._lang_masks.clear()
            self._lexical.prepare()

    def remove(self, entry_ids: list[int]) -> None:
        """Drop entries from the index (unknown ids are ignored)."""
        with self._lock:
            self._remove_locked(entry_ids)
            self._lexical.prepare()

    def _remove_locked(self, entry_ids: list[int]) -> None:
        self._lang_masks.clear()
        doc_ids: list[int] = []
        for entry_id in entry_ids:
            for doc_id in self._entry_docs.pop(entry_id, []):
                doc_ids.append(doc_id)
                del self._doc_entry[doc_id]
                del self._doc_text[doc_id]
                self._doc_discount.pop(doc_id, None)
            self._entry_lang.pop(entry_id, None)
        self._vectors.remove(np.asarray(doc_ids, dtype=np.int64))
        self._lexical.remove(list(entry_ids))

    # -- reads --------------------------------------------------------------------------
    def search(
        self,
        text: str,
        *,
        k: int = 10,
        language: str | None = None,
        mode: Mode = "hybrid",
        query_vector: Vectors | None = None,
    ) -> SearchResult:
        """Rank entries for `text`, optionally only those in `language`."""
        depth = max(k, self.fusion.depth)
        terms = self.tokenizer.tokenize(text) if mode != "dense" else []
        if mode != "lexical" and query_vector is None:
            query_vector = self.embedder.encode_queries([text])[0]
        # One acquisition for all of the reading: under load, handing the lock over between
        # the steps cost more than the steps.
        with self._lock:
            dense = self._dense_locked(query_vector, depth, language) if mode != "lexical" else []
            lexical = self._lexical_locked(terms, depth, language) if mode != "dense" else []
            if mode == "dense":
                hits = dense
            elif mode == "lexical":
                hits = lexical
            else:
                hits = self._fuse(dense, lexical, terms, language)
            hits = hits[:k]
            # The linear fusion has already worked out coverage for every candidate.
            fused_coverage = (
                mode == "hybrid"
                and self.fusion.method == "linear"
                and self.weights_for(language)[1] != 0
            )
            if terms and not fused_coverage:
                coverage = self._lexical.coverage_of(terms, [hit.entry_id for hit in hits])
                for hit in hits:
                    hit.coverage = coverage[hit.entry_id]
        # statistics.median: the same value as numpy's, without its overhead on 50 numbers.
        background = statistics.median(h.dense for h in dense) if len(dense) >= 5 else math.nan
        return SearchResult(
            hits=hits,
            mode=mode,
            query_terms=terms,
            dense_background=background,
            language=language,
            query_vector=query_vector,
        )

    def _dense_locked(self, qvec: Vectors | None, depth: int, language: str | None) -> list[Hit]:
        assert qvec is not None
        total = len(self._vectors)
        if total == 0:
            return []
        discounts = self._doc_discount
        # Entries have several texts and other languages may be filtered out: over-fetch,
        # and fall back to every vector when that still leaves too few entries.
        fetch = min(total, max(64, depth * 8))
        while True:
            scores, ids = self._vectors.search(qvec.reshape(1, -1), fetch)
            best: dict[int, Hit] = {}
            complete = False
            # The depth-th best entry score, recomputed now and then: it only rises, so a
            # stale value is a safe (lower) bound to stop at.
            bound, since = math.inf, 0
            for cosine, doc_id in zip(scores[0].tolist(), ids[0].tolist(), strict=True):
                if doc_id < 0:
                    continue
                entry_id = self._doc_entry[doc_id]
                if language and self._entry_lang.get(entry_id) != language:
                    continue
                score = cosine - discounts.get(doc_id, 0.0)
                hit = best.get(entry_id)
                if hit is None:
                    best[entry_id] = Hit(
                        entry_id, score, dense=score, matched_text=self._doc_text[doc_id]
                    )
                elif score > hit.score:  # a discounted text met earlier scored lower
                    hit.score = hit.dense = score
                    hit.matched_text = self._doc_text[doc_id]
                if len(best) < depth:
                    continue
                if discounts:
                    since -= 1
                    if since <= 0:
                        bound, since = self._depth_score(best, depth), 16
                if not discounts or cosine < bound:
                    # FAISS returns best first and a discount only lowers a score: no
                    # later text can enter the first `depth` entries or change them.
                    complete = True
                    break
            if complete or fetch >= total:
                break
            fetch = total
        hits = sorted(best.values(), key=lambda h: -h.score)[:depth]
        for rank, hit in enumerate(hits, 1):
            hit.dense_rank = rank
        return hits

    @staticmethod
    def _depth_score(best: dict[int, Hit], depth: int) -> float:
        """The `depth`-th best entry score so far."""
        return sorted((h.score for h in best.values()), reverse=True)[depth - 1]

    def _lexical_locked(self, terms: list[str], depth: int, language: str | None) -> list[Hit]:
        ids, scores = self._lexical.scores(terms)
        if len(ids) == 0:
            return []
        if language:
            mask = self._lang_masks.get(language)
            if mask is None or len(mask) != len(ids):
                mask = np.fromiter(
                    (self._entry_lang.get(int(i)) == language for i in ids),
                    dtype=bool,
                    count=len(ids),
                )
                self._lang_masks[language] = mask
            ids, scores = ids[mask], scores[mask]
        positive = scores > 0
        ids, scores = ids[positive], scores[positive]
        n = min(depth, len(ids))
        if n == 0:
            return []
        part = np.argpartition(-scores, n - 1)[:n] if n < len(ids) else np.arange(len(ids))
        # Best first, ties broken by id, so results are deterministic.
        part = part[np.lexsort((ids[part], -scores[part]))]
        return [
            Hit(entry_id, score, lexical=score, lexical_rank=rank)
            for rank, (entry_id, score) in enumerate(
                zip(ids[part].tolist(), scores[part].astype(np.float64).tolist(), strict=True), 1
            )
        ]

    def weights_for(self, language: str | None) -> tuple[float, float]:
        """The (lexical, coverage) weights of the linear fusion for a query language."""
        cfg = self.fusion
        for lang, lexical_weight, coverage_weight in cfg.language_weights:
            if lang == language:
                return lexical_weight, coverage_weight
        return cfg.lexical_weight, cfg.coverage_weight

    def _fuse(
        self, dense: list[Hit], lexical: list[Hit], terms: list[str], language: str | None
    ) -> list[Hit]:
        cfg = self.fusion
        lexical_weight, coverage_weight = self.weights_for(language)
        # The hits of both lists are this search's own: merged in place, not copied.
        merged: dict[int, Hit] = {hit.entry_id: hit for hit in dense}
        for hit in lexical:
            m = merged.get(hit.entry_id)
            if m is None:
                merged[hit.entry_id] = hit
            else:
                m.lexical, m.lexical_rank = hit.lexical, hit.lexical_rank
        if cfg.method == "linear":
            # An entry outside the dense list scores at most the list's lowest cosine.
            floor = min((h.dense for h in dense), default=0.0)
            top_lex = max((h.lexical for h in lexical), default=0.0) or 1.0
            coverage = self._lexical.coverage_of(terms, list(merged)) if coverage_weight else {}
            for m in merged.values():
                cos = m.dense if m.dense_rank is not None else floor
                m.score = cfg.dense_weight * cos + lexical_weight * m.lexical / top_lex
                if coverage_weight:
                    m.coverage = coverage[m.entry_id]
                    m.score += coverage_weight * m.coverage
        else:
            for m in merged.values():
                m.score = 0.0
                if m.dense_rank is not None:
                    m.score += cfg.dense_weight / (cfg.rrf_k + m.dense_rank)
                if m.lexical_rank is not None:
                    m.score += lexical_weight / (cfg.rrf_k + m.lexical_rank)
        return sorted(merged.values(), key=lambda h: (-h.score, h.dense_rank or 10**9, h.entry_id))

    # -- persistence --------------------------------------------------------------------
    def save(self, directory: Path) -> dict[str, int]:
        """Write the index files into `directory` (which must exist); return counts."""
        with self._lock:
            self._vectors.save(directory / "vectors.faiss")
            with (directory / "docs.jsonl").open("w", encoding="utf-8") as fh:
                for doc_id, entry_id in self._doc_entry.items():
                    row = {"doc": doc_id, "entry": entry_id, "text": self._doc_text[doc_id]}
                    if doc_id in self._doc_discount:
                        row["discount"] = self._doc_discount[doc_id]
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            with (directory / "entries.jsonl").open("w", encoding="utf-8") as fh:
                for entry_id, terms in self._lexical.items():
                    row2 = {
                        "entry": entry_id,
                        "lang": self._entry_lang[entry_id],
                        "docs": self._entry_docs[entry_id],
                        "terms": terms,
                    }
                    fh.write(json.dumps(row2, ensure_ascii=False) + "\n")
            return {
                "entries": self.entry_count,
                "docs": self.doc_count,
                "vectors": len(self._vectors),
                "next_doc": self._next_doc,
            }

    @classmethod
    def load(
        cls,
        directory: Path,
        embedder: Embedder,
        tokenizer: Tokenizer,
        fusion: FusionConfig | None = None,
    ) -> HybridIndex:
        """Read an index written by `save`; raises ValueError when the files disagree."""
        index = cls(embedder, tokenizer, fusion)
        vectors = FaissIndex.load(directory / "vectors.faiss")
        if vectors.dim != embedder.dim:
            raise ValueError(f"index dimension {vectors.dim} != model dimension {embedder.dim}")
        index._vectors = vectors
        with (directory / "docs.jsonl").open(encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                index._doc_entry[row["doc"]] = row["entry"]
                index._doc_text[row["doc"]] = row["text"]
                if "discount" in row:
                    index._doc_discount[row["doc"]] = float(row["discount"])
        lexical: dict[int, list[str]] = {}
        with (directory / "entries.jsonl").open(encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                index._entry_lang[row["entry"]] = row["lang"]
                index._entry_docs[row["entry"]] = list(row["docs"])
                lexical[row["entry"]] = row["terms"]
        index._lexical.upsert(lexical)
        index._lexical.prepare()
        if len(vectors) != len(index._doc_entry):
            raise ValueError(f"{len(vectors)} vectors but {len(index._doc_entry)} documents")
        index._next_doc = max(index._doc_entry, default=0) + 1
        return index
