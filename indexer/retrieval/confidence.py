"""Confidence that the top-ranked entry is right: a logistic model over ranking signals."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from indexer.retrieval.hybrid import SearchResult

FEATURES = (
    "dense_top",
    "dense_margin",
    "dense_lift",
    "lexical_agree",
    "lexical_top",
    "coverage",
    "japanese",
)
# The subset the shipped calibration uses: the others added nothing on held-out data
# (docs/retrieval.md, "Confidence and abstention").
DEFAULT_FEATURES = ("dense_top", "dense_margin", "coverage", "japanese")


def features(result: SearchResult) -> dict[str, float]:
    """Signals about the top hit of a (hybrid) ranking, in [0, ~1]."""
    hits = result.hits
    if not hits:
        return dict.fromkeys(FEATURES, 0.0)
    top = hits[0]
    top_dense = 0.0 if math.isnan(top.dense) else top.dense
    # The margin is taken to the best entry with a different matched text: entries that
    # share a question (several answers to one question) are not competitors.
    others = [
        h.dense for h in hits[1:] if not math.isnan(h.dense) and h.matched_text != top.matched_text
    ]
    second = max(others) if others else top_dense
    lex = [h.lexical for h in hits if h.lexical > 0]
    lex_max = max(lex) if lex else 0.0
    return {
        "dense_top": top_dense,
        "dense_margin": max(0.0, top_dense - second),
        "lexical_agree": 1.0 if top.lexical_rank == 1 else 0.0,
        # The top hit's BM25 relative to the best BM25 (1 when it is the lexical winner).
        "lexical_top": (top.lexical / lex_max) if lex_max > 0 else 0.0,
        "coverage": top.coverage,
        "dense_lift": 0.0
        if math.isnan(result.dense_background)
        else max(0.0, top_dense - result.dense_background),
        # The model's cosines run higher between Japanese texts than between English ones,
        # so the same cosine means less: a per-language offset (docs/retrieval.md).
        "japanese": 1.0 if result.language == "ja" else 0.0,
    }


@dataclass(frozen=True)
class ConfidenceModel:
    """p(top-1 is right) = sigmoid(bias + sum(weight * feature)), fitted per model."""

    model: str
    weights: dict[str, float] = field(default_factory=dict)
    bias: float = 0.0
    # Default abstention threshold: the lowest confidence at which suggestions were still
    # right often enough on the calibration data (see docs/retrieval.md).
    threshold: float = 0.5
    # Where the weights came from (data set, size), so a reader can judge them.
    fitted_on: str = ""

    def confidence(self, result: SearchResult) -> float:
        """Calibrated probability in [0, 1] that the first hit answers the query."""
        if not result.hits:
            return 0.0
        f = features(result)
        z = self.bias + sum(w * f[name] for name, w in self.weights.items())
        return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))

    def save(self, path: Path) -> None:
        """Write the model as JSON."""
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> ConfidenceModel:
        """Read a model written by `save`."""
        data = json.loads(path.read_text())
        return cls(**data)


CALIBRATION_DIR = Path(__file__).parent / "calibration"


def default_confidence_model(model_name: str) -> ConfidenceModel:
    """The shipped calibration for a known model, else a conservative generic one."""
    safe = model_name.replace("/", "_")
    path = CALIBRATION_DIR / f"{safe}.json"
    if path.exists():
        return ConfidenceModel.load(path)
    # Unknown model: rank agreement and margin only, no trust in the raw cosine scale.
    return ConfidenceModel(
        model=model_name,
        weights={"dense_margin": 20.0, "lexical_agree": 2.0, "lexical_top": 1.0},
        bias=-3.0,
        fitted_on="not fitted (generic default)",
    )
