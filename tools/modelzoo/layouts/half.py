"""float16 decoders, in the two forms they ship in.

`to_float16_body`: a float16 body behind float32 I/O (onnxconverter-common's keep_io_types conversion): every float
initializer, Constant and Cast target becomes float16, and Casts at the graph boundary keep inputs_embeds,
past_key_values.*, logits and present.* float32, so a float32 runtime feeds it as is.

`to_float16_io`: the same body with float16 I/O, as `optimum-cli export onnx --dtype fp16` writes it: inputs_embeds,
past_key_values.*, logits and present.* are declared float16 (the runtime converts at the session boundary). Also
used on embed_tokens.onnx, whose inputs_embeds output is then float16 too.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

F32, F16 = TensorProto.FLOAT, TensorProto.FLOAT16


# onnxconverter-common's convert_float_to_float16 clamps constants to +-max_finite_val (1e4 by default). That matters
# for the -1e9 mask fill: cast as is it becomes -inf, and a query whose keys are all masked (a left-padded row's
# padding) gets softmax(-inf, ..., -inf) = NaN, which flows into the cache and the real positions of the next layer.
MAX_FINITE = 1e4


def _half_tensor(t: onnx.TensorProto) -> onnx.TensorProto:
    a = numpy_helper.to_array(t)
    if a.dtype.kind == "f":
        a = np.where(a > MAX_FINITE, MAX_FINITE, np.where(a < -MAX_FINITE, -MAX_FINITE, a))
    return numpy_helper.from_array(a.astype(np.float16), t.name)


def _half_constants(g: onnx.GraphProto):
    for i, t in enumerate(g.initializer):
        if t.data_type == F32:
            g.initializer[i].CopyFrom(_half_tensor(t))
    for n in g.node:
        for a in n.attribute:
            if n.op_type == "Cast" and a.name == "to" and a.i == F32:
                a.i = F16
            if a.type == onnx.AttributeProto.TENSOR and a.t.data_type == F32:
                a.t.CopyFrom(_half_tensor(a.t))


def to_float16_io(path: str):
    m = onnx.load(path)
    g = m.graph
    _half_constants(g)
    # No boundary Casts: every float input and output is declared float16.
    for v in list(g.input) + list(g.output):
        if v.type.tensor_type.elem_type == F32:
            v.type.tensor_type.elem_type = F16
    del g.value_info[:]
    onnx.save(m, path)


def to_float16_body(path: str):
    m = onnx.load(path)
    g = m.graph
    _half_constants(g)
    # Graph boundary: float32 outside, float16 inside.
    head, tail = [], []
    for v in g.input:
        if v.type.tensor_type.elem_type != F32:
            continue
        inner = f"{v.name}/fp16"
        for n in g.node:
            for k, name in enumerate(n.input):
                if name == v.name:
                    n.input[k] = inner
        head.append(helper.make_node("Cast", [v.name], [inner], name=f"/io/{v.name}/Cast", to=F16))
    for v in g.output:
        if v.type.tensor_type.elem_type != F32:
            continue
        inner = f"{v.name}/fp16"
        for n in g.node:
            for k, name in enumerate(n.output):
                if name == v.name:
                    n.output[k] = inner
            for k, name in enumerate(n.input):
                if name == v.name:
                    n.input[k] = inner
        tail.append(helper.make_node("Cast", [inner], [v.name], name=f"/io/{v.name}/Cast", to=F32))
    nodes = head + list(g.node) + tail
    del g.node[:]
    g.node.extend(nodes)
    del g.value_info[:]
    onnx.save(m, path)
