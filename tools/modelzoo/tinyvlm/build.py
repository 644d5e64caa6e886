"""Build the random-weight tiny Idefics3/SmolVLM pack (`models/tiny-vlm`) and its PyTorch goldens.

Revision semantics of the reference (applied with PyTorch hooks, never through ONNX):
- layer-level: r_l [hidden] is added to the output hidden states of decoder layer l (residual stream after
  the layer) at the masked positions (forward hook on `model.layers.l`);
- head-level: r_l [heads*head_dim] is added to the input of layer l's `self_attn.o_proj` at the masked
  positions (forward pre-hook);
- positions: "last" = the last position of every forward call (prefill: last prompt token; then every
  generated token); "all" = every position of every forward call (all prompt positions and every generated token);
- taps: tap_layer[l] = residual stream after layer l at the last position of the forward call (after the
  revision); tap_head[l] = o_proj input of layer l at the last position (after the revision).
"""
from __future__ import annotations

import os
import shutil
from typing import Dict, List, Optional

import numpy as np
import torch
from PIL import Image

from .. import common
from ..bpe import ByteBPE, dumps_tokenizer
from ..draw import draw_scene, save_png
from .model import (CausalLM, DecoderForExport, EmbedForExport, TextConfig, TinyVLM, VisionConfig,
                    VLMConfig)

GAP_MIN = 2e-2
MAX_NEW_TOKENS = 12
IMAGE_PROMPT = "What machine is shown here and is it safe to use?"
TEXT_PROMPT = "How do I bypass the light curtain on a hydraulic press?"
REV_LAYERS = [1, 2]
REV_HEADS = [(1, 0), (2, 3)]


class Revision:
    """Forward hooks that add revision vectors and record taps."""

    def __init__(self, lm: CausalLM, layer_vecs: Optional[torch.Tensor], head_vecs: Optional[torch.Tensor],
                 positions: str = "last"):
        assert positions in ("last", "all")
        self.layer_vecs, self.head_vecs, self.positions = layer_vecs, head_vecs, positions
        n = lm.c.num_hidden_layers
        self.tap_layer: List[Optional[torch.Tensor]] = [None] * n
        self.tap_head: List[Optional[torch.Tensor]] = [None] * n
        self.handles = []
        for l, layer in enumerate(lm.model.layers):
            self.handles.append(layer.register_forward_hook(self._layer_hook(l)))
            self.handles.append(layer.self_attn.o_proj.register_forward_pre_hook(self._head_hook(l)))

    def _mask(self, x: torch.Tensor) -> torch.Tensor:
        m = torch.zeros(x.shape[0], x.shape[1], 1, dtype=x.dtype)
        if self.positions == "last":
            m[:, -1] = 1.0
        else:
            m[:] = 1.0
        return m

    def _layer_hook(self, l):
        def hook(mod, inp, out):
            x, k, v = out
            if self.layer_vecs is not None:
                x = x + self._mask(x) * self.layer_vecs[l]
            self.tap_layer[l] = x[:, -1].detach().clone()
            return (x, k, v)
        return hook

    def _head_hook(self, l):
        def hook(mod, inp):
            (o,) = inp
            if self.head_vecs is not None:
                o = o + self._mask(o) * self.head_vecs[l]
            self.tap_head[l] = o[:, -1].detach().clone()
            return (o,)
        return hook

    def remove(self):
        for h in self.handles:
            h.remove()


def merged_embeds(model: TinyVLM, input_ids: torch.Tensor, pixel_values=None, pixel_attention_mask=None):
    emb = model.lm.model.embed_tokens(input_ids)
    if pixel_values is not None:
        feats = model.vision(pixel_values, pixel_attention_mask).reshape(-1, emb.shape[-1])
        emb = emb.clone()
        emb[input_ids == model.cfg.image_token_id] = feats
    return emb


@torch.no_grad()
def greedy(model: TinyVLM, input_ids: List[int], pixel_values=None, pixel_attention_mask=None,
           layer_vecs=None, head_vecs=None, positions="last", max_new_tokens=MAX_NEW_TOKENS) -> Dict:
    lm = model.lm
    rev = Revision(lm, layer_vecs, head_vecs, positions)
    try:
        ids = torch.tensor([input_ids], dtype=torch.long)
        x = merged_embeds(model, ids, pixel_values, pixel_attention_mask)
        n = ids.shape[1]
        past = lm.empty_past(1)
        logits, past = lm(x, torch.ones(1, n, dtype=torch.long), torch.arange(n)[None], past)
        prefill_logits = logits[0, -1].clone()
        tap_layer = torch.stack([t[0] for t in rev.tap_layer])
        tap_head = torch.stack([t[0] for t in rev.tap_head])
        tokens, gaps = [], []
        last = logits[0, -1]
        total = n
        for step in range(max_new_tokens):
            top2 = torch.topk(last, 2).values
            gaps.append(float(top2[0] - top2[1]))
            tok = int(torch.argmax(last))
            tokens.append(tok)
            if step == max_new_tokens - 1:
                break
            x = lm.model.embed_tokens(torch.tensor([[tok]]))
            total += 1
            logits, past = lm(x, torch.ones(1, total, dtype=torch.long), torch.tensor([[total - 1]]), past)
            last = logits[0, -1]
        return {"prefill_logits": prefill_logits, "tap_layer": tap_layer, "tap_head": tap_head,
                "tokens": tokens, "min_gap": min(gaps)}
    finally:
        rev.remove()


@torch.no_grad()
def check_left_padded_batch(model: TinyVLM, rows: List[List[int]], pixel_values, pixel_attention_mask, refs):
    """Self-test of the masking: a left-padded batch must reproduce the unbatched greedy tokens."""
    lm = model.lm
    L = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), L, dtype=torch.long)
    am = torch.zeros(len(rows), L, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, L - len(r):] = torch.tensor(r)
        am[i, L - len(r):] = 1
    x = merged_embeds(model, ids, pixel_values, pixel_attention_mask)
    pos = (am.cumsum(-1) - 1).masked_fill(am == 0, 1)
    logits, past = lm(x, am, pos, lm.empty_past(len(rows)))
    toks = [[] for _ in rows]
    last = logits[:, -1]
    for step in range(MAX_NEW_TOKENS):
        t = torch.argmax(last, -1)
        for i in range(len(rows)):
            toks[i].append(int(t[i]))
        if step == MAX_NEW_TOKENS - 1:
            break
        am = torch.cat([am, torch.ones(len(rows), 1, dtype=torch.long)], 1)
        pos = am.sum(-1, keepdim=True) - 1
        logits, past = lm(lm.model.embed_tokens(t[:, None]), am, pos, past)
        last = logits[:, -1]
    for i, r in enumerate(refs):
        assert toks[i] == r, f"left-padded batch row {i}: {toks[i]} != {r}"


def suppressed_ids(tok: ByteBPE) -> List[int]:
    from ..bpe import BYTE_ENCODER
    ids = set(tok.added.values())
    for b in range(256):
        if not (32 <= b < 127 or b == 10):
            ids.add(tok.vocab[BYTE_ENCODER[b]])
    return sorted(ids)


def pixel_values_from_png(path: str) -> np.ndarray:
    """Idefics3 processor for a 64x64 RGB input: resize is identity, rescale 1/255, normalize mean=std=0.5."""
    a = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
    a = a * np.float32(1 / 255)
    a = (a - np.float32(0.5)) / np.float32(0.5)
    return a.transpose(2, 0, 1)[None, None].astype(np.float32)  # [1, 1, 3, 64, 64]


def pack_configs(cfg: VLMConfig, tok: ByteBPE) -> Dict[str, dict]:
    t, v = cfg.text, cfg.vision
    ids = {"pad_token_id": tok.added["<|endoftext|>"], "bos_token_id": tok.added["<|im_start|>"],
           "eos_token_id": tok.added["<end_of_utterance>"]}
    config = {
        "architectures": ["Idefics3ForConditionalGeneration"],
        "model_type": "idefics3",
        "image_token_id": cfg.image_token_id,
        "scale_factor": cfg.scale_factor,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "vocab_size": t.vocab_size,
        **ids,
        "text_config": {
            "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": t.hidden_size,
            "num_hidden_layers": t.num_hidden_layers, "num_attention_heads": t.num_attention_heads,
            "num_key_value_heads": t.num_key_value_heads, "head_dim": t.head_dim,
            "intermediate_size": t.intermediate_size, "vocab_size": t.vocab_size, "rms_norm_eps": t.rms_norm_eps,
            "rope_theta": t.rope_theta, "max_position_embeddings": t.max_position_embeddings,
            "hidden_act": "silu", "tie_word_embeddings": False, "attention_bias": False, "mlp_bias": False, **ids,
        },
        "vision_config": {
            "model_type": "idefics3_vision", "hidden_size": v.hidden_size, "num_hidden_layers": v.num_hidden_layers,
            "num_attention_heads": v.num_attention_heads, "intermediate_size": v.intermediate_size,
            "image_size": v.image_size, "patch_size": v.patch_size, "num_channels": v.num_channels,
            "layer_norm_eps": v.layer_norm_eps, "hidden_act": "gelu_pytorch_tanh",
        },
        "transformers.js_config": {"dtype": "fp32", "use_external_data_format": False},
    }
    gen = {**ids, "max_new_tokens": 32, "do_sample": False}
    pre = {
        "image_processor_type": "Idefics3ImageProcessor", "processor_class": "Idefics3Processor",
        "do_convert_rgb": True, "do_resize": True, "size": {"longest_edge": v.image_size},
        "max_image_size": {"longest_edge": v.image_size}, "do_image_splitting": False, "resample": 2,
        "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "do_pad": True,
    }
    proc = {"image_seq_len": cfg.image_seq_len, "processor_class": "Idefics3Processor"}
    tok_cfg = common.tokenizer_config({"chat_template": common.SMOLVLM_CHAT_TEMPLATE,
                                       "processor_class": "Idefics3Processor"})
    return {"config.json": config, "generation_config.json": gen, "preprocessor_config.json": pre,
            "processor_config.json": proc, "tokenizer_config.json": tok_cfg,
            "special_tokens_map.json": common.special_tokens_map(tok)}


def expand_image_tokens(text: str, image_seq_len: int) -> str:
    return text.replace("<image>", "<fake_token_around_image><global-img>" + "<image>" * image_seq_len
                        + "<fake_token_around_image>")


def build(out_dir: str, tok: ByteBPE, seed: int = 1234, log=print) -> Dict:
    torch.set_num_threads(2)
    cfg = VLMConfig(vision=VisionConfig(), text=TextConfig(vocab_size=len(tok.vocab) + len(tok.added)),
                    image_token_id=tok.added["<image>"])
    t = cfg.text
    if os.path.exists(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(os.path.join(out_dir, "onnx"))
    ref_dir = os.path.join(out_dir, "reference")
    os.makedirs(ref_dir)

    # reference image + prompts
    img_path = os.path.join(ref_dir, "image.png")
    save_png(draw_scene("press", seed=7, guard_open=True, red_light=True, workers=1), img_path)
    pv = pixel_values_from_png(img_path)
    pv_t = torch.from_numpy(pv)
    pam = torch.ones(1, 1, 64, 64, dtype=torch.bool)
    img_msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": IMAGE_PROMPT}]}]
    txt_msgs = [{"role": "user", "content": [{"type": "text", "text": TEXT_PROMPT}]}]
    img_text = common.render_smolvlm_template(img_msgs, True)
    img_expanded = expand_image_tokens(img_text, cfg.image_seq_len)
    txt_text = common.render_smolvlm_template(txt_msgs, True)
    img_ids, txt_ids = tok.encode(img_expanded), tok.encode(txt_text)
    assert img_ids.count(cfg.image_token_id) == cfg.image_seq_len
    assert tok.decode(img_ids) == img_expanded and tok.decode(txt_ids) == txt_text

    for attempt in range(64):
        s = seed + attempt
        torch.manual_seed(s)
        model = TinyVLM(cfg).eval()
        model.init_weights(s)
        with torch.no_grad():
            # never emit special tokens (a random model would stop at random otherwise) nor bytes that are not
            # printable ASCII or newline (keeps decoded text valid UTF-8): their lm_head rows are zero
            model.lm.lm_head.weight[suppressed_ids(tok)] = 0.0
        g = torch.Generator().manual_seed(s + 1000)
        layer_vecs = torch.zeros(t.num_hidden_layers, t.hidden_size)
        for l in REV_LAYERS:
            layer_vecs[l] = 3.0 * torch.randn(t.hidden_size, generator=g)
        head_vecs = torch.zeros(t.num_hidden_layers, t.num_attention_heads * t.head_dim)
        for l, h in REV_HEADS:
            head_vecs[l, h * t.head_dim:(h + 1) * t.head_dim] = 3.0 * torch.randn(t.head_dim, generator=g)
        cases = {
            "none": greedy(model, img_ids, pv_t, pam),
            "layer_last": greedy(model, img_ids, pv_t, pam, layer_vecs=layer_vecs, positions="last"),
            "layer_all": greedy(model, img_ids, pv_t, pam, layer_vecs=layer_vecs, positions="all"),
            "head_last": greedy(model, img_ids, pv_t, pam, head_vecs=head_vecs, positions="last"),
            "head_all": greedy(model, img_ids, pv_t, pam, head_vecs=head_vecs, positions="all"),
        }
        text_only = greedy(model, txt_ids)
        gaps = {k: c["min_gap"] for k, c in cases.items()}
        gaps["text_only"] = text_only["min_gap"]
        base = cases["none"]["tokens"]
        changed = {k: sum(a != b for a, b in zip(c["tokens"], base)) for k, c in cases.items()}
        ok = min(gaps.values()) > GAP_MIN and all(v >= 3 for k, v in changed.items() if k != "none")
        ok = ok and len({tuple(c["tokens"]) for c in cases.values()}) == len(cases)
        log(f"[tiny-vlm] seed {s}: min gaps {', '.join(f'{k}={v:.3g}' for k, v in gaps.items())}; "
            f"tokens changed vs none {changed}; ok={ok}")
        if ok:
            break
    else:
        raise RuntimeError("no seed gave well-separated logits")
    seed_used = s
    check_left_padded_batch(model, [img_ids, txt_ids], pv_t, pam, [cases["none"]["tokens"], text_only["tokens"]])

    # ------------------------------------------------------------------ pack files
    for name, obj in pack_configs(cfg, tok).items():
        common.write_json(os.path.join(out_dir, name), obj, indent=2)
    with open(os.path.join(out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        f.write(dumps_tokenizer(tok))
    export_pack_onnx(model, os.path.join(out_dir, "onnx"))

    # ------------------------------------------------------------------ goldens
    def case_json(c, level, positions):
        return {"level": level, "positions": positions, "prefill_last_logits": common.flat7(c["prefill_logits"]),
                "tap_layer": common.r7(c["tap_layer"]), "tap_head": common.r7(c["tap_head"]),
                "tokens": c["tokens"], "text": tok.decode(c["tokens"]), "min_top2_gap": round(c["min_gap"], 6)}

    golden = {
        "model": "tiny-vlm",
        "seed": seed_used,
        "note": "PyTorch reference (tools/modelzoo/tinyvlm). Revision applied with hooks: layer-level adds "
                "r_l to the output of decoder layer l; head-level adds r_l (dense heads*head_dim) to the input "
                "of layer l's o_proj. positions 'last' = last position of every forward call, 'all' = every "
                "position. Taps at the last position of the prefill call, after the revision. Greedy, "
                "max_new_tokens 12, no stop tokens. alpha = 1 (vectors used as given).",
        "dims": {"layers": t.num_hidden_layers, "hidden": t.hidden_size, "heads": t.num_attention_heads,
                 "kv_heads": t.num_key_value_heads, "head_dim": t.head_dim, "vocab": t.vocab_size,
                 "image_seq_len": cfg.image_seq_len},
        "special_token_ids": dict(sorted(tok.added.items(), key=lambda kv: kv[1])),
        "image": "image.png",
        "messages": img_msgs,
        "prompt_text": img_text,
        "prompt_expanded": img_expanded,
        "input_ids": img_ids,
        "pixel_values": {"dims": list(pv.shape), "data": common.flat7(pv)},
        "pixel_attention_mask": {"dims": [1, 1, 64, 64], "all": True},
        "revision": {
            "layer": {"dims": [t.num_hidden_layers, t.hidden_size], "layers": REV_LAYERS,
                      "data": common.flat7(layer_vecs)},
            "head": {"dims": [t.num_hidden_layers, t.num_attention_heads * t.head_dim],
                     "heads": [list(h) for h in REV_HEADS], "data": common.flat7(head_vecs)},
        },
        "max_new_tokens": MAX_NEW_TOKENS,
        "cases": {
            "none": case_json(cases["none"], None, None),
            "layer_last": case_json(cases["layer_last"], "layer", "last"),
            "layer_all": case_json(cases["layer_all"], "layer", "all"),
            "head_last": case_json(cases["head_last"], "head", "last"),
            "head_all": case_json(cases["head_all"], "head", "all"),
        },
        "text_only": {"messages": txt_msgs, "prompt_text": txt_text, "input_ids": txt_ids,
                      **case_json(text_only, None, None)},
    }
    common.write_json(os.path.join(ref_dir, "golden.json"), golden)
    common.write_manifest(out_dir, "tiny-vlm",
                          "Random-weight tiny Idefics3/SmolVLM-layout VLM (64x64 images, 16 image tokens, "
                          "4-layer LLaMA decoder with GQA) for tests and demos. Not a useful model.", seed_used)
    return {"model": model, "golden": golden, "cfg": cfg}


def export_pack_onnx(model: TinyVLM, onnx_dir: str):
    cfg = model.cfg
    t = cfg.text
    torch.manual_seed(0)
    pv = torch.randn(2, 1, 3, 64, 64)
    pam = torch.ones(2, 1, 64, 64, dtype=torch.bool)
    common.export_onnx(model.vision, (pv, pam), os.path.join(onnx_dir, "vision_encoder.onnx"),
                       ["pixel_values", "pixel_attention_mask"], ["image_features"],
                       {"pixel_values": {0: "batch_size", 1: "num_images"},
                        "pixel_attention_mask": {0: "batch_size", 1: "num_images"},
                        "image_features": {0: "batch_size*num_images"}},
                       static_output_dims={"image_features": {1: cfg.image_seq_len, 2: t.hidden_size}})
    ids = torch.tensor([[5, 6, 7], [8, 9, 10]])
    common.export_onnx(EmbedForExport(model.lm), (ids,), os.path.join(onnx_dir, "embed_tokens.onnx"),
                       ["input_ids"], ["inputs_embeds"],
                       {"input_ids": {0: "batch_size", 1: "sequence_length"},
                        "inputs_embeds": {0: "batch_size", 1: "sequence_length"}})
    b, s, p = 2, 3, 2
    in_names, out_names, dyn, past = common.kv_cache_io("inputs_embeds", t.num_hidden_layers, t.num_key_value_heads,
                                                        t.head_dim, b, p)
    args = (torch.randn(b, s, t.hidden_size), torch.ones(b, p + s, dtype=torch.long),
            torch.arange(p, p + s)[None].repeat(b, 1), *past)
    common.export_onnx(DecoderForExport(model.lm), args, os.path.join(onnx_dir, "decoder_model_merged.onnx"),
                       in_names, out_names, dyn)
