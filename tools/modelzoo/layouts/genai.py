"""The Gemma 3 reference model written as onnxruntime-genai writes decoders (its model builder's node patterns),
straight from the PyTorch weights: SimplifiedLayerNormalization (Gemma's 1 + w folded into gamma, as the builder
does), GroupQueryAttention with rotary inside (do_rotary, cos/sin caches per layer type) and local_window_size on
sliding layers, q/k norms as SimplifiedLayerNormalization over head_dim, residual adds fused into
SkipSimplifiedLayerNormalization (output 3 = the sum), sandwich post-norms, FastGelu. Inputs inputs_embeds,
attention_mask, past_key_values.*; no position_ids (GroupQueryAttention derives positions from the mask).
"""
from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from .model import CausalLM

MS = "com.microsoft"
MAX_POSITIONS = 128


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float32).numpy().copy()


def export_genai(lm: CausalLM, path: str):
    c = lm.c
    assert c.gemma, "the genai writer covers the Gemma 3 layout"
    H, KV, D, hid = c.num_attention_heads, c.num_key_value_heads, c.head_dim, c.hidden_size
    nodes, inits = [], []

    def init(name, array):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(op, inputs, outputs, name, domain=None, **attrs):
        nodes.append(helper.make_node(op, inputs, outputs, name=name, domain=domain, **attrs))
        return outputs

    def gamma(norm, name):
        return init(name, _np(1.0 + norm.weight))  # the builder folds Gemma's (1 + w) into gamma

    def simplified(x, norm, name):
        return node("SimplifiedLayerNormalization", [x, gamma(norm, f"{name}.weight")], [f"{name}/output_0"],
                    f"{name}/LayerNorm", axis=-1, epsilon=c.rms_norm_eps, stash_type=1)[0]

    def skip(branch, residual, norm_weight, name, with_sum=True):
        outs = [f"{name}/output_0", "", "", f"{name}/output_3"] if with_sum else [f"{name}/output_0"]
        o = node("SkipSimplifiedLayerNormalization", [branch, residual, norm_weight], outs, f"{name}/SkipLayerNorm",
                 domain=MS, epsilon=c.rms_norm_eps)
        return o[0], (o[3] if with_sum else None)

    def matmul(x, linear, name):
        return node("MatMul", [x, init(f"{name}.weight", _np(linear.weight).T)], [f"{name}/output_0"], f"{name}/MatMul")[0]

    # attention_mask -> seqlens_k (valid length - 1) and total length, int32, as the builder's attn_mask_reformat.
    m = "/model/attn_mask_reformat/attn_mask_subgraph"
    node("ReduceSum", ["attention_mask", init("one_axis", np.array([1], np.int64))], [f"{m}/ReduceSum/output_0"], f"{m}/ReduceSum", keepdims=0)
    node("Sub", [f"{m}/ReduceSum/output_0", init("one_i64", np.array(1, np.int64))], [f"{m}/Sub/output_0"], f"{m}/Sub")
    node("Cast", [f"{m}/Sub/output_0"], ["seqlens_k"], f"{m}/Sub/Cast", to=TensorProto.INT32)
    node("Shape", ["attention_mask"], [f"{m}/Shape/output_0"], f"{m}/Shape")
    node("Gather", [f"{m}/Shape/output_0", init("idx1", np.array(1, np.int64))], [f"{m}/Gather/output_0"], f"{m}/Gather", axis=0)
    node("Cast", [f"{m}/Gather/output_0"], ["total_seq_len"], f"{m}/Gather/Cast", to=TensorProto.INT32)

    caches = {}
    for kind, theta in (("global", c.rope_theta), ("local", c.rope_local_base_freq)):
        inv = 1.0 / (theta ** (np.arange(0, D, 2, dtype=np.float32) / D))
        freqs = np.arange(MAX_POSITIONS, dtype=np.float32)[:, None] * inv[None, :]
        caches[kind] = (init(f"cos_cache_{kind}", np.cos(freqs).astype(np.float32)),
                        init(f"sin_cache_{kind}", np.sin(freqs).astype(np.float32)))

    layers = lm.model.layers
    normed = simplified("inputs_embeds", layers[0].input_layernorm, "/model/layers.0/input_layernorm")
    residual = "inputs_embeds"
    for l, layer in enumerate(layers):
        p, a = f"/model/layers.{l}", layer.self_attn

        def head_norm(x, n, norm, name):
            r = node("Reshape", [x, init(f"{name}/shape", np.array([0, 0, n, D], np.int64))], [f"{name}/Reshape/output_0"], f"{name}/Reshape")[0]
            y = simplified(r, norm, name)
            return node("Reshape", [y, init(f"{name}/shape_1", np.array([0, 0, n * D], np.int64))], [f"{name}/Reshape_1/output_0"], f"{name}/Reshape_1")[0]

        q = head_norm(matmul(normed, a.q_proj, f"{p}/attn/q_proj"), H, a.q_norm, f"{p}/attn/q_norm")
        k = head_norm(matmul(normed, a.k_proj, f"{p}/attn/k_proj"), KV, a.k_norm, f"{p}/attn/k_norm")
        v = matmul(normed, a.v_proj, f"{p}/attn/v_proj")
        sliding = c.is_sliding(l)
        cos, sin = caches["local" if sliding else "global"]
        attrs = dict(num_heads=H, kv_num_heads=KV, scale=float(a.scale), do_rotary=1, rotary_interleaved=0)
        if sliding:
            # HF's window keeps keys q - W < k <= q; GroupQueryAttention's local_window_size = W does the same
            # (checked against the reference: W - 1 changes the tokens, W matches to 3e-6).
            attrs["local_window_size"] = c.sliding_window
        attn = node("GroupQueryAttention", [q, k, v, f"past_key_values.{l}.key", f"past_key_values.{l}.value", "seqlens_k",
                                            "total_seq_len", cos, sin],
                    [f"{p}/attn/GroupQueryAttention/output_0", f"present.{l}.key", f"present.{l}.value"],
                    f"{p}/attn/GroupQueryAttention", domain=MS, **attrs)[0]
        o = matmul(attn, a.o_proj, f"{p}/attn/o_proj")
        post = simplified(o, layer.post_attention_layernorm, f"{p}/post_attention_layernorm")
        ff_normed, mid = skip(post, residual, gamma(layer.pre_feedforward_layernorm, f"{p}/pre_feedforward_layernorm.weight"),
                              f"{p}/pre_feedforward_layernorm")
        gate = matmul(ff_normed, layer.mlp.gate_proj, f"{p}/mlp/gate_proj")
        up = matmul(ff_normed, layer.mlp.up_proj, f"{p}/mlp/up_proj")
        act = node("FastGelu", [gate], [f"{p}/mlp/act_fn/output_0"], f"{p}/mlp/act_fn/FastGelu", domain=MS)[0]
        prod = node("Mul", [act, up], [f"{p}/mlp/Mul/output_0"], f"{p}/mlp/Mul")[0]
        down = matmul(prod, layer.mlp.down_proj, f"{p}/mlp/down_proj")
        post_ff = simplified(down, layer.post_feedforward_layernorm, f"{p}/post_feedforward_layernorm")
        last = l == len(layers) - 1
        nxt = "/model/layers.%d/final_norm_layernorm" % len(layers) if last else f"/model/layers.{l + 1}/input_layernorm"
        weight = gamma(lm.model.norm, "model.norm.weight") if last else gamma(layers[l + 1].input_layernorm, f"{nxt}.weight")
        normed, residual = skip(post_ff, mid, weight, nxt, with_sum=not last)
    node("MatMul", [normed, init("lm_head.MatMul.weight", _np(lm.lm_head.weight).T)], ["logits"], "/lm_head/MatMul")

    f32 = TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info("inputs_embeds", f32, ["batch_size", "sequence_length", hid]),
              helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch_size", "total_sequence_length"])]
    outputs = [helper.make_tensor_value_info("logits", f32, ["batch_size", "sequence_length", c.vocab_size])]
    for l in range(c.num_hidden_layers):
        for kv in ("key", "value"):
            inputs.append(helper.make_tensor_value_info(f"past_key_values.{l}.{kv}", f32, ["batch_size", KV, "past_sequence_length", D]))
            outputs.append(helper.make_tensor_value_info(f"present.{l}.{kv}", f32, ["batch_size", KV, "total_sequence_length", D]))
    graph = helper.make_graph(nodes, "genai-gemma3", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(MS, 1)],
                              producer_name="tools.modelzoo", producer_version="1")
    model.ir_version = 8
    onnx.save(model, path)
