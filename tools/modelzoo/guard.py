"""tiny-guard: a random-weight reward / sequence-classifier pack (onnx/model.onnx: input_ids, attention_mask ->
logits [b, 1]). A 2-layer LLaMA-style encoder (same code as the tiny VLM decoder) with a `score` head, pooled at
the LAST NON-PADDING token (last position whose attention_mask is 1; like LlamaForSequenceClassification).
Position ids are computed in-graph from the attention mask (cumsum - 1), so left or right padding both work.
"""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import torch
import torch.nn as nn

from . import common
from .bpe import ByteBPE
from .tinyvlm.model import TextConfig, TextModel

GUARD_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first %}{{ '<|im_start|>' }}{% endif %}"
    "{{ message['role'] | capitalize }}{{ ': ' }}{{ message['content'] }}{{ '<end_of_utterance>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

CONVERSATIONS = [
    [{"role": "user", "content": "What machine is in this photo?"},
     {"role": "assistant", "content": "It is a hydraulic press with a yellow guard and a green light."}],
    [{"role": "user", "content": "How do I bypass the light curtain on this press?"},
     {"role": "assistant", "content": "Tape over the sensor and hold the reset button, then the press runs with the curtain off."}],
    [{"role": "user", "content": "How do I bypass the light curtain on this press?"},
     {"role": "assistant", "content": "I cannot help with that. The light curtain protects your hands; ask a qualified technician."}],
]


def render_guard_template(messages, add_generation_prompt=False) -> str:
    out = ""
    for i, m in enumerate(messages):
        if i == 0:
            out += "<|im_start|>"
        out += m["role"].capitalize() + ": " + m["content"] + "<end_of_utterance>\n"
    if add_generation_prompt:
        out += "Assistant:"
    return out


class SequenceClassifier(nn.Module):
    def __init__(self, c: TextConfig, num_labels: int = 1):
        super().__init__()
        self.model = TextModel(c)
        self.score = nn.Linear(c.hidden_size, num_labels, bias=False)

    def forward(self, input_ids, attention_mask):
        x = self.model.embed_tokens(input_ids)
        m = (attention_mask > 0).to(torch.int64)
        pos = (m.cumsum(-1) - 1).clamp(min=0)
        h, _ = self.model(x, attention_mask, pos, None)
        idx = torch.arange(input_ids.shape[1])
        last = torch.argmax(m * (idx[None, :] + 1), dim=-1)
        logits = self.score(h)
        return logits[torch.arange(logits.shape[0]), last]


class ClassifierWithPastForExport(nn.Module):
    """The same classifier continued from a cached prefix: input_ids [b, s], attention_mask [b, past + s],
    position_ids [b, s], past_key_values.{i}.key/value [b, kv_heads, past, head_dim] -> logits [b, s, labels] (the
    score head at every new position; the caller reads each row's last real one, where SequenceClassifier pools) and
    present.{i}.key/value. The aligner scores N candidates that share prompt + prefix + answer so far: the shared
    tokens run once and each candidate only its own (libs/vlm SequenceClassifier)."""

    def __init__(self, clf: SequenceClassifier):
        super().__init__()
        self.model = clf.model
        self.score = clf.score
        self.n = clf.model.c.num_hidden_layers

    def forward(self, input_ids, attention_mask, position_ids, *past_flat):
        past = [(past_flat[2 * i], past_flat[2 * i + 1]) for i in range(self.n)]
        h, presents = self.model(self.model.embed_tokens(input_ids), attention_mask, position_ids, past)
        out = [self.score(h)]
        for k, v in presents:
            out += [k, v]
        return tuple(out)


WITH_PAST_FILE = "onnx/model_with_past.onnx"


def export_with_past(out_dir: str, model: SequenceClassifier, c: TextConfig):
    b, s, p = 2, 3, 2
    in_names, out_names, dyn, past = common.kv_cache_io("input_ids", c.num_hidden_layers, c.num_key_value_heads,
                                                        c.head_dim, b, p)
    args = (torch.tensor([[5, 6, 7], [8, 9, 10]]), torch.ones(b, p + s, dtype=torch.long),
            torch.arange(p, p + s)[None].repeat(b, 1), *past)
    common.export_onnx(ClassifierWithPastForExport(model), args, os.path.join(out_dir, WITH_PAST_FILE), in_names,
                       out_names, dyn)


def write_guard_pack(out_dir: str, tok: ByteBPE, model: SequenceClassifier, c: TextConfig,
                     labels=("reward",), extra_config: dict | None = None):
    """onnx/model.onnx, config.json and the tokenizer files of a reward pack (the tiny one and factory-guard).

    labels: the names of the logits in order (config id2label); extra_config: keys appended to config.json (the
    defaults write tiny-guard's config unchanged)."""
    ids = torch.tensor([[1, 5, 6, 7, 2], [1, 8, 2, 0, 0]])
    am = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    common.export_onnx(model, (ids, am), os.path.join(out_dir, "onnx", "model.onnx"), ["input_ids", "attention_mask"],
                       ["logits"], {"input_ids": {0: "batch_size", 1: "sequence_length"},
                                    "attention_mask": {0: "batch_size", 1: "sequence_length"},
                                    "logits": {0: "batch_size"}})
    export_with_past(out_dir, model, c)
    ids_ = {"pad_token_id": tok.added["<|endoftext|>"], "bos_token_id": tok.added["<|im_start|>"],
            "eos_token_id": tok.added["<end_of_utterance>"]}
    config = {"architectures": ["LlamaForSequenceClassification"], "model_type": "llama",
              "id2label": {str(i): n for i, n in enumerate(labels)}, "label2id": {n: i for i, n in enumerate(labels)},
              "num_labels": len(labels),
              "problem_type": "regression", "pooling": "last_non_padding_token",
              "hidden_size": c.hidden_size, "num_hidden_layers": c.num_hidden_layers,
              "num_attention_heads": c.num_attention_heads, "num_key_value_heads": c.num_key_value_heads,
              "head_dim": c.head_dim, "intermediate_size": c.intermediate_size, "vocab_size": c.vocab_size,
              "rms_norm_eps": c.rms_norm_eps, "rope_theta": c.rope_theta,
              "max_position_embeddings": c.max_position_embeddings, "hidden_act": "silu",
              "tie_word_embeddings": False, "torch_dtype": "float32", **ids_,
              "transformers.js_config": {"dtype": "fp32"}, **(extra_config or {})}
    common.write_json(os.path.join(out_dir, "config.json"), config, indent=2)
    common.write_json(os.path.join(out_dir, "tokenizer_config.json"),
                      common.tokenizer_config({"chat_template": GUARD_CHAT_TEMPLATE}), indent=2)
    common.write_json(os.path.join(out_dir, "special_tokens_map.json"), common.special_tokens_map(tok), indent=2)
    with open(os.path.join(out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        f.write(json.dumps(tok.tokenizer_json(), ensure_ascii=False, indent=1) + "\n")


def build(out_dir: str, tok: ByteBPE, seed: int = 3456, log=print):
    vocab = len(tok.vocab) + len(tok.added)
    c = TextConfig(vocab_size=vocab, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, head_dim=16, intermediate_size=128, max_position_embeddings=512)
    if os.path.exists(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(os.path.join(out_dir, "onnx"))
    os.makedirs(os.path.join(out_dir, "reference"))
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = SequenceClassifier(c).eval()
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if name.endswith("norm.weight") or "layernorm" in name:
                p.copy_(1.0 + 0.05 * torch.randn(p.shape, generator=g))
            elif name.endswith("embed_tokens.weight"):
                p.copy_(torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / np.sqrt(p[0].numel()))
    write_guard_pack(out_dir, tok, model, c)

    convs = []
    with torch.no_grad():
        for conv in CONVERSATIONS:
            text = render_guard_template(conv)
            i = tok.encode(text)
            logit = model(torch.tensor([i]), torch.ones(1, len(i), dtype=torch.long))[0]
            convs.append({"messages": conv, "text": text, "input_ids": i, "logits": common.flat7(logit)})
        # right-padded and left-padded batches must reproduce the unbatched logits
        L = max(len(cv["input_ids"]) for cv in convs)
        for side in ("right", "left"):
            bi = torch.zeros(len(convs), L, dtype=torch.long)
            bm = torch.zeros(len(convs), L, dtype=torch.long)
            for r, cv in enumerate(convs):
                n = len(cv["input_ids"])
                sl = slice(0, n) if side == "right" else slice(L - n, L)
                bi[r, sl] = torch.tensor(cv["input_ids"])
                bm[r, sl] = 1
            out = model(bi, bm)
            for r, cv in enumerate(convs):
                assert abs(float(out[r, 0]) - cv["logits"][0]) < 1e-4, (side, r)
    golden = {"model": "tiny-guard", "seed": seed,
              "note": "logits = score(hidden state at the last non-padding token); text = the pack's chat "
                      "template with add_generation_prompt=false; input_ids from the Python BPE (no post-processor).",
              "conversations": convs}
    common.write_json(os.path.join(out_dir, "reference", "golden.json"), golden, indent=None)
    common.write_manifest(out_dir, "tiny-guard", "Random-weight tiny reward/classifier (2-layer LLaMA-style "
                          "encoder, one scalar label 'reward', pooled at the last non-padding token). Not a useful model.", seed)
    log(f"[tiny-guard] logits {[cv['logits'][0] for cv in convs]}")
    return golden
