"""Shared helpers: deterministic JSON, float rounding, manifests, ONNX export."""
from __future__ import annotations

import hashlib
import json
import os
from typing import Iterable

import numpy as np
import torch

SMOLVLM_CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


def render_smolvlm_template(messages, add_generation_prompt: bool) -> str:
    """Python rendering of SMOLVLM_CHAT_TEMPLATE (independent of any jinja engine)."""
    out = "<|im_start|>"
    for m in messages:
        out += m["role"].capitalize()
        out += ":" if m["content"][0]["type"] == "image" else ": "
        for line in m["content"]:
            if line["type"] == "text":
                out += line["text"]
            elif line["type"] == "image":
                out += "<image>"
        out += "<end_of_utterance>\n"
    if add_generation_prompt:
        out += "Assistant:"
    return out


def r7(x) -> list:
    """Round to 7 significant digits; returns nested python lists."""
    a = np.asarray(x, dtype=np.float64)
    flat = [float(f"{v:.7g}") for v in a.reshape(-1).tolist()]
    return flat if a.ndim <= 1 else np.array(flat).reshape(a.shape).tolist()


def flat7(x) -> list:
    return [float(f"{v:.7g}") for v in np.asarray(x, dtype=np.float64).reshape(-1).tolist()]


def write_json(path: str, obj, indent=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        if indent is None:
            f.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n")
        else:
            f.write(json.dumps(obj, ensure_ascii=False, indent=indent) + "\n")


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(pack_dir: str, name: str, description: str, seed: int, extra: dict | None = None):
    files = {}
    for root, _, names in os.walk(pack_dir):
        for n in names:
            p = os.path.join(root, n)
            rel = os.path.relpath(p, pack_dir).replace(os.sep, "/")
            if rel == "manifest.json":
                continue
            files[rel] = sha256_file(p)
    m = {"name": name, "description": description, "seed": seed, **(extra or {}),
         "files": dict(sorted(files.items()))}
    write_json(os.path.join(pack_dir, "manifest.json"), m, indent=2)


def kv_cache_io(first_input: str, num_layers: int, kv_heads: int, head_dim: int, batch: int = 2, past: int = 2):
    """Names, dynamic axes and dummy past tensors of a decoder-style export with a key/value cache: `first_input`
    [batch, seq] (input_ids or inputs_embeds), attention_mask [batch, past + seq], position_ids [batch, seq],
    past_key_values.{i}.key/value -> logits [batch, seq, ...], present.{i}.key/value (the layout optimum writes).
    Returns (input_names, output_names, dynamic_axes, past_tensors)."""
    in_names, out_names, tensors = [first_input, "attention_mask", "position_ids"], ["logits"], []
    dyn = {first_input: {0: "batch_size", 1: "sequence_length"},
           "attention_mask": {0: "batch_size", 1: "total_sequence_length"},
           "position_ids": {0: "batch_size", 1: "sequence_length"},
           "logits": {0: "batch_size", 1: "sequence_length"}}
    g = torch.Generator().manual_seed(0)
    for i in range(num_layers):
        for kv in ("key", "value"):
            tensors.append(torch.randn(batch, kv_heads, past, head_dim, generator=g))
            n_in, n_out = f"past_key_values.{i}.{kv}", f"present.{i}.{kv}"
            in_names.append(n_in)
            out_names.append(n_out)
            dyn[n_in] = {0: "batch_size", 2: "past_sequence_length"}
            dyn[n_out] = {0: "batch_size", 2: "total_sequence_length"}
    return in_names, out_names, dyn, tensors


def export_onnx(module: torch.nn.Module, args: tuple, path: str, input_names: Iterable[str],
                output_names: Iterable[str], dynamic_axes: dict, opset: int = 17, static_output_dims=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    module.eval()
    with torch.no_grad():
        torch.onnx.export(module, args, path, input_names=list(input_names), output_names=list(output_names),
                          dynamic_axes=dynamic_axes, opset_version=opset, do_constant_folding=True)
    import onnx
    m = onnx.load(path)
    # pin output dims the exporter could not infer (e.g. image_features [n, 16, 128])
    for out in m.graph.output:
        for axis, value in (static_output_dims or {}).get(out.name, {}).items():
            d = out.type.tensor_type.shape.dim[axis]
            d.ClearField("dim_param")
            d.dim_value = value
    onnx.checker.check_model(m)
    # strip producer version noise so rebuilds are byte-identical across torch patch versions
    m.producer_name = "tools.modelzoo"
    m.producer_version = "1"
    onnx.save(m, path)


def tokenizer_config(extra: dict | None = None) -> dict:
    cfg = {
        "add_bos_token": False,
        "add_eos_token": False,
        "add_prefix_space": False,
        "bos_token": "<|im_start|>",
        "eos_token": "<end_of_utterance>",
        "pad_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "clean_up_tokenization_spaces": False,
        "model_max_length": 512,
        "tokenizer_class": "GPT2Tokenizer",
    }
    cfg.update(extra or {})
    return cfg


def special_tokens_map(tok) -> dict:
    return {
        "additional_special_tokens": [t for t in tok.added if t not in ("<|endoftext|>", "<|im_start|>", "<end_of_utterance>")],
        "bos_token": "<|im_start|>",
        "eos_token": "<end_of_utterance>",
        "pad_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
    }


def pad_right(rows):
    """Token rows -> (input_ids, attention_mask), right-padded with id 0."""
    L = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), L, dtype=torch.long)
    am = torch.zeros(len(rows), L, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
        am[i, :len(r)] = 1
    return ids, am
