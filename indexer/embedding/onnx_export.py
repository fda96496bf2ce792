"""Export of the built sentence-transformers model to ONNX, fp32 and int8, at build time.

`faqloop models build` calls `export_onnx` on the finished folder before writing its
manifest. One graph holds the whole pipeline: token ids and attention mask in, the
transformer, mean pooling over the attention mask and L2 normalisation, one 384-d vector per
text out (the same steps as the torch model's modules). The export uses torch's TorchScript
exporter (`torch.onnx.export(dynamo=False)`, opset 17): the dynamo exporter needs onnxscript,
one more dependency for the same graph. The int8 file is quantised from the fp32 one with
ONNX Runtime's own tools (`INT8_RECIPE`; the choice is measured in docs/scale.md,
"Backends"). The torch model's vectors of the probe texts go into the manifest, so a server
can check an ONNX file without loading torch (`indexer/embedding/onnx_backend.py`).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from indexer.embedding.onnx_backend import (
    MIN_COSINE,
    ONNX,
    ONNX_FILES,
    ONNX_INT8,
    PROBES,
    OnnxEmbedder,
    OnnxUnusable,
    probe_cosines,
    sha256_file,
)

log = logging.getLogger(__name__)

OPSET = 17
# How the int8 file is made (the choice is measured in docs/scale.md, "Backends"):
# "blockwise": every MatMul with a weight becomes ONNX Runtime's MatMulNBits with 8-bit
# weights in blocks of 32 along the input, one scale per block (mE5's weights come from
# 4-bit blocks of 32, so most blocks are exact), and accuracy_level 4: activations are
# quantised to int8 per block of 32 of each token's row, so a text's vector does not depend
# on the other texts of its batch. "dynamic": ONNX Runtime's quantize_dynamic (weights per
# output channel, activations per tensor per call: faster, and further from fp32).
INT8_RECIPE: dict[str, Any] = {
    "method": "blockwise",
    "bits": 8,
    "block_size": 32,
    "accuracy_level": 4,
}
DYNAMIC_RECIPE: dict[str, Any] = {
    "method": "dynamic",
    "weight_type": "QInt8",
    "per_channel": True,
    "reduce_range": False,
    "op_types": ["MatMul", "Gather"],
}


class OnnxExportError(RuntimeError):
    """The model could not be exported to ONNX, or the export does not match torch."""


def _export_fp32(st_model: Any, out: Path) -> None:
    import torch

    transformer = st_model[0].auto_model

    class Pipeline(torch.nn.Module):
        """Transformer, mean pooling over the attention mask, L2 normalisation."""

        def __init__(self) -> None:
            super().__init__()
            self.inner = transformer

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            hidden = self.inner(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=torch.zeros_like(input_ids),
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

    example = st_model.preprocess(["query: example one", "passage: a second, longer example"])
    args = (example["input_ids"], example["attention_mask"])
    quiet = [logging.getLogger(n) for n in ("sentence_transformers", "transformers", "torch")]
    levels = [q.level for q in quiet]
    for q in quiet:
        q.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")  # TracerWarnings about Python values
            torch.onnx.export(
                Pipeline().eval(),
                args,
                str(out),
                dynamo=False,
                input_names=["input_ids", "attention_mask"],
                output_names=["sentence_embedding"],
                dynamic_axes={
                    "input_ids": {0: "batch", 1: "tokens"},
                    "attention_mask": {0: "batch", 1: "tokens"},
                    "sentence_embedding": {0: "batch"},
                },
                opset_version=OPSET,
                do_constant_folding=True,
            )
    finally:
        for q, level in zip(quiet, levels, strict=True):
            q.setLevel(level)


def _block_scales(weight: Any, block: int) -> tuple[Any, Any]:
    """Blocks of `block` values along each row of `weight` [N, K] and one scale per block.

    A block whose values are all integer multiples (-8..7) of one step, as the 4-bit source
    weights are, gets that step (exact); any other block max|w| / 127.
    """
    n, k = weight.shape
    blocks = weight.reshape(n, k // block, block).astype(np.float64)
    peak = np.abs(blocks).max(-1)
    scales = np.full(peak.shape, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        for steps in (8, 7, 6, 5, 4, 3, 2, 1):
            step = peak / steps
            q = blocks / step[..., None]
            r = np.round(q)
            exact = (np.abs(q - r) < 1e-3).all(-1) & (r >= -8).all(-1) & (r <= 7).all(-1)
            pick = exact & np.isnan(scales)
            scales[pick] = step[pick]
    rest = np.isnan(scales)
    scales[rest] = peak[rest] / 127.0
    scales[peak == 0] = 1.0
    return blocks, scales


def _quantize_embeddings(
    nodes: list[Any], weights: dict[str, Any], block: int, replaced: set[str]
) -> tuple[list[Any], list[Any]]:
    """The token embedding table as int8 in blocks of `block`, one scale per block.

    Gather(table, ids) becomes Gather(q, ids) and Gather(scales, ids), multiplied block by
    block: the table (250k x 384, three quarters of the fp32 file) takes a quarter of the
    memory, and its values are exact where the 4-bit source blocks are.
    """
    from onnx import helper, numpy_helper

    out: list[Any] = []
    added: list[Any] = []
    for node in nodes:
        table = weights.get(node.input[0]) if node.op_type == "Gather" else None
        if table is None or len(table.dims) != 2 or table.dims[0] < 10_000:
            out.append(node)
            continue
        vocab, dim = (int(d) for d in table.dims)
        if dim % block:
            out.append(node)
            continue
        blocks, scales = _block_scales(numpy_helper.to_array(table), block)
        q = np.clip(np.round(blocks / scales[..., None]), -128, 127).astype(np.int8)
        name = node.input[0]
        added += [
            numpy_helper.from_array(q.reshape(vocab, dim // block, block), f"{name}_q8"),
            numpy_helper.from_array(scales.astype(np.float32)[..., None], f"{name}_s"),
            numpy_helper.from_array(np.array([0, 0, dim], dtype=np.int64), f"{name}_shape"),
        ]
        replaced.add(name)
        ids, result, tag = node.input[1], node.output[0], node.name
        out += [
            helper.make_node("Gather", [f"{name}_q8", ids], [f"{tag}_q"], name=f"{tag}_q"),
            helper.make_node("Cast", [f"{tag}_q"], [f"{tag}_f"], name=f"{tag}_f", to=1),
            helper.make_node("Gather", [f"{name}_s", ids], [f"{tag}_s"], name=f"{tag}_s"),
            helper.make_node("Mul", [f"{tag}_f", f"{tag}_s"], [f"{tag}_m"], name=f"{tag}_m"),
            helper.make_node("Reshape", [f"{tag}_m", f"{name}_shape"], [result], name=f"{tag}_r"),
        ]
    return out, added


def _quantize_blockwise(src: Path, dst: Path, recipe: dict[str, Any]) -> None:
    import onnx
    from onnx import helper, numpy_helper

    bits = int(recipe.get("bits", 8))
    block = int(recipe.get("block_size", 32))
    if bits != 8:
        raise OnnxExportError(f"blockwise quantisation supports 8 bits, not {bits}")
    model = onnx.load(str(src))
    weights = {i.name: i for i in model.graph.initializer}
    nodes = []
    replaced: set[str] = set()
    added = []
    for node in model.graph.node:
        name = node.input[1] if node.op_type == "MatMul" and len(node.input) == 2 else ""
        w = weights.get(name)
        if w is None or len(w.dims) != 2 or w.dims[0] % block:
            nodes.append(node)
            continue
        k, n = (int(d) for d in w.dims)
        blocks, scales = _block_scales(numpy_helper.to_array(w).T, block)  # [N, K]
        q = np.clip(np.round(blocks / scales[..., None]), -128, 127)
        added.append(numpy_helper.from_array((q + 128).astype(np.uint8), f"{name}_q8"))
        added.append(numpy_helper.from_array(scales.astype(np.float32).ravel(), f"{name}_s"))
        replaced.add(name)
        nodes.append(
            helper.make_node(
                "MatMulNBits",
                [node.input[0], f"{name}_q8", f"{name}_s"],
                list(node.output),
                name=f"{node.name}_q8",
                domain="com.microsoft",
                K=k,
                N=n,
                bits=8,
                block_size=block,
                accuracy_level=int(recipe.get("accuracy_level", 4)),
            )
        )
    if not replaced:
        raise OnnxExportError("no MatMul weights to quantise")
    if recipe.get("embeddings", True):
        nodes, more = _quantize_embeddings(nodes, weights, block, replaced)
        added += more
    kept = [i for i in model.graph.initializer if i.name not in replaced]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    del model.graph.initializer[:]
    model.graph.initializer.extend([*kept, *added])
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.save(model, str(dst))


def quantize_int8(src: Path, dst: Path, recipe: dict[str, Any] | None = None) -> None:
    """Write the int8 variant of the fp32 graph `src` to `dst` following `recipe`."""
    recipe = INT8_RECIPE if recipe is None else recipe
    if recipe.get("method") == "blockwise":
        _quantize_blockwise(src, dst, recipe)
        return
    if recipe.get("method") != "dynamic":
        raise OnnxExportError(f"unknown quantisation method {recipe.get('method')!r}")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # "consider pre-processing" advice on the root logger
    try:
        quantize_dynamic(
            str(src),
            str(dst),
            weight_type=getattr(QuantType, str(recipe.get("weight_type", "QInt8"))),
            per_channel=bool(recipe.get("per_channel", False)),
            reduce_range=bool(recipe.get("reduce_range", False)),
            op_types_to_quantize=list(recipe.get("op_types") or ["MatMul"]),
            nodes_to_exclude=list(recipe.get("nodes_to_exclude") or []),
        )
    finally:
        root.setLevel(level)


def export_onnx(folder: Path, *, int8_recipe: dict[str, Any] | None = None) -> dict[str, Any]:
    """Export the model folder's model into `folder/onnx/`; the manifest's "onnx" section.

    Raises OnnxExportError when a variant's probe vectors are further from the torch
    model's than `MIN_COSINE` allows (the file would be refused at every load).
    """
    import onnxruntime
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no "Loading weights" bar in the build's output

    recipe = INT8_RECIPE if int8_recipe is None else int8_recipe
    st_model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    st_model.eval()
    reference = {
        kind: st_model.encode(
            list(texts),
            prompt_name=kind,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        ).astype(np.float32)
        for kind, texts in PROBES.items()
    }
    (folder / "onnx").mkdir(exist_ok=True)
    fp32 = folder / ONNX_FILES[ONNX]
    int8 = folder / ONNX_FILES[ONNX_INT8]
    try:
        _export_fp32(st_model, fp32)
        del st_model
        quantize_int8(fp32, int8, recipe)
    except OnnxExportError:
        raise
    except Exception as exc:
        raise OnnxExportError(f"ONNX export failed: {exc}") from exc

    section: dict[str, Any] = {
        "opset": OPSET,
        "torch_version": torch.__version__,
        "onnxruntime_version": onnxruntime.__version__,
        "tokenizer_sha256": sha256_file(folder / "tokenizer.json"),
        "probes": {kind: list(texts) for kind, texts in PROBES.items()},
        "reference": {kind: vecs.tolist() for kind, vecs in reference.items()},
        "quantization": recipe,
        "files": {},
    }
    for backend in (ONNX, ONNX_INT8):
        path = folder / ONNX_FILES[backend]
        try:
            embedder = OnnxEmbedder(folder.name, folder, backend=backend)
            worst = float(probe_cosines(embedder, section["reference"]).min())
        except OnnxUnusable as exc:
            raise OnnxExportError(f"the exported {backend} model does not load: {exc}") from exc
        del embedder
        if worst < MIN_COSINE[backend]:
            raise OnnxExportError(
                f"the exported {backend} model differs from torch: probe cosine {worst:.6f} "
                f"< {MIN_COSINE[backend]}"
            )
        section["files"][backend] = {
            "path": ONNX_FILES[backend],
            "sha256": sha256_file(path),
            "bytes": path.stat().st_size,
            "probe_min_cosine": round(worst, 7),
        }
        log.info("exported %s: probe cosine to torch >= %.6f", backend, worst)
    return section
