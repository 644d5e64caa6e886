"""Build the tiny layout packs (`models/tiny-<layout>-*`) and their PyTorch goldens, deterministically.

    /usr/bin/python3 -m tools.modelzoo.layouts.build --out models            # all of them
    /usr/bin/python3 -m tools.modelzoo.layouts.build --out models --only tiny-sandwich-gemma3

then `npm run modctl -- model prepare models/<pack>` writes the revisable decoder (same bytes for the same decoder).

Text-only packs in the onnx-community layout (config.json with the architecture's own `text_config`,
tokenizer files, onnx/embed_tokens.onnx, onnx/decoder_model_merged.onnx), so libs/vlm loads them as it loads a
real export. Goldens: greedy tokens, prefill logits and taps of the reference model (layouts/model.py) with no
revision and with layer- and head-level revision applied by hooks, exactly as tools/modelzoo/tinyvlm does:
layer-level adds r_l to the output of decoder layer l; head-level adds r_l to the input of layer l's o_proj.
"""
from __future__ import annotations

import argparse
import os
import shutil
from typing import Dict, List

import torch

from .. import common
from ..bpe import ByteBPE, build_tokenizer, dumps_tokenizer
from ..corpus import corpus_text
# the reference revision (forward hooks that add vectors and record taps) works on any layer returning (x, k, v)
from ..tinyvlm.build import Revision, suppressed_ids
from .model import CausalLM, DecoderForExport, EmbedForExport, LayoutConfig
from .genai import export_genai
from .half import to_float16_body, to_float16_io
from .quantize import quantize_layers, to_matmul_nbits

GAP_MIN = 2e-2
MAX_NEW_TOKENS = 12
# Longer than the sliding window (4) so local and global layers see different keys.
PROMPT = "How do I bypass the light curtain on a hydraulic press?"
REV_LAYERS = [1, 2]
REV_HEADS = [(1, 0), (2, 3)]

PACKS: Dict[str, dict] = {
    "tiny-sandwich-gemma3": dict(layout="gemma3", head_dim=16, query_pre_attn_scalar=16.0, sliding_window=4,
                                 sliding_window_pattern=2, rope_theta=1_000_000.0, rope_local_base_freq=10_000.0),
    "tiny-fused-qkv-phi3": dict(layout="phi3", head_dim=12),
    "tiny-qkv-bias-qwen2": dict(layout="qwen2", head_dim=12),
}
GEMMA3 = PACKS["tiny-sandwich-gemma3"]
# Packs whose decoder projections are MatMulNBits 4-bit (the reference uses the dequantized weights).
QUANTIZED = {"tiny-q4-gemma3": GEMMA3}
PACKS.update(QUANTIZED)
# Packs whose decoder body is float16 behind float32 I/O (the reference stays float32: compare with tolerance).
HALF = {"tiny-fp16-qwen2": PACKS["tiny-qkv-bias-qwen2"]}
PACKS.update(HALF)
# Packs whose decoder and embed_tokens have float16 I/O too (optimum --dtype fp16); the reference stays float32.
HALF_IO = {"tiny-fp16io-qwen2": PACKS["tiny-qkv-bias-qwen2"]}
PACKS.update(HALF_IO)
# Packs whose decoder is written in onnxruntime-genai's node patterns (genai.py) instead of by torch.onnx.
GENAI = {"tiny-genai-gemma3": GEMMA3}
PACKS.update(GENAI)

DESCRIPTIONS = {
    "gemma3": "Gemma 3 decoder layout: sandwich norms (post-attention and post-feedforward RMSNorm before the residual "
              "adds), (1 + w) norms, q/k norms, head_dim 16 != hidden 48 / 4 heads, sliding-window layers (window 4, "
              "every other layer), scaled embeddings, tied lm_head.",
    "phi3": "Phi-3 decoder layout: fused qkv_proj and gate_up_proj.",
    "qwen2": "Qwen2 decoder layout: q/k/v projection biases.",
}


@torch.no_grad()
def greedy(lm: CausalLM, input_ids: List[int], layer_vecs=None, head_vecs=None, positions="last") -> Dict:
    rev = Revision(lm, layer_vecs, head_vecs, positions)
    try:
        n = len(input_ids)
        x = lm.model.embed(torch.tensor([input_ids]))
        logits, past = lm(x, torch.ones(1, n, dtype=torch.long), torch.arange(n)[None], lm.empty_past(1))
        out = {"prefill_logits": logits[0, -1].clone(), "tap_layer": torch.stack([t[0] for t in rev.tap_layer]),
               "tap_head": torch.stack([t[0] for t in rev.tap_head])}
        tokens, gaps, last, total = [], [], logits[0, -1], n
        for step in range(MAX_NEW_TOKENS):
            top2 = torch.topk(last, 2).values
            gaps.append(float(top2[0] - top2[1]))
            tok = int(torch.argmax(last))
            tokens.append(tok)
            if step == MAX_NEW_TOKENS - 1:
                break
            total += 1
            logits, past = lm(lm.model.embed(torch.tensor([[tok]])), torch.ones(1, total, dtype=torch.long),
                              torch.tensor([[total - 1]]), past)
            last = logits[0, -1]
        return {**out, "tokens": tokens, "min_gap": min(gaps)}
    finally:
        rev.remove()


def text_config(c: LayoutConfig, ids: dict) -> dict:
    base = {"hidden_size": c.hidden_size, "num_hidden_layers": c.num_hidden_layers,
            "num_attention_heads": c.num_attention_heads, "num_key_value_heads": c.num_key_value_heads,
            "head_dim": c.head_dim, "intermediate_size": c.intermediate_size, "vocab_size": c.vocab_size,
            "rms_norm_eps": c.rms_norm_eps, "rope_theta": c.rope_theta, "max_position_embeddings": 512, **ids}
    if c.layout == "gemma3":
        return {"model_type": "gemma3_text", "architectures": ["Gemma3ForCausalLM"], **base,
                "hidden_activation": "gelu_pytorch_tanh", "query_pre_attn_scalar": c.query_pre_attn_scalar,
                "sliding_window": c.sliding_window, "sliding_window_pattern": c.sliding_window_pattern,
                "rope_local_base_freq": c.rope_local_base_freq, "tie_word_embeddings": True,
                "final_logit_softcapping": None, "attn_logit_softcapping": None}
    if c.layout == "phi3":
        return {"model_type": "phi3", "architectures": ["Phi3ForCausalLM"], **base, "hidden_act": "silu",
                "tie_word_embeddings": False}
    return {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], **base, "hidden_act": "silu",
            "tie_word_embeddings": False}


def pack_configs(c: LayoutConfig, tok: ByteBPE) -> Dict[str, dict]:
    ids = {"pad_token_id": tok.added["<|endoftext|>"], "bos_token_id": tok.added["<|im_start|>"],
           "eos_token_id": tok.added["<end_of_utterance>"]}
    tc = text_config(c, ids)
    if c.layout == "gemma3":
        # Gemma 3 ships as a VLM config with the text model under text_config (this pack has no vision tower).
        config = {"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3", "text_config": tc,
                  "torch_dtype": "float32", **ids}
    else:
        config = {**tc, "torch_dtype": "float32"}
    config["transformers.js_config"] = {"dtype": "fp32", "use_external_data_format": False}
    return {"config.json": config, "generation_config.json": {**ids, "max_new_tokens": 32, "do_sample": False},
            "tokenizer_config.json": common.tokenizer_config({"chat_template": common.SMOLVLM_CHAT_TEMPLATE}),
            "special_tokens_map.json": common.special_tokens_map(tok)}


def export_onnx(lm: CausalLM, onnx_dir: str):
    c = lm.c
    ids = torch.tensor([[5, 6, 7], [8, 9, 10]])
    common.export_onnx(EmbedForExport(lm), (ids,), os.path.join(onnx_dir, "embed_tokens.onnx"), ["input_ids"],
                       ["inputs_embeds"], {"input_ids": {0: "batch_size", 1: "sequence_length"},
                                           "inputs_embeds": {0: "batch_size", 1: "sequence_length"}})
    b, s, p = 2, 3, 2
    past, in_names, out_names = [], ["inputs_embeds", "attention_mask", "position_ids"], ["logits"]
    dyn = {"inputs_embeds": {0: "batch_size", 1: "sequence_length"},
           "attention_mask": {0: "batch_size", 1: "total_sequence_length"},
           "position_ids": {0: "batch_size", 1: "sequence_length"}, "logits": {0: "batch_size", 1: "sequence_length"}}
    g = torch.Generator().manual_seed(0)
    for i in range(c.num_hidden_layers):
        for kv in ("key", "value"):
            past.append(torch.randn(b, c.num_key_value_heads, p, c.head_dim, generator=g))
            n_in, n_out = f"past_key_values.{i}.{kv}", f"present.{i}.{kv}"
            in_names.append(n_in)
            out_names.append(n_out)
            dyn[n_in] = {0: "batch_size", 2: "past_sequence_length"}
            dyn[n_out] = {0: "batch_size", 2: "total_sequence_length"}
    args = (torch.randn(b, s, c.hidden_size, generator=g), torch.ones(b, p + s, dtype=torch.long),
            torch.arange(p, p + s)[None].repeat(b, 1), *past)
    common.export_onnx(DecoderForExport(lm), args, os.path.join(onnx_dir, "decoder_model_merged.onnx"), in_names,
                       out_names, dyn)


def build(name: str, out_dir: str, tok: ByteBPE, seed: int = 4321, log=print) -> Dict:
    torch.set_num_threads(2)
    c = LayoutConfig(vocab_size=len(tok.vocab) + len(tok.added), **PACKS[name])
    if os.path.exists(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(os.path.join(out_dir, "onnx"))
    os.makedirs(os.path.join(out_dir, "reference"))
    msgs = [{"role": "user", "content": [{"type": "text", "text": PROMPT}]}]
    prompt_text = common.render_smolvlm_template(msgs, True)
    input_ids = tok.encode(prompt_text)
    assert tok.decode(input_ids) == prompt_text

    for attempt in range(64):
        s = seed + attempt
        torch.manual_seed(s)
        lm = CausalLM(c).eval()
        lm.init_weights(s)
        with torch.no_grad():
            if not c.gemma:
                lm.lm_head.weight[suppressed_ids(tok)] = 0.0
            else:
                # tied head: push the suppressed rows' logits down through the embedding rows instead of zeroing
                lm.model.embed_tokens.weight[suppressed_ids(tok)] *= 0.0
        qweights = quantize_layers(lm) if name in QUANTIZED else None
        g = torch.Generator().manual_seed(s + 1000)
        layer_vecs = torch.zeros(c.num_hidden_layers, c.hidden_size)
        for l in REV_LAYERS:
            layer_vecs[l] = 3.0 * torch.randn(c.hidden_size, generator=g)
        head_vecs = torch.zeros(c.num_hidden_layers, c.num_attention_heads * c.head_dim)
        for l, h in REV_HEADS:
            head_vecs[l, h * c.head_dim:(h + 1) * c.head_dim] = 3.0 * torch.randn(c.head_dim, generator=g)
        cases = {
            "none": greedy(lm, input_ids),
            "layer_last": greedy(lm, input_ids, layer_vecs=layer_vecs, positions="last"),
            "layer_all": greedy(lm, input_ids, layer_vecs=layer_vecs, positions="all"),
            "head_last": greedy(lm, input_ids, head_vecs=head_vecs, positions="last"),
            "head_all": greedy(lm, input_ids, head_vecs=head_vecs, positions="all"),
        }
        gaps = {k: v["min_gap"] for k, v in cases.items()}
        base = cases["none"]["tokens"]
        changed = {k: sum(a != b for a, b in zip(v["tokens"], base)) for k, v in cases.items()}
        ok = min(gaps.values()) > GAP_MIN and all(v >= 2 for k, v in changed.items() if k != "none")
        log(f"[{name}] seed {s}: min gaps {', '.join(f'{k}={v:.3g}' for k, v in gaps.items())}; changed {changed}; ok={ok}")
        if ok:
            break
    else:
        raise RuntimeError(f"{name}: no seed gave well-separated logits")

    for fname, obj in pack_configs(c, tok).items():
        common.write_json(os.path.join(out_dir, fname), obj, indent=2)
    with open(os.path.join(out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        f.write(dumps_tokenizer(tok))
    export_onnx(lm, os.path.join(out_dir, "onnx"))
    if qweights is not None:
        to_matmul_nbits(os.path.join(out_dir, "onnx", "decoder_model_merged.onnx"), qweights)
    if name in HALF:
        to_float16_body(os.path.join(out_dir, "onnx", "decoder_model_merged.onnx"))
    if name in HALF_IO:
        for f in ("decoder_model_merged.onnx", "embed_tokens.onnx"):
            to_float16_io(os.path.join(out_dir, "onnx", f))
    if name in GENAI:
        export_genai(lm, os.path.join(out_dir, "onnx", "decoder_model_merged.onnx"))

    def case_json(v, level, positions):
        return {"level": level, "positions": positions, "prefill_last_logits": common.flat7(v["prefill_logits"]),
                "tap_layer": common.r7(v["tap_layer"]), "tap_head": common.r7(v["tap_head"]), "tokens": v["tokens"],
                "text": tok.decode(v["tokens"]), "min_top2_gap": round(v["min_gap"], 6)}

    golden = {
        "model": name,
        "layout": c.layout,
        "seed": s,
        "note": "PyTorch reference (tools/modelzoo/layouts/model.py). Revision applied with hooks: layer-level adds "
                "r_l to the output of decoder layer l; head-level adds r_l (dense heads*head_dim) to the input of "
                "layer l's o_proj. positions 'last' = last position of every forward call, 'all' = every position. "
                "Taps at the last position of the prefill call, after the revision. Greedy, max_new_tokens 12, no "
                "stop tokens.",
        "dims": {"layers": c.num_hidden_layers, "hidden": c.hidden_size, "heads": c.num_attention_heads,
                 "kv_heads": c.num_key_value_heads, "head_dim": c.head_dim, "vocab": c.vocab_size},
        "messages": msgs,
        "prompt_text": prompt_text,
        "input_ids": input_ids,
        "revision": {"layer": {"dims": [c.num_hidden_layers, c.hidden_size], "layers": REV_LAYERS,
                               "data": common.flat7(layer_vecs)},
                     "head": {"dims": [c.num_hidden_layers, c.num_attention_heads * c.head_dim],
                              "heads": [list(h) for h in REV_HEADS], "data": common.flat7(head_vecs)}},
        "max_new_tokens": MAX_NEW_TOKENS,
        "cases": {"none": case_json(cases["none"], None, None),
                  "layer_last": case_json(cases["layer_last"], "layer", "last"),
                  "layer_all": case_json(cases["layer_all"], "layer", "all"),
                  "head_last": case_json(cases["head_last"], "head", "last"),
                  "head_all": case_json(cases["head_all"], "head", "all")},
    }
    common.write_json(os.path.join(out_dir, "reference", "golden.json"), golden)
    q4 = " Decoder body float16 behind float32 I/O (reference float32)." if name in HALF else ""
    q4 += (" Decoder and embed_tokens with float16 I/O: inputs_embeds, past_key_values, present and logits float16 "
           "(reference float32).") if name in HALF_IO else ""
    q4 += " Decoder written in onnxruntime-genai's node patterns (GroupQueryAttention with rotary, fused Skip norms)." if name in GENAI else ""
    q4 += " Decoder projections are MatMulNBits 4-bit (block 16); the reference uses their dequantized values." if qweights else ""
    common.write_manifest(out_dir, name, f"Random-weight tiny text decoder for layout tests. {DESCRIPTIONS[c.layout]}{q4} "
                                         "Not a useful model.", s)
    return {"lm": lm, "golden": golden}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="models")
    ap.add_argument("--only", nargs="*", choices=sorted(PACKS))
    a = ap.parse_args(argv)
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    tok = build_tokenizer(corpus_text(), vocab_size=1000)
    for name in a.only or sorted(PACKS):
        build(name, os.path.join(a.out, name), tok)


if __name__ == "__main__":
    main()
