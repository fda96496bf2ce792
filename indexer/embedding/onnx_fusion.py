"""Graph surgery on the exported ONNX model: its attention as one MultiHeadAttention node.

torch's exporter writes each layer's scaled dot-product attention as ~40 small operators
(shape arithmetic, reshapes and transposes per head, scaling, the mask's Where, Softmax,
the NaN guard, two MatMuls). ONNX Runtime's own transformer optimizer does not recognise this
form (checked with onnxruntime 1.32: `optimize_model(model_type="bert")` fused none of
them), so `fuse_attention` finds it by its structure and replaces it with ONNX Runtime's
`com.microsoft.MultiHeadAttention` (query, key, value, their biases, the key padding mask):
1,269 nodes become 299 for multilingual-e5-small. The int8 recipe applies it before
quantising (indexer/embedding/onnx_export.py); every build is then checked against the torch
model's vectors, so a wrong match could not ship.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

MASK = "mha_key_padding_mask"
# Operators between a projection and the attention's MatMul: per-head reshape, transpose,
# the scaling by head_size^-0.25 on each side.
_TO_SCORES = frozenset({"Mul", "Transpose", "Reshape"})
_TO_VALUES = frozenset({"Transpose", "Reshape"})


class _Graph:
    """Lookups over a graph's nodes: who produces a tensor, who reads it, constant values."""

    def __init__(self, graph: Any) -> None:
        from onnx import numpy_helper

        self.producer = {out: node for node in graph.node for out in node.output}
        self.readers: dict[str, list[Any]] = defaultdict(list)
        for node in graph.node:
            for name in node.input:
                self.readers[name].append(node)
        self.weights = {init.name: init for init in graph.initializer}
        self._to_array = numpy_helper.to_array

    def constant(self, name: str) -> Any:
        """The value of `name` if it is an initializer or a Constant node's output."""
        if name in self.weights:
            return self._to_array(self.weights[name])
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant" and node.attribute:
            attr = node.attribute[0]
            if attr.name == "value":
                return self._to_array(attr.t)
        return None

    def back_through(self, name: str, ops: frozenset[str]) -> tuple[str, float]:
        """Follow `name`'s producers back while they are `ops` (their data input; a Mul only
        by a scalar constant); the tensor reached and the product of the scalars passed."""
        scale = 1.0
        while True:
            node = self.producer.get(name)
            if node is None or node.op_type not in ops:
                return name, scale
            if node.op_type != "Mul":
                name = node.input[0]
                continue
            left, right = (self.constant(x) for x in node.input)
            if right is not None and right.size == 1:
                scale *= float(right.reshape(()))
                name = node.input[0]
            elif left is not None and left.size == 1:
                scale *= float(left.reshape(()))
                name = node.input[1]
            else:
                return name, scale

    def projection(self, name: str) -> tuple[str, Any] | None:
        """(MatMul output, bias) when `name` is Add(MatMul output, constant 1-D bias)."""
        node = self.producer.get(name)
        if node is None or node.op_type != "Add":
            return None
        values = [self.constant(x) for x in node.input]
        for i in (0, 1):
            other = node.input[1 - i]
            source = self.producer.get(other)
            bias = values[i]
            if bias is not None and bias.ndim == 1 and source and source.op_type == "MatMul":
                return other, bias
        return None


def _match(g: _Graph, softmax: Any) -> tuple[list[str], Any, float, str] | None:
    """One layer's attention around `softmax`: ([q, k, v] projections without bias, the
    biases concatenated, the scale, the name of the merged-heads output), or None."""
    add = g.producer.get(softmax.input[0])
    if add is None or add.op_type != "Add":
        return None
    scores = g.producer.get(add.input[0])
    if scores is None or scores.op_type != "MatMul":
        return None
    q_name, q_scale = g.back_through(scores.input[0], _TO_SCORES)
    k_name, k_scale = g.back_through(scores.input[1], _TO_SCORES)
    probs = softmax.output[0]
    # The exporter's NaN guard: Where(IsNaN(p), 0, p).
    guards = [n for n in g.readers[probs] if n.op_type == "Where" and n.input[2] == probs]
    if guards:
        probs = guards[0].output[0]
    weighted = [n for n in g.readers[probs] if n.op_type == "MatMul" and n.input[0] == probs]
    if len(weighted) != 1:
        return None
    v_name, _ = g.back_through(weighted[0].input[1], _TO_VALUES)
    # The heads merged back: the Reshape/Transpose chain after the weighted sum.
    out = weighted[0].output[0]
    while True:
        nxt = [n for n in g.readers[out] if n.op_type != "Shape"]
        if len(nxt) != 1 or nxt[0].op_type not in _TO_VALUES:
            break
        out = nxt[0].output[0]
    if out == weighted[0].output[0]:
        return None
    parts = [g.projection(name) for name in (q_name, k_name, v_name)]
    if any(p is None for p in parts):
        return None
    sources = [p[0] for p in parts if p is not None]
    bias = np.concatenate([p[1] for p in parts if p is not None]).astype(np.float32)
    return sources, bias, q_scale * k_scale, out


def fuse_attention(model: Any, num_heads: int, mask_input: str = "attention_mask") -> int:
    """Replace every attention of `model` (in place) by MultiHeadAttention; how many.

    The nodes that only served the old attention are removed, and the graph is left in
    topological order. Nothing changes when no attention matches.
    """
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    g = _Graph(graph)
    fused: list[Any] = []
    for softmax in [n for n in graph.node if n.op_type == "Softmax"]:
        found = _match(g, softmax)
        if found is None:
            continue
        sources, bias, scale, out = found
        tag = f"mha{len(fused)}"
        graph.initializer.append(numpy_helper.from_array(bias, f"{tag}_bias"))
        fused.append(
            helper.make_node(
                "MultiHeadAttention",
                [*sources, f"{tag}_bias", MASK],
                [out],
                name=tag,
                domain="com.microsoft",
                num_heads=num_heads,
                scale=scale,
            )
        )
    if not fused:
        log.info("no attention matched: the graph is quantised as exported")
        return 0
    mask = helper.make_node("Cast", [mask_input], [MASK], name="mha_mask", to=TensorProto.INT32)
    replaced = {out for node in fused for out in node.output}
    kept = [n for n in graph.node if not set(n.output) & replaced]
    nodes = _live(_topological([mask, *kept, *fused], graph), graph)
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in nodes for name in node.input}
    inits = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return len(fused)


def _topological(nodes: list[Any], graph: Any) -> list[Any]:
    ready = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    order: list[Any] = []
    pending = nodes
    while pending:
        rest = []
        for node in pending:
            if all(name in ready for name in node.input):
                order.append(node)
                ready.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise ValueError("the rewritten graph has a node whose inputs are never produced")
        pending = rest
    return order


def _live(nodes: list[Any], graph: Any) -> list[Any]:
    """`nodes` without those no graph output depends on (in the same order)."""
    needed = {o.name for o in graph.output}
    live = []
    for node in reversed(nodes):
        if set(node.output) & needed:
            live.append(node)
            needed.update(node.input)
    return live[::-1]
