"""Static checks of the built packs (no onnxruntime needed):

    /usr/bin/python3 -m tools.modelzoo.verify --out models --samples samples

- every manifest.json matches the files on disk (sha256);
- ONNX inputs/outputs (names, dtypes, symbolic/static dims) are what the runtime and transformers.js expect;
- per decoder layer, the o_proj MatMul and the residual Add that ends the layer exist under HF-style names
  (`/model/layers.N/self_attn/o_proj/MatMul`, `/model/layers.N/Add_1`).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import onnx

from .common import sha256_file

F32, I64, BOOL = onnx.TensorProto.FLOAT, onnx.TensorProto.INT64, onnx.TensorProto.BOOL


def io(vis):
    return {v.name: (v.type.tensor_type.elem_type, [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim])
            for v in vis}


def expect(cond, msg, errors):
    if not cond:
        errors.append(msg)


def check_manifest(d, errors):
    m = json.load(open(os.path.join(d, "manifest.json")))
    for rel, h in m["files"].items():
        p = os.path.join(d, rel)
        expect(os.path.exists(p) and sha256_file(p) == h, f"{d}: {rel} does not match manifest", errors)


def check_vlm(d, errors):
    cfg = json.load(open(os.path.join(d, "config.json")))
    t = cfg["text_config"]
    L, kvh, hd, H, V = t["num_hidden_layers"], t["num_key_value_heads"], t["head_dim"], t["hidden_size"], t["vocab_size"]
    dec = onnx.load(os.path.join(d, "onnx", "decoder_model_merged.onnx"))
    ins, outs = io(dec.graph.input), io(dec.graph.output)
    expect(ins["inputs_embeds"] == (F32, ["batch_size", "sequence_length", H]), "inputs_embeds", errors)
    expect(ins["attention_mask"] == (I64, ["batch_size", "total_sequence_length"]), "attention_mask", errors)
    expect(ins["position_ids"] == (I64, ["batch_size", "sequence_length"]), "position_ids", errors)
    expect(outs["logits"] == (F32, ["batch_size", "sequence_length", V]), "logits", errors)
    names = {n.name for n in dec.graph.node}
    for i in range(L):
        for kv in ("key", "value"):
            expect(ins[f"past_key_values.{i}.{kv}"] == (F32, ["batch_size", kvh, "past_sequence_length", hd]), f"past {i}", errors)
            expect(outs[f"present.{i}.{kv}"] == (F32, ["batch_size", kvh, "total_sequence_length", hd]), f"present {i}", errors)
        for n in (f"/model/layers.{i}/self_attn/o_proj/MatMul", f"/model/layers.{i}/Add_1", f"/model/layers.{i}/Add"):
            expect(n in names, f"missing node {n}", errors)
    vis = onnx.load(os.path.join(d, "onnx", "vision_encoder.onnx"))
    vi, vo = io(vis.graph.input), io(vis.graph.output)
    size = cfg["vision_config"]["image_size"]
    expect(vi["pixel_values"] == (F32, ["batch_size", "num_images", 3, size, size]), "pixel_values", errors)
    expect(vi["pixel_attention_mask"] == (BOOL, ["batch_size", "num_images", size, size]), "pixel_attention_mask", errors)
    seq = json.load(open(os.path.join(d, "processor_config.json")))["image_seq_len"]
    expect(vo["image_features"] == (F32, ["batch_size*num_images", seq, H]), "image_features", errors)
    emb = onnx.load(os.path.join(d, "onnx", "embed_tokens.onnx"))
    expect(io(emb.graph.input)["input_ids"][0] == I64, "embed input_ids", errors)
    expect(io(emb.graph.output)["inputs_embeds"][1][-1] == H, "inputs_embeds", errors)


def check_clip(d, errors):
    tm = onnx.load(os.path.join(d, "onnx", "text_model.onnx"))
    expect(set(io(tm.graph.input)) == {"input_ids", "attention_mask"}, "clip text inputs", errors)
    expect("text_embeds" in io(tm.graph.output), "text_embeds", errors)
    vm = onnx.load(os.path.join(d, "onnx", "vision_model.onnx"))
    expect(set(io(vm.graph.input)) == {"pixel_values"}, "clip vision inputs", errors)
    expect("image_embeds" in io(vm.graph.output), "image_embeds", errors)


def check_guard(d, errors):
    m = onnx.load(os.path.join(d, "onnx", "model.onnx"))
    expect(set(io(m.graph.input)) == {"input_ids", "attention_mask"}, "guard inputs", errors)
    expect(io(m.graph.output)["logits"] == (F32, ["batch_size", 1]), "guard logits", errors)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="models")
    ap.add_argument("--samples", default="samples")
    a = ap.parse_args(argv)
    errors = []
    for name, fn in (("tiny-vlm", check_vlm), ("tiny-clip", check_clip), ("tiny-guard", check_guard)):
        d = os.path.join(a.out, name)
        check_manifest(d, errors)
        fn(d, errors)
    check_manifest(os.path.join(a.samples, "demo-batch"), errors)
    for e in errors:
        print("FAIL:", e)
    print("ok" if not errors else f"{len(errors)} problems")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
