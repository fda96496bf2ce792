"""Export of the built sentence-transformers model to ONNX, fp32 and int8, at build time.

`faqloop models build` calls `export_onnx` on the finished folder before writing its
manifest. One graph holds the whole pipeline: token ids and attention mask in, the
transformer, mean pooling over the attention mask and L2 normalisation, one 384-d vector per
text out (the same steps as the torch model's modules). The export uses torch's TorchScript
exporter (`torch.onnx.export(dynamo=False)`, opset 17): the dynamo exporter needs onnxscript,
one more dependency for the same graph. The int8 file is quantised from the fp32 one with
ONNX Runtime's own tools (`INT8_RECIPES`, the first that holds on this CPU; measured in
docs/scale.md, "Backends"). The torch model's vectors of the probe texts go into the
manifest, so a server can check an ONNX file without loading torch
(`indexer/embedding/onnx_backend.py`).
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
# "per-token" (shipped): every MatMul with a weight becomes ONNX Runtime's
# MatMulIntegerToFloat (u8 activations x s8 weights): weights int8 with one scale per output
# channel, activations int8 with one scale per token, computed in the graph, so a text's vector
# depends on its own tokens only. Before that, SmoothQuant with alpha 0.5: each input
# channel is divided by s = peak|x|^0.5 / peak|w|^0.5 (peaks of the fp32 model on the probe
# texts) and the weight's row multiplied by it, which moves the LayerNorm outputs' outlier
# channels into the weights. The token embedding table as int8 blocks of 32.
# "blockwise": MatMulNBits with 8-bit weights in blocks of 32 and accuracy_level 4 (int8
# activations per block of 32 of each token): closer to fp32 (probe cosine .9999 against
# .9997), and slower in batches on 2 cores. "dynamic": ONNX Runtime's quantize_dynamic
# (weights per output channel, activations per tensor per call: a text's vector depends on
# its batch, and further from fp32).
PER_TOKEN_RECIPE: dict[str, Any] = {
    "method": "per-token",
    "bits": 8,
    "smooth_alpha": 0.5,
    "embeddings": True,
    "block_size": 32,
    "kernels": "quantize-linear",
}
BLOCKWISE_RECIPE: dict[str, Any] = {
    "method": "blockwise",
    "bits": 8,
    "block_size": 32,
    "accuracy_level": 4,
}
# The same with the weights stored as uint8 (zero point 128), for CPUs without VNNI
# instructions (AVX2 only): their u8 x s8 kernel adds each pair of products in int16
# (vpmaddubsw), which saturates (255 x 127 x 2 > 32,767): probe cosine 0.998887 on such a
# machine against >= 0.9997 with VNNI, and JSTS hybrid MRR@10 -0.88 points with 7-bit weights
# (ONNX Runtime's "reduce_range", which cannot saturate). ONNX Runtime's u8 x u8 kernel widens
# to int16 before multiplying, so nothing saturates: the same integers as the s8 file on a VNNI
# CPU (probe cosine 0.99968), slower than s8 there, hence last (docs/scale.md, "Backends").
PER_TOKEN_U8_RECIPE: dict[str, Any] = {**PER_TOKEN_RECIPE, "weight_type": "uint8"}
# The s8 file with each weight column's scale set so that any two neighbouring weights along
# K sum to at most 128 in magnitude (127 before rounding): 255 x 128 < 32,767, so the AVX2
# kernel's int16 pair sums
# cannot saturate (it computes the u8 file's integers: cosine 0.9999987 between the two on 86
# posts) and keeps its s8 speed (~20 % ahead of u8 in batches there). The price is precision:
# a column's largest weight gets ~92 levels instead of 127 (its peak is ~0.73 of the largest
# pair sum in this model).
PER_TOKEN_PAIRED_RECIPE: dict[str, Any] = {**PER_TOKEN_RECIPE, "pair_bound": True}
INT8_RECIPE = PER_TOKEN_RECIPE
# What `faqloop models build` tries, in order: the first whose probe vectors reach
# MIN_COSINE[ONNX_INT8] on the building CPU is kept (recorded in the manifest). A folder built
# on one CPU and served on another is checked again at load (indexer/embedding/onnx_backend.py).
INT8_RECIPES: tuple[dict[str, Any], ...] = (
    PER_TOKEN_RECIPE,
    PER_TOKEN_PAIRED_RECIPE,
    PER_TOKEN_U8_RECIPE,
)
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
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    _save_rewritten(model, nodes, weights, replaced, added, recipe, dst)


def _save_rewritten(
    model: Any,
    nodes: list[Any],
    weights: dict[str, Any],
    replaced: set[str],
    added: list[Any],
    recipe: dict[str, Any],
    dst: Path,
) -> None:
    """Save `model` with `nodes` as its graph, the `replaced` weights swapped for `added`,
    and (unless the recipe says otherwise) its token embedding table in int8 blocks."""
    import onnx

    if recipe.get("embeddings", True):
        block = int(recipe.get("block_size", 32))
        nodes, more = _quantize_embeddings(nodes, weights, block, replaced)
        added = [*added, *more]
    kept = [i for i in model.graph.initializer if i.name not in replaced]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    del model.graph.initializer[:]
    model.graph.initializer.extend([*kept, *added])
    onnx.save(model, str(dst))


def _quantize_tokens(x: str, tag: str) -> list[Any]:
    """Nodes that quantise `x` to uint8 with one scale per token, as a matrix of tokens:
    `{tag}_xq` [tokens, K] and `{tag}_s` [tokens, 1].

    s = max|x| / 127 over each token's row; q = round(x / s) + 128 in one QuantizeLinear
    along the token axis (zero point 128: ONNX Runtime's fast int8 kernels take u8
    activations and s8 weights; s8 x s8 ran 5x slower here). Four element-wise operators
    (Div, Round, Add, Cast) in an earlier form of the recipe cost 0.8 ms of a 6.2 ms text.
    """
    from onnx import helper

    return [
        helper.make_node("Flatten", [x], [f"{tag}_x2"], name=f"{tag}_x2", axis=-1),
        helper.make_node("Abs", [f"{tag}_x2"], [f"{tag}_abs"], name=f"{tag}_abs"),
        helper.make_node(
            "ReduceMax", [f"{tag}_abs"], [f"{tag}_peak"], name=f"{tag}_peak", axes=[-1], keepdims=0
        ),
        helper.make_node("Max", [f"{tag}_peak", "q8_tiny"], [f"{tag}_peak1"], name=f"{tag}_peak1"),
        helper.make_node("Div", [f"{tag}_peak1", "q8_127"], [f"{tag}_s1"], name=f"{tag}_s1"),
        helper.make_node(
            "QuantizeLinear",
            [f"{tag}_x2", f"{tag}_s1", "q8_token_zero"],
            [f"{tag}_xq"],
            name=f"{tag}_xq",
            axis=0,
        ),
        helper.make_node("Unsqueeze", [f"{tag}_s1", "q8_axis1"], [f"{tag}_s"], name=f"{tag}_s"),
    ]


def _int8_matmul(
    node: Any, weight: str, group: str, columns: int, *, unsigned: bool = False
) -> list[Any]:
    """MatMul(x, W) as MatMulIntegerToFloat(x_q, W_q, 1, w_scale) * s, reshaped back to the
    node's [batch, tokens, N]; x_q and s from `group`.

    The per-column weight scale goes into ONNX Runtime's MatMulIntegerToFloat (which also
    casts the int32 sums); the per-token scale follows in its own Mul, as the operator's
    scales are per tensor or per column only. (Letting ONNX Runtime fuse MatMulInteger, Cast
    and one Mul by the product of both scales gave a probe cosine of 0.74: the fusion took
    the [tokens, N] scale for a per-column one, measured with ORT 1.32.)
    """
    from onnx import helper

    tag = f"{node.name or weight}_q8"
    return [
        helper.make_node(
            "MatMulIntegerToFloat",
            [f"{group}_xq", f"{weight}_q8", "q8_one", f"{weight}_s", "q8_zero"]
            + (["q8_zero"] if unsigned else []),
            [f"{tag}_f"],
            name=tag,
            domain="com.microsoft",
        ),
        helper.make_node("Mul", [f"{tag}_f", f"{group}_s"], [f"{tag}_y2"], name=f"{tag}_y2"),
        helper.make_node(
            "Reshape", [f"{tag}_y2", f"q8_shape_{columns}"], list(node.output), name=f"{tag}_y"
        ),
    ]


def _per_token_prologue(columns: set[int]) -> tuple[list[Any], list[Any]]:
    """Nodes and constants the per-token graph shares: the tokens' zero points (128, one per
    token of the batch) and the output shape [batch, tokens, N] for each width N in
    `columns` (two for this model: 384 and 1,536)."""
    from onnx import helper, numpy_helper

    nodes = [
        helper.make_node("Shape", ["attention_mask"], ["q8_bs"], name="q8_bs"),
        helper.make_node("ReduceProd", ["q8_bs"], ["q8_rows"], name="q8_rows", keepdims=1),
        helper.make_node(
            "ConstantOfShape",
            ["q8_rows"],
            ["q8_token_zero"],
            name="q8_token_zero",
            value=numpy_helper.from_array(np.array([128], np.uint8)),
        ),
    ]
    added = [
        numpy_helper.from_array(np.array(127.0, np.float32), "q8_127"),
        numpy_helper.from_array(np.array(1e-12, np.float32), "q8_tiny"),
        numpy_helper.from_array(np.array(1.0, np.float32), "q8_one"),
        numpy_helper.from_array(np.array(128, np.uint8), "q8_zero"),
        numpy_helper.from_array(np.array([1], np.int64), "q8_axis1"),
    ]
    for n in sorted(columns):
        added.append(numpy_helper.from_array(np.array([n], np.int64), f"q8_n_{n}"))
        nodes.append(
            helper.make_node(
                "Concat", ["q8_bs", f"q8_n_{n}"], [f"q8_shape_{n}"], name=f"q8_shape_{n}", axis=0
            )
        )
    return nodes, added


def _activation_peaks(model: Any, inputs: list[str], texts: list[str], tokenizer: Any) -> Any:
    """Largest |value| of each channel of each tensor in `inputs`, over the tokens of `texts`
    run one at a time through the fp32 `model` (no padding tokens)."""
    import onnx
    import onnxruntime as ort
    from onnx import helper

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for name in inputs:
        probe.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    session = ort.InferenceSession(
        probe.SerializeToString(), opts, providers=["CPUExecutionProvider"]
    )
    peaks: dict[str, Any] = {}
    for text in texts:
        enc = tokenizer.encode(text)
        feed = {
            "input_ids": np.array([enc.ids], dtype=np.int64),
            "attention_mask": np.array([enc.attention_mask], dtype=np.int64),
        }
        outs = session.run(inputs, feed)
        for name, value in zip(inputs, outs, strict=True):
            peak = np.abs(value.reshape(-1, value.shape[-1])).max(0)
            peaks[name] = np.maximum(peaks.get(name, 0.0), peak)
    return peaks


def _quantize_per_token(src: Path, dst: Path, recipe: dict[str, Any]) -> None:
    import onnx
    from onnx import helper, numpy_helper
    from tokenizers import Tokenizer

    if int(recipe.get("bits", 8)) != 8:
        raise OnnxExportError(f"per-token quantisation supports 8 bits, not {recipe.get('bits')}")
    folder = src.parent.parent  # the model folder (tokenizer, config) of onnx/model.onnx
    model = onnx.load(str(src))
    weights = {i.name: i for i in model.graph.initializer}
    # MatMuls with a weight, grouped by their input (Q, K and V share one).
    groups: dict[str, list[Any]] = {}
    for node in model.graph.node:
        w = (
            weights.get(node.input[1])
            if node.op_type == "MatMul" and len(node.input) == 2
            else None
        )
        if w is not None and len(w.dims) == 2:
            groups.setdefault(node.input[0], []).append(node)
    if not groups:
        raise OnnxExportError("no MatMul weights to quantise")
    w_max = float(2 ** (int(recipe.get("weight_bits", 8)) - 1) - 1)
    unsigned = recipe.get("weight_type", "int8") == "uint8"
    pair_bound = bool(recipe.get("pair_bound", False))
    alpha = float(recipe.get("smooth_alpha", 0.0))
    peaks: dict[str, Any] = {}
    if alpha > 0:
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        tokenizer.enable_truncation(512)
        texts = [f"query: {t}" for t in PROBES["query"]] + [
            f"passage: {t}" for t in PROBES["passage"]
        ]
        peaks = _activation_peaks(model, list(groups), texts, tokenizer)
    added: list[Any] = []
    replaced: set[str] = set()
    head: dict[str, list[Any]] = {}  # nodes that quantise a group's input, before its first use
    body: dict[str, list[Any]] = {}  # the int8 MatMul that replaces each node, by node name
    columns: set[int] = set()  # the weights' output widths (the prologue's output shapes)
    for n_group, (x, consumers) in enumerate(groups.items()):
        group = f"q8_g{n_group}"
        mats = [numpy_helper.to_array(weights[c.input[1]]).astype(np.float64) for c in consumers]
        smooth = np.ones(mats[0].shape[0])
        if alpha > 0:
            # SmoothQuant: x / s and s * W give the same product; s moves the activation
            # channels' outliers into the weights, which are quantised per column.
            w_peak = np.max([np.abs(m).max(1) for m in mats], axis=0)
            a_peak = np.asarray(peaks[x], dtype=np.float64)
            smooth = np.where(
                (a_peak > 0) & (w_peak > 0),
                a_peak**alpha / np.maximum(w_peak, 1e-12) ** (1 - alpha),
                1.0,
            )
            smooth = np.clip(smooth, 1e-2, 1e2)
        nodes: list[Any] = []
        source = x
        if alpha > 0:
            added.append(numpy_helper.from_array((1.0 / smooth).astype(np.float32), f"{group}_inv"))
            nodes.append(
                helper.make_node("Mul", [x, f"{group}_inv"], [f"{group}_x"], name=f"{group}_x")
            )
            source = f"{group}_x"
        head[consumers[0].name] = nodes + _quantize_tokens(source, group)
        for consumer, matrix in zip(consumers, mats, strict=True):
            weight = consumer.input[1]
            matrix = matrix * smooth[:, None]
            peak = np.abs(matrix).max(0)
            if pair_bound and matrix.shape[0] % 2 == 0:
                pair = np.abs(matrix[0::2]) + np.abs(matrix[1::2])
                peak = np.maximum(peak, pair.max(0))
            scales = peak / w_max
            scales[scales == 0] = 1.0
            q = np.clip(np.round(matrix / scales), -w_max, w_max).astype(np.int8)
            stored = (q.astype(np.int16) + 128).astype(np.uint8) if unsigned else q
            added.append(numpy_helper.from_array(stored, f"{weight}_q8"))
            added.append(numpy_helper.from_array(scales.astype(np.float32), f"{weight}_s"))
            replaced.add(weight)
            body[consumer.name] = _int8_matmul(
                consumer, weight, group, q.shape[1], unsigned=unsigned
            )
            columns.add(int(q.shape[1]))
    out, shared = _per_token_prologue(columns)
    added += shared
    for node in model.graph.node:
        if node.name in body:
            out += head.get(node.name, [])
            out += body[node.name]
        else:
            out.append(node)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    _save_rewritten(model, out, weights, replaced, added, recipe, dst)


def quantize_int8(src: Path, dst: Path, recipe: dict[str, Any] | None = None) -> None:
    """Write the int8 variant of the fp32 graph `src` to `dst` following `recipe`."""
    recipe = INT8_RECIPE if recipe is None else recipe
    if recipe.get("method") == "blockwise":
        _quantize_blockwise(src, dst, recipe)
        return
    if recipe.get("method") == "per-token":
        _quantize_per_token(src, dst, recipe)
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


def _probe_cosine(folder: Path, reference: dict[str, Any], backend: str) -> float:
    """The worst probe cosine of the folder's `backend` file (its checksum not yet on record)."""
    return float(probe_cosines(OnnxEmbedder(folder.name, folder, backend=backend), reference).min())


def quantize_first_that_holds(
    folder: Path, reference: dict[str, Any], recipes: tuple[dict[str, Any], ...]
) -> tuple[dict[str, Any], float]:
    """Quantise the folder's fp32 file with each of `recipes` in turn; the first whose worst
    probe cosine to `reference` (the torch vectors) reaches MIN_COSINE[ONNX_INT8] stays in
    `folder/onnx/` and is returned with that cosine. OnnxExportError, naming every recipe's
    cosine, when none does."""
    fp32 = folder / ONNX_FILES[ONNX]
    int8 = folder / ONNX_FILES[ONNX_INT8]
    tried: list[str] = []
    for recipe in recipes:
        try:
            quantize_int8(fp32, int8, recipe)
            worst = _probe_cosine(folder, reference, ONNX_INT8)
        except OnnxExportError:
            raise
        except OnnxUnusable as exc:
            raise OnnxExportError(f"the exported {ONNX_INT8} model does not load: {exc}") from exc
        except Exception as exc:
            raise OnnxExportError(f"ONNX quantisation failed: {exc}") from exc
        if worst >= MIN_COSINE[ONNX_INT8]:
            if tried:
                log.info("int8 recipe %s kept after: %s", _recipe_label(recipe), "; ".join(tried))
            return recipe, worst
        tried.append(f"{_recipe_label(recipe)}: probe cosine {worst:.6f}")
    int8.unlink(missing_ok=True)
    raise OnnxExportError(
        f"the exported {ONNX_INT8} model differs from torch on this CPU: "
        f"{'; '.join(tried)} (each < {MIN_COSINE[ONNX_INT8]})"
    )


def _recipe_label(recipe: dict[str, Any]) -> str:
    bits = recipe.get("weight_bits", recipe.get("bits", 8))
    paired = ", pair-bounded" if recipe.get("pair_bound") else ""
    return f"{recipe.get('method')}, {recipe.get('weight_type', 'int8')} {bits}-bit weights{paired}"


def export_onnx(
    folder: Path, *, int8_recipes: tuple[dict[str, Any], ...] | None = None
) -> dict[str, Any]:
    """Export the model folder's model into `folder/onnx/`; the manifest's "onnx" section.

    The int8 file is the first of `int8_recipes` (default INT8_RECIPES) that holds the
    tolerance on this CPU. Raises OnnxExportError when a variant's probe vectors are further
    from the torch model's than `MIN_COSINE` allows (the file would be refused at every load).
    """
    import onnxruntime
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no "Loading weights" bar in the build's output

    recipes = INT8_RECIPES if int8_recipes is None else int8_recipes
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
    try:
        _export_fp32(st_model, fp32)
        del st_model
    except Exception as exc:
        raise OnnxExportError(f"ONNX export failed: {exc}") from exc
    section: dict[str, Any] = {
        "opset": OPSET,
        "torch_version": torch.__version__,
        "onnxruntime_version": onnxruntime.__version__,
        "tokenizer_sha256": sha256_file(folder / "tokenizer.json"),
        "probes": {kind: list(texts) for kind, texts in PROBES.items()},
        "reference": {kind: vecs.tolist() for kind, vecs in reference.items()},
        "files": {},
    }
    try:
        worst_fp32 = _probe_cosine(folder, section["reference"], ONNX)
    except OnnxUnusable as exc:
        raise OnnxExportError(f"the exported {ONNX} model does not load: {exc}") from exc
    if worst_fp32 < MIN_COSINE[ONNX]:
        raise OnnxExportError(
            f"the exported {ONNX} model differs from torch: probe cosine {worst_fp32:.6f} "
            f"< {MIN_COSINE[ONNX]}"
        )
    recipe, worst_int8 = quantize_first_that_holds(folder, section["reference"], recipes)
    section["quantization"] = recipe
    for backend, worst in ((ONNX, worst_fp32), (ONNX_INT8, worst_int8)):
        path = folder / ONNX_FILES[backend]
        section["files"][backend] = {
            "path": ONNX_FILES[backend],
            "sha256": sha256_file(path),
            "bytes": path.stat().st_size,
            "probe_min_cosine": round(worst, 7),
        }
        log.info("exported %s: probe cosine to torch >= %.6f", backend, worst)
    return section
