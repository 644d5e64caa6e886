"""Adds onnx/model_with_past.onnx (guard.ClassifierWithPastForExport) to an existing reward pack, from the weights
of its onnx/model.onnx, without retraining: `python3 -m tools.modelzoo.guard_past models/factory-guard ...`.

The weights are read back by the graph's structure (each layer's q, k, v, o, gate, up, down MatMuls in order, then
the score head; norms and the embedding by name), loaded into guard.SequenceClassifier, and checked against the
pack's own reference/golden.json logits before anything is written; the with-past export is then checked, in torch,
to score a prefix + suffix exactly as the whole sequence. New builds export the file themselves (write_guard_pack).
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from . import common
from .guard import WITH_PAST_FILE, ClassifierWithPastForExport, SequenceClassifier, export_with_past
from .tinyvlm.model import TextConfig


def load_classifier(pack_dir: str) -> tuple[SequenceClassifier, TextConfig]:
    cfg = json.load(open(os.path.join(pack_dir, "config.json")))
    c = TextConfig(vocab_size=cfg["vocab_size"], hidden_size=cfg["hidden_size"], num_hidden_layers=cfg["num_hidden_layers"],
                   num_attention_heads=cfg["num_attention_heads"], num_key_value_heads=cfg["num_key_value_heads"],
                   head_dim=cfg["head_dim"], intermediate_size=cfg["intermediate_size"],
                   max_position_embeddings=cfg["max_position_embeddings"], rms_norm_eps=cfg["rms_norm_eps"],
                   rope_theta=cfg["rope_theta"])
    model = SequenceClassifier(c, num_labels=cfg["num_labels"]).eval()
    m = onnx.load(os.path.join(pack_dir, "onnx", "model.onnx"))
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    matmuls = [inits[n.input[1]] for n in m.graph.node if n.op_type == "MatMul" and n.input[1] in inits]
    names = [f"model.layers.{i}.{p}.weight" for i in range(c.num_hidden_layers)
             for p in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                       "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")] + ["score.weight"]
    if len(matmuls) != len(names):
        raise SystemExit(f"{pack_dir}: {len(matmuls)} weight MatMuls, expected {len(names)}")
    state = {n: torch.from_numpy(np.ascontiguousarray(w.T)) for n, w in zip(names, matmuls)}
    for name, t in inits.items():
        if name.startswith("model."):
            state[name] = torch.from_numpy(t.copy())
    model.load_state_dict(state, strict=True)
    return model, c


def check_golden(pack_dir: str, model: SequenceClassifier) -> float:
    golden = json.load(open(os.path.join(pack_dir, "reference", "golden.json")))
    worst = 0.0
    with torch.no_grad():
        for conv in golden["conversations"]:
            ids = conv["input_ids"]
            got = model(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long))[0].numpy()
            worst = max(worst, float(np.abs(got - np.asarray(conv["logits"], dtype=np.float32)).max()))
    if worst > 1e-4:
        raise SystemExit(f"{pack_dir}: weights read back give logits {worst:.2e} off the golden ones")
    return worst


def check_with_past(model: SequenceClassifier, c: TextConfig) -> float:
    """A prefix run once and three suffixes continued from it score as the three whole sequences do."""
    g = torch.Generator().manual_seed(1)
    prefix = torch.randint(3, c.vocab_size, (1, 9), generator=g)
    suffixes = [torch.randint(3, c.vocab_size, (1, n), generator=g) for n in (1, 4, 6)]
    wrapped = ClassifierWithPastForExport(model)
    worst = 0.0
    with torch.no_grad():
        zeros = [torch.zeros(1, c.num_key_value_heads, 0, c.head_dim)] * (2 * c.num_hidden_layers)
        out = wrapped(prefix, torch.ones(1, 9, dtype=torch.long), torch.arange(9)[None], *zeros)
        past = out[1:]
        for s in suffixes:
            n = s.shape[1]
            cont = wrapped(s, torch.ones(1, 9 + n, dtype=torch.long), torch.arange(9, 9 + n)[None], *past)[0][0, -1]
            whole = torch.cat([prefix, s], dim=1)
            full = model(whole, torch.ones_like(whole))[0]
            worst = max(worst, float((cont - full).abs().max()))
    if worst > 1e-5:
        raise SystemExit(f"the with-past classifier is {worst:.2e} off the whole-sequence one")
    return worst


def main(packs: list[str]) -> None:
    for pack in packs:
        model, c = load_classifier(pack)
        golden = check_golden(pack, model)
        exact = check_with_past(model, c)
        export_with_past(pack, model, c)
        manifest_path = os.path.join(pack, "manifest.json")
        manifest = json.load(open(manifest_path))
        manifest["files"][WITH_PAST_FILE] = common.sha256_file(os.path.join(pack, WITH_PAST_FILE))
        manifest["files"] = dict(sorted(manifest["files"].items()))
        common.write_json(manifest_path, manifest, indent=2)
        print(f"{pack}: golden logits within {golden:.1e}, with-past vs whole {exact:.1e}; wrote {WITH_PAST_FILE}")


if __name__ == "__main__":
    main(sys.argv[1:])
