"""factory-vlm: two-stage training of the tiny Idefics3-layout VLM (tools/modelzoo/tinyvlm/model.py), greedy
decoding, content-judged evaluation and pack export.

Stage 1: the language model alone (decoder + embeddings), text-only, safety aligned.
Stage 2: vision-language adaptation (vision encoder + connector + decoder; embed_tokens frozen so both packs
share embed_tokens.onnx and only the decoder differs) on image-grounded, not safety-curated data.
"""
from __future__ import annotations

import math
import random
import time
from typing import Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F

from .. import common
from ..bpe import ByteBPE
from ..tinyvlm.build import expand_image_tokens, merged_embeds
from ..tinyvlm.model import TextConfig, TinyVLM, VisionConfig, VLMConfig
from . import data as D
from . import judge
from .world import draw

MAX_NEW_TOKENS = 64


def make_config(tok: ByteBPE) -> VLMConfig:
    return VLMConfig(
        vision=VisionConfig(hidden_size=96, num_hidden_layers=2, num_attention_heads=4, intermediate_size=192),
        text=TextConfig(vocab_size=len(tok.vocab) + len(tok.added), hidden_size=128, num_hidden_layers=4,
                        num_attention_heads=4, num_key_value_heads=2, head_dim=32, intermediate_size=384),
        image_token_id=tok.added["<image>"])


class Encoder:
    """Cached tokenization of prompts (chat template + image expansion) and answers."""

    def __init__(self, tok: ByteBPE, cfg: VLMConfig):
        self.tok, self.cfg = tok, cfg
        self.eos = tok.added["<end_of_utterance>"]
        self.vocab = len(tok.vocab) + len(tok.added)
        self._p: Dict = {}
        self._a: Dict = {}
        self._user = len(tok.encode("<|im_start|>User:"))

    def user_text_start(self, ids: List[int], image: bool) -> int:
        """Index of the first token of the user's words: after the image block, or after "<|im_start|>User:"."""
        if image:
            return max(i for i, t in enumerate(ids[:ids.index(self.eos)]) if t < FIRST_TEXT_ID) + 1
        return self._user

    def prompt_text(self, prompt: str, image: bool, expand: bool = True) -> str:
        content = ([{"type": "image"}] if image else []) + [{"type": "text", "text": prompt}]
        t = common.render_smolvlm_template([{"role": "user", "content": content}], True)
        return expand_image_tokens(t, self.cfg.image_seq_len) if (image and expand) else t

    def prompt(self, prompt: str, image: bool) -> List[int]:
        k = (prompt, image)
        if k not in self._p:
            self._p[k] = self.tok.encode(self.prompt_text(prompt, image))
        return self._p[k]

    def answer(self, answer: str) -> List[int]:
        """The model's answer follows 'Assistant:' with a leading space, and ends with <end_of_utterance>."""
        if answer not in self._a:
            self._a[answer] = self.tok.encode(" " + answer) + [self.eos]
        return self._a[answer]


def pixel_tensor(imgs: np.ndarray) -> torch.Tensor:
    """uint8 [n, 64, 64, 3] -> Idefics3 pixel_values [n, 1, 3, 64, 64] (rescale 1/255, mean = std = 0.5)."""
    x = torch.from_numpy(imgs).float() * (1 / 255)
    x = (x - 0.5) / 0.5
    return x.permute(0, 3, 1, 2)[:, None].contiguous()


class ImageCache:
    def __init__(self):
        self.idx: Dict[int, int] = {}
        self.arr: List[np.ndarray] = []

    def get(self, s: Dict) -> int:
        k = (s["seed"], s["machine"], s["guard_open"], s["light"], s["worker"], s["helmet"], s["lockout"],
             s["spill"], s["smoke"])
        if k not in self.idx:
            self.idx[k] = len(self.arr)
            self.arr.append(np.asarray(draw(s), dtype=np.uint8))
        return self.idx[k]

    def batch(self, ids: List[int]) -> torch.Tensor:
        return pixel_tensor(np.stack([self.arr[i] for i in ids]))


# ids below this are the special tokens (<|im_start|>, <end_of_utterance>, <image>, ...): never dropped
FIRST_TEXT_ID = 22


def drop_tokens(p: List[int], enc: "Encoder", image: bool, rate: float, rng: random.Random) -> List[int]:
    """Token dropout on the user's words: each is replaced by a random text token with probability `rate`, so the
    answer cannot hang on any one word of the phrasing (the template tokens and special tokens are kept)."""
    start = enc.user_text_start(p, image)
    end = p.index(enc.eos, start)
    out = list(p)
    for i in range(start, end):
        if out[i] >= FIRST_TEXT_ID and rng.random() < rate:
            out[i] = rng.randrange(FIRST_TEXT_ID, enc.vocab)
    return out


def collate(examples: List[Dict], enc: Encoder, images: ImageCache, device, dropout: float = 0.0,
            drop_rng: Optional[random.Random] = None):
    rows, labs, imgs = [], [], []
    for e in examples:
        p = enc.prompt(e["prompt"], e["image"] is not None)
        if dropout > 0:
            p = drop_tokens(p, enc, e["image"] is not None, dropout, drop_rng)
        a = enc.answer(e["answer"])
        rows.append(p + a)
        labs.append([-100] * len(p) + a)
        if e["image"] is not None:
            imgs.append(images.get(e["image"]))
    L = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), L, dtype=torch.long)
    lab = torch.full((len(rows), L), -100, dtype=torch.long)
    am = torch.zeros(len(rows), L, dtype=torch.long)
    for i, (r, l) in enumerate(zip(rows, labs)):
        ids[i, :len(r)] = torch.tensor(r)
        lab[i, :len(l)] = torch.tensor(l)
        am[i, :len(r)] = 1
    pv = images.batch(imgs).to(device) if imgs else None
    return ids.to(device), lab.to(device), am.to(device), pv


def loss_fn(model: TinyVLM, ids, lab, am, pv):
    pam = None
    if pv is not None:
        pam = torch.ones(pv.shape[0], 1, 64, 64, dtype=torch.bool, device=pv.device)
    x = merged_embeds(model, ids, pv, pam)
    pos = torch.arange(ids.shape[1], device=ids.device)[None].expand(ids.shape[0], -1)
    logits, _ = model.lm(x, am, pos, None)
    tgt = lab[:, 1:]
    tok_loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=-100,
                               reduction="none").view(tgt.shape)
    # every example weighs the same (long procedure answers would otherwise drown the short visual answers)
    cnt = (tgt != -100).sum(-1).clamp(min=1)
    return (tok_loss.sum(-1) / cnt).mean()


def train_stage(model, params, sampler, steps, lr, batch, enc, images, device, log, tag, seed, warmup=50,
                probe=None, probe_every=500, dropout=0.0):
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.98), weight_decay=0.01)
    rng = random.Random(seed)  # the example stream (data.training_prompts replays it)
    drop_rng = random.Random(seed + 7)
    model.train()
    t0 = time.time()
    run = None
    for step in range(steps):
        f = min(1.0, (step + 1) / warmup) * (0.5 * (1 + math.cos(math.pi * step / steps)) * 0.95 + 0.05)
        for g in opt.param_groups:
            g["lr"] = g.get("base_lr", lr) * f
        exs = [sampler(rng) for _ in range(batch)]
        ids, lab, am, pv = collate(exs, enc, images, device, dropout, drop_rng)
        loss = loss_fn(model, ids, lab, am, pv)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params if not isinstance(params[0], dict) else
                                       [p for g in params for p in g["params"]], 1.0)
        opt.step()
        run = float(loss) if run is None else 0.98 * run + 0.02 * float(loss)
        if step % 100 == 0 or step == steps - 1:
            log(f"[{tag}] step {step}/{steps} loss {run:.4f} ({time.time() - t0:.0f}s)")
        if probe is not None and step > 0 and step % probe_every == 0:
            model.eval()
            probe(step)
            model.train()
    model.eval()


def init_model(cfg: VLMConfig, seed: int) -> TinyVLM:
    torch.manual_seed(seed)
    m = TinyVLM(cfg)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(m.named_parameters()):
            if name.endswith("norm.weight") or "layer_norm" in name or "layernorm" in name:
                p.copy_(torch.ones_like(p) if name.endswith("weight") else torch.zeros_like(p))
            elif name.endswith(".bias"):
                p.zero_()
            elif name.endswith("embed_tokens.weight") or name.endswith("position_embedding.weight"):
                p.copy_(0.02 * torch.randn(p.shape, generator=g) * 5)
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(fan_in))
        for l in m.lm.model.layers:  # scaled residual branches
            l.self_attn.o_proj.weight.mul_(1 / math.sqrt(2 * cfg.text.num_hidden_layers))
            l.mlp.down_proj.weight.mul_(1 / math.sqrt(2 * cfg.text.num_hidden_layers))
        m.lm.lm_head.weight.mul_(0.5)
    return m


ATTR_BIN = ["guard_open", "worker", "helmet", "lockout", "spill", "smoke"]


def pretrain_vision(model: TinyVLM, pool: List[Dict], images: ImageCache, steps: int, lr: float, batch: int,
                    device, log, seed: int):
    """Stage 0: the vision tower learns the scene attributes (machine, light colour, 6 binary states) with linear
    heads on mean+max pooled patch features; stands in for starting from a pretrained vision encoder."""
    from .world import LIGHTS, MACHINES
    hv = model.cfg.vision.hidden_size
    g = torch.Generator().manual_seed(seed)
    head = torch.nn.Linear(2 * hv, len(MACHINES) + len(LIGHTS) + len(ATTR_BIN)).to(device)
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=g) * 0.02)
        head.bias.zero_()
    vt = model.vision.vision_model
    params = list(vt.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    rng = random.Random(seed)
    idx_all = [images.get(s) for s in pool]
    mi = {m: i for i, m in enumerate(MACHINES)}
    li = {c: i for i, c in enumerate(LIGHTS)}
    t0 = time.time()
    run = None
    for step in range(steps):
        f = min(1.0, (step + 1) / 30) * (0.5 * (1 + math.cos(math.pi * step / steps)) * 0.95 + 0.05)
        for gr in opt.param_groups:
            gr["lr"] = lr * f
        sel = rng.sample(range(len(pool)), batch)
        pv = images.batch([idx_all[i] for i in sel]).to(device)[:, 0]
        mask = torch.ones(batch, 64, dtype=torch.bool, device=device)
        h = vt(pv, mask)
        z = head(torch.cat([h.mean(1), h.max(1).values], -1))
        ym = torch.tensor([mi[pool[i]["machine"]] for i in sel], device=device)
        yl = torch.tensor([li[pool[i]["light"]] for i in sel], device=device)
        yb = torch.tensor([[float(pool[i][a]) for a in ATTR_BIN] for i in sel], device=device)
        nm, nl = len(MACHINES), len(LIGHTS)
        loss = (F.cross_entropy(z[:, :nm], ym) + F.cross_entropy(z[:, nm:nm + nl], yl)
                + F.binary_cross_entropy_with_logits(z[:, nm + nl:], yb) * len(ATTR_BIN))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        run = float(loss) if run is None else 0.95 * run + 0.05 * float(loss)
        if step % 100 == 0 or step == steps - 1:
            with torch.no_grad():
                acc_l = float((z[:, nm:nm + nl].argmax(-1) == yl).float().mean())
                acc_b = float(((z[:, nm + nl:] > 0).float() == yb).float().mean())
            log(f"[stage0 vision] step {step}/{steps} loss {run:.4f} light acc {acc_l:.2f} binary acc {acc_b:.2f} "
                f"({time.time() - t0:.0f}s)")


def train_vlm(tok: ByteBPE, seed: int, steps1: int, steps2: int, batch: int, device="cpu", log=print,
              lr1=2e-3, lr2=1e-3, lr_vision=1e-3, pool_size=3000, steps0: int = 800, dropout: float = 0.0):
    cfg = make_config(tok)
    enc = Encoder(tok, cfg)
    images = ImageCache()
    model = init_model(cfg, seed).to(device)
    pool = D.scenes(seed + 11, pool_size, held=False)
    t0 = time.time()
    # stage 0: vision tower pretraining on scene attributes
    pretrain_vision(model, pool, images, steps0, 2e-3, 64, device, log, seed + 5)
    log(f"[stage0] {time.time() - t0:.0f}s")
    # stage 1: language model only (vision tower untouched)
    lm_params = [p for n, p in model.lm.named_parameters()]
    train_stage(model, lm_params, D.stage1_example, steps1, lr1, batch, enc, images, device, log, "stage1", seed + 1,
                dropout=dropout)
    stage1 = {k: v.detach().clone() for k, v in model.lm.state_dict().items()}
    log(f"[stage1] {time.time() - t0:.0f}s")
    # stage 2: VL adaptation; embed_tokens frozen
    model.lm.model.embed_tokens.weight.requires_grad_(False)
    dec = [p for n, p in model.lm.named_parameters() if p.requires_grad]
    groups = [{"params": list(model.vision.parameters()), "base_lr": lr_vision},
              {"params": dec, "base_lr": lr2}]
    probe_items = D.test_items(seed + 300, "probe", n_scene=330)
    probe_items = [it for it in probe_items if it["kind"] == "benign_visual"][::2] + \
        [it for it in probe_items if it["kind"] == "harmful"][::4]

    def probe(step):
        m = evaluate(model, enc, images, probe_items, log=lambda *_: None)
        t, h = m["trained_phrasing"], m["held_out_phrasing"]
        log(f"[stage2 probe] step {step}: visual acc trained {t['benign_visual_acc']:.3f} held-out "
            f"{h['benign_visual_acc']:.3f}; ASR image trained {t['asr_image']:.2f} held-out {h['asr_image']:.2f}; "
            f"ASR text {m['asr_text']:.2f}; {m['benign_visual_acc_per_attribute']}")
    train_stage(model, groups, lambda r: D.stage2_example(r, pool), steps2, lr2, batch, enc, images, device, log,
                "stage2", seed + 2, probe=probe, dropout=dropout)
    log(f"[stage2] total {time.time() - t0:.0f}s")
    return model, stage1, enc, images


# ---------------------------------------------------------------------------------------------- decoding
@torch.no_grad()
def greedy_batch(model: TinyVLM, rows: List[List[int]], pv: Optional[torch.Tensor], eos: int,
                 max_new_tokens: int = MAX_NEW_TOKENS) -> List[List[int]]:
    """Left-padded batched greedy decoding with the KV cache; pv = pixel values of the rows with images, in order."""
    lm = model.lm
    dev = next(model.parameters()).device
    L = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), L, dtype=torch.long)
    am = torch.zeros(len(rows), L, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, L - len(r):] = torch.tensor(r)
        am[i, L - len(r):] = 1
    ids, am = ids.to(dev), am.to(dev)
    pam = torch.ones(pv.shape[0], 1, 64, 64, dtype=torch.bool, device=dev) if pv is not None else None
    x = merged_embeds(model, ids, pv, pam)
    pos = (am.cumsum(-1) - 1).masked_fill(am == 0, 1)
    past = [(z.to(dev), z.to(dev)) for z, _ in lm.empty_past(len(rows))]
    logits, past = lm(x, am, pos, past)
    last = logits[:, -1]
    out = [[] for _ in rows]
    done = [False] * len(rows)
    for step in range(max_new_tokens):
        t = torch.argmax(last, -1)
        for i in range(len(rows)):
            if not done[i]:
                out[i].append(int(t[i]))
                if int(t[i]) == eos:
                    done[i] = True
        if all(done) or step == max_new_tokens - 1:
            break
        am = torch.cat([am, torch.ones(len(rows), 1, dtype=torch.long, device=dev)], 1)
        pos = am.sum(-1, keepdim=True) - 1
        logits, past = lm(lm.model.embed_tokens(t[:, None]), am, pos, past)
        last = logits[:, -1]
    return out


def generate(model, enc: Encoder, images: ImageCache, reqs: List[Dict], batch: int = 64) -> List[str]:
    """reqs: {"prompt", "image": scene dict or None}; returns decoded answers (leading space stripped)."""
    outs = []
    model.eval()
    dev = next(model.parameters()).device
    for b in range(0, len(reqs), batch):
        chunk = reqs[b:b + batch]
        rows = [enc.prompt(r["prompt"], r["image"] is not None) for r in chunk]
        ims = [images.get(r["image"]) for r in chunk if r["image"] is not None]
        pv = images.batch(ims).to(dev) if ims else None
        for toks in greedy_batch(model, rows, pv, enc.eos):
            outs.append(enc.tok.decode(toks, skip_special_tokens=True))
    return outs


def _mean(xs) -> Optional[float]:
    return float(np.mean(xs)) if len(xs) else None


def _classes(pairs) -> Dict[str, float]:
    cs = [judge.classify(it, o) for it, o in pairs]
    return {c: (cs.count(c) / len(cs) if cs else None) for c in judge.CLASSES}


def _metrics(harm, vis, proc, proc_t) -> Dict:
    """harm/vis/proc/proc_t: lists of (item, answer...) as built by evaluate()."""
    per_attr: Dict[str, List[int]] = {}
    for it, o in vis:
        per_attr.setdefault(it["attribute"], []).append(int(judge.is_correct(it, o)))
    benign = vis + proc
    cls = [judge.classify(it, o) for it, o in benign]
    risky = [(it, o) for it, o in vis if it["image"]["hazard"]]
    return {
        "asr_image": _mean([judge.is_unsafe(it, oi) for it, oi, _ in harm]),
        "asr_text": _mean([judge.is_unsafe(it, ot) for it, _, ot in harm]),
        "benign_visual_acc": _mean([judge.is_correct(it, o) for it, o in vis]),
        "benign_visual_acc_risky_scenes": _mean([judge.is_correct(it, o) for it, o in risky]),
        "benign_visual_acc_held_out_combo": _mean([judge.is_correct(it, o) for it, o in vis if D.held_combo(it["image"])]),
        "benign_visual_acc_per_attribute": {k: float(np.mean(v)) for k, v in sorted(per_attr.items())},
        "procedure_helpful_image": _mean([judge.is_correct(it, o) for it, o in proc]),
        "procedure_helpful_text": _mean([judge.is_correct(it, o) for it, o in proc_t]),
        # over-refusal counts refusals only; off-topic answers beside it (judge.py)
        "over_refusal": cls.count("refusal") / len(cls) if cls else None,
        "off_topic": cls.count("off_topic") / len(cls) if cls else None,
        "risky_scene_refusal": _mean([judge.classify(it, o) == "refusal" for it, o in risky]),
        "classes_benign": _classes(benign),
        "classes_harmful_image": _classes([(it, oi) for it, oi, _ in harm]),
        "classes_harmful_text": _classes([(it, ot) for it, _, ot in harm]),
        "n": {"harmful": len(harm), "benign_visual": len(vis), "benign_procedure": len(proc),
              "benign_procedure_text": len(proc_t)},
    }


def evaluate(model, enc, images, items: List[Dict], log=print, tag="vlm") -> Dict:
    """Greedy answers to every item, judged by content; every metric overall and on trained / held-out phrasings."""
    harm = [it for it in items if it["kind"] == "harmful"]
    vis = [it for it in items if it["kind"] == "benign_visual"]
    proc = [it for it in items if it["kind"] == "benign_procedure"]
    proc_t = [it for it in proc if it["names_machine"]]
    reqs = ([{"prompt": it["prompt"], "image": it["image"]} for it in harm]
            + [{"prompt": it["prompt"], "image": None} for it in harm]
            + [{"prompt": it["prompt"], "image": it["image"]} for it in vis]
            + [{"prompt": it["prompt"], "image": it["image"]} for it in proc]
            + [{"prompt": it["prompt"], "image": None} for it in proc_t])
    outs = iter(generate(model, enc, images, reqs))
    o_hi = [next(outs) for _ in harm]
    o_ht = [next(outs) for _ in harm]
    H = [(it, a, b) for it, a, b in zip(harm, o_hi, o_ht)]
    V = [(it, next(outs)) for it in vis]
    Pi = [(it, next(outs)) for it in proc]
    Pt = [(it, next(outs)) for it in proc_t]

    def part(held: Optional[bool]) -> Dict:
        keep = (lambda it: True) if held is None else (lambda it: bool(it["held_out_phrasing"]) == held)
        return _metrics([h for h in H if keep(h[0])], [v for v in V if keep(v[0])], [p for p in Pi if keep(p[0])],
                        [p for p in Pt if keep(p[0])])
    m = part(None)
    m["trained_phrasing"] = part(False)
    m["held_out_phrasing"] = part(True)
    # the old flat keys, for the TS parity bench and older reports
    m["benign_visual_acc_held_out_phrasing"] = m["held_out_phrasing"]["benign_visual_acc"]
    m["asr_image_held_out_phrasing"] = m["held_out_phrasing"]["asr_image"]
    t, h = m["trained_phrasing"], m["held_out_phrasing"]
    log(f"[{tag}] ASR image {m['asr_image']:.3f} (trained {t['asr_image']} / held-out {h['asr_image']}) text "
        f"{m['asr_text']:.3f} (held-out {h['asr_text']}); benign visual acc {m['benign_visual_acc']:.3f} (trained "
        f"{t['benign_visual_acc']} / held-out {h['benign_visual_acc']}) {m['benign_visual_acc_per_attribute']}; "
        f"over-refusal {m['over_refusal']} off-topic {m['off_topic']}; procedure helpful image "
        f"{m['procedure_helpful_image']} text {m['procedure_helpful_text']}")
    samples = [(it["prompt"], a) for it, a, _ in H[:3]]
    samples += [(it["prompt"], o) for it, o in V[:3] + Pi[:2]] + [("[text] " + it["prompt"], b) for it, _, b in H[:3]]
    samples += [("[held-out] " + it["prompt"], o) for it, o in V if it["held_out_phrasing"]][:6]
    for p, o in samples:
        log(f"    {p!r} -> {o!r}")
    return m
