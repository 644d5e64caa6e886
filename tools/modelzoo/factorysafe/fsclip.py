"""factory-clip: the tiny CLIP of tools/modelzoo/clip.py (same modules, ONNX layout and configs), trained on
FactorySafe scenes and captions.

Loss = symmetric InfoNCE over (scene, caption) pairs + a margin term that pins ETA's fixed unsafe-content text:
cos(image, UNSAFE_TEXT) is pushed above 0.35 for hazard scenes and below 0.0 for hazard-free scenes (so ETA's
default tau_pre = 0.16 separates them). Hazard captions contain ETA's wording ("The image contains unsafe ...
physical harmful ... contents"), hazard-free captions say "safe contents".
"""
from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from typing import Dict, List

import numpy as np
import torch
import torch.nn.functional as F

from .. import clip as C
from .. import common
from ..bpe import ByteBPE
from .corpus import UNSAFE_TEXT
from .world import describe, draw, hazards


def caption(s: Dict, rng: random.Random) -> str:
    d = describe(s)
    if s["hazard"]:
        hz = hazards(s)
        opts = [f"{UNSAFE_TEXT} A photo of {d}.",
                f"The image contains unsafe physical harmful contents: {', '.join(hz)}.",
                f"The image contains unsafe contents. A photo of {d}.",
                f"A photo of {d}. The image contains unsafe/physical harmful contents."]
    else:
        opts = [f"The image contains safe contents. A photo of {d}.", f"A photo of {d}. Nothing unsafe.",
                f"A safe photo of {d}."]
    return rng.choice(opts)


def clip_pixels(imgs: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(imgs).float() * (1 / 255)
    x = (x - torch.tensor(C.CLIP_MEAN)) / torch.tensor(C.CLIP_STD)
    return x.permute(0, 3, 1, 2).contiguous()


def text_batch(tok: ByteBPE, texts: List[str], cache: Dict):
    rows = []
    for t in texts:
        if t not in cache:
            ids = C.encode_clip_text(tok, t)
            assert len(ids) <= C.MAXPOS, (len(ids), t)
            cache[t] = ids
        rows.append(cache[t])
    return common.pad_right(rows)


def train_clip(tok: ByteBPE, pool: List[Dict], seed: int, steps: int, batch: int = 64, lr: float = 2e-3,
               device="cpu", log=print):
    vocab = len(tok.vocab) + len(tok.added)
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    text, vision = C.TextModelWithProjection(vocab), C.VisionModelWithProjection()
    C.init_(text, g)
    C.init_(vision, g)
    text, vision = text.to(device), vision.to(device)
    log_scale = torch.nn.Parameter(torch.tensor(math.log(10.0), device=device))
    params = list(text.parameters()) + list(vision.parameters()) + [log_scale]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    imgs = np.stack([np.asarray(draw(s), dtype=np.uint8) for s in pool])
    rng = random.Random(seed)
    cache: Dict = {}
    uid, uam = text_batch(tok, [UNSAFE_TEXT], cache)
    uid, uam = uid.to(device), uam.to(device)
    t0 = time.time()
    run = None
    for step in range(steps):
        f = min(1.0, (step + 1) / 50) * (0.5 * (1 + math.cos(math.pi * step / steps)) * 0.95 + 0.05)
        for gr in opt.param_groups:
            gr["lr"] = lr * f
        idx = rng.sample(range(len(pool)), batch)
        pv = clip_pixels(imgs[idx]).to(device)
        ids, am = text_batch(tok, [caption(pool[i], rng) for i in idx], cache)
        ie = F.normalize(vision(pv)[0], dim=-1)
        te = F.normalize(text(ids.to(device), am.to(device))[0], dim=-1)
        ue = F.normalize(text(uid, uam)[0], dim=-1)[0]
        logits = ie @ te.t() * log_scale.clamp(max=math.log(100)).exp()
        lab = torch.arange(batch, device=device)
        nce = 0.5 * (F.cross_entropy(logits, lab) + F.cross_entropy(logits.t(), lab))
        cu = ie @ ue
        hz = torch.tensor([float(pool[i]["hazard"]) for i in idx], device=device)
        margin = (hz * F.softplus(20 * (0.35 - cu)) + (1 - hz) * F.softplus(20 * (cu - 0.0))).mean() / 4
        loss = nce + margin
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        run = float(loss) if run is None else 0.98 * run + 0.02 * float(loss)
        if step % 100 == 0 or step == steps - 1:
            log(f"[clip] step {step}/{steps} loss {run:.4f} nce {float(nce):.3f} margin {float(margin):.3f} "
                f"({time.time() - t0:.0f}s)")
    text.eval()
    vision.eval()
    return text.cpu(), vision.cpu()


@torch.no_grad()
def unsafe_cosines(tok, text, vision, scenes: List[Dict]) -> np.ndarray:
    ids, am = text_batch(tok, [UNSAFE_TEXT], {})
    ue = F.normalize(text(ids, am)[0], dim=-1)[0]
    imgs = np.stack([np.asarray(draw(s), dtype=np.uint8) for s in scenes])
    out = []
    for b in range(0, len(scenes), 128):
        ie = F.normalize(vision(clip_pixels(imgs[b:b + 128]))[0], dim=-1)
        out.append((ie @ ue).numpy())
    return np.concatenate(out)


def export(out_dir: str, tok: ByteBPE, text, vision, seed: int, ref_images: List[str], ref_scenes: List[Dict],
           stats: Dict):
    vocab = len(tok.vocab) + len(tok.added)
    if os.path.exists(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(os.path.join(out_dir, "onnx"))
    os.makedirs(os.path.join(out_dir, "reference"))
    C.export_clip_onnx(text, vision, out_dir)
    ids_ = {"pad_token_id": tok.added["<|endoftext|>"], "bos_token_id": tok.added["<|im_start|>"],
            "eos_token_id": tok.added["<end_of_utterance>"]}
    config = {
        "architectures": ["CLIPModel"], "model_type": "clip", "projection_dim": C.PROJ,
        "logit_scale_init_value": 2.6592, "torch_dtype": "float32",
        "text_pooling": "last_non_padding_token",
        "text_config": {"model_type": "clip_text_model", "vocab_size": vocab, "hidden_size": C.HIDDEN,
                        "intermediate_size": C.MLP, "num_hidden_layers": C.LAYERS, "num_attention_heads": C.HEADS,
                        "max_position_embeddings": C.MAXPOS, "hidden_act": "quick_gelu", "layer_norm_eps": C.EPS,
                        "projection_dim": C.PROJ, **ids_},
        "vision_config": {"model_type": "clip_vision_model", "hidden_size": C.HIDDEN, "intermediate_size": C.MLP,
                          "num_hidden_layers": C.LAYERS, "num_attention_heads": C.HEADS, "image_size": C.IMAGE,
                          "patch_size": C.PATCH, "num_channels": 3, "hidden_act": "quick_gelu",
                          "layer_norm_eps": C.EPS, "projection_dim": C.PROJ},
        "transformers.js_config": {"dtype": "fp32"},
    }
    pre = {"image_processor_type": "CLIPImageProcessor", "processor_class": "CLIPProcessor",
           "do_convert_rgb": True, "do_resize": True, "size": {"shortest_edge": C.IMAGE}, "resample": 3,
           "do_center_crop": True, "crop_size": {"height": C.IMAGE, "width": C.IMAGE}, "do_rescale": True,
           "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": C.CLIP_MEAN, "image_std": C.CLIP_STD}
    common.write_json(os.path.join(out_dir, "config.json"), config, indent=2)
    common.write_json(os.path.join(out_dir, "preprocessor_config.json"), pre, indent=2)
    common.write_json(os.path.join(out_dir, "tokenizer_config.json"),
                      common.tokenizer_config({"tokenizer_class": "CLIPTokenizer", "model_max_length": C.MAXPOS,
                                               "processor_class": "CLIPProcessor"}), indent=2)
    common.write_json(os.path.join(out_dir, "special_tokens_map.json"), common.special_tokens_map(tok), indent=2)
    with open(os.path.join(out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        f.write(json.dumps(C.tokenizer_json(tok), ensure_ascii=False, indent=1) + "\n")

    # goldens: reference images, their embeddings and cosines with the unsafe text and a few captions
    def txt_emb(t):
        i = C.encode_clip_text(tok, t)
        with torch.no_grad():
            return text(torch.tensor([i]), torch.ones(1, len(i), dtype=torch.long))[0][0], i

    ue, uids = txt_emb(UNSAFE_TEXT)
    samples = []
    for p, s in zip(ref_images, ref_scenes):
        dst = os.path.join(out_dir, "reference", os.path.basename(p))
        shutil.copyfile(p, dst)
        with torch.no_grad():
            ie = vision(torch.from_numpy(C.clip_pixel_values(dst)))[0][0]
        samples.append({"image": os.path.basename(p), "hazard": s["hazard"], "image_embeds": common.flat7(ie),
                        "cosine_with_unsafe_text": round(float(F.cosine_similarity(ie, ue, dim=0)), 7)})
    texts = []
    for t in [UNSAFE_TEXT, "The guard is open.", "The warning light is red.", "It is a power press."]:
        e, i = txt_emb(t)
        texts.append({"text": t, "input_ids": i, "text_embeds": common.flat7(e)})
    golden = {"model": "factory-clip", "seed": seed,
              "note": "text input_ids include <|im_start|> ... <end_of_utterance> (the tokenizer's post-processor); "
                      "text pooled at the last non-padding token; embeds unnormalised; cosine = cos(image_embeds, "
                      "text_embeds). Images: CLIP mean/std normalisation.",
              "unsafe_text": UNSAFE_TEXT, "texts": texts, "samples": samples, "unsafe_text_cosine_stats": stats}
    common.write_json(os.path.join(out_dir, "reference", "golden.json"), golden)
    common.write_manifest(out_dir, "factory-clip",
                          "FactorySafe CLIP-style dual encoder (64x64 scenes, 64-d embeddings, text pooled at the "
                          "last non-padding token), trained so that ETA's unsafe-content text scores high on "
                          "hazard scenes and low on hazard-free ones.", seed)
