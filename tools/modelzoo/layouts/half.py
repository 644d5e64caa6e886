"""A float16 decoder body behind float32 I/O (onnxconverter-common's keep_io_types conversion, the usual way fp16
ONNX decoders are made): every float initializer, Constant and Cast target becomes float16, and Casts at the graph
boundary keep inputs_embeds, past_key_values.*, logits and present.* float32, so a float32 runtime feeds it as is.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

F32, F16 = TensorProto.FLOAT, TensorProto.FLOAT16


def _half_tensor(t: onnx.TensorProto) -> onnx.TensorProto:
    a = numpy_helper.to_array(t)
    # -1e9 style mask fills overflow to -inf in fp16, which softmax handles as a mask.
    with np.errstate(over="ignore"):
        return numpy_helper.from_array(a.astype(np.float16), t.name)


def to_float16_body(path: str):
    m = onnx.load(path)
    g = m.graph
    for i, t in enumerate(g.initializer):
        if t.data_type == F32:
            g.initializer[i].CopyFrom(_half_tensor(t))
    for n in g.node:
        for a in n.attribute:
            if n.op_type == "Cast" and a.name == "to" and a.i == F32:
                a.i = F16
            if a.type == onnx.AttributeProto.TENSOR and a.t.data_type == F32:
                a.t.CopyFrom(_half_tensor(a.t))
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
