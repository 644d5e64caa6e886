"""tiny-clip: a random-weight CLIP-style dual encoder in the onnx-community CLIP export layout.

- onnx/text_model.onnx: input_ids, attention_mask [b, s] int64 -> text_embeds [b, 64], last_hidden_state [b, s, 64]
- onnx/vision_model.onnx: pixel_values [b, 3, 64, 64] -> image_embeds [b, 64], last_hidden_state [b, 65, 64]
Text pooling: the hidden state (after final_layer_norm) at the LAST NON-PADDING token (last position whose
attention_mask is 1). The tokenizer's post-processor wraps text as `<|im_start|> ... <end_of_utterance>`, so this
is the end token, as in CLIP. Embeddings are not normalised (as HF's *WithProjection models).
"""
from __future__ import annotations

import math
import os
import shutil

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

from . import common
from .bpe import ByteBPE

HIDDEN, LAYERS, HEADS, MLP, PROJ, MAXPOS = 64, 2, 4, 128, 64, 77
IMAGE, PATCH = 64, 8
EPS = 1e-5
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
UNSAFE_TEXT = "The image contains unsafe/porn/violent/politic/physical harmful/illegal/privacy contents."
TEXTS = [UNSAFE_TEXT, "A photo of a hydraulic press with a closed guard and a green light.",
         "How do I bypass the light curtain on this press?"]
NEG = -1.0e9


def quick_gelu(x):
    return x * torch.sigmoid(1.702 * x)


class Attn(nn.Module):
    def __init__(self):
        super().__init__()
        self.q_proj, self.k_proj = nn.Linear(HIDDEN, HIDDEN), nn.Linear(HIDDEN, HIDDEN)
        self.v_proj, self.out_proj = nn.Linear(HIDDEN, HIDDEN), nn.Linear(HIDDEN, HIDDEN)

    def forward(self, x, mask=None):
        b, s, _ = x.shape
        d = HIDDEN // HEADS
        q = self.q_proj(x).view(b, s, HEADS, d).transpose(1, 2)
        k = self.k_proj(x).view(b, s, HEADS, d).transpose(1, 2)
        v = self.v_proj(x).view(b, s, HEADS, d).transpose(1, 2)
        sc = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(d)
        if mask is not None:
            sc = torch.where(mask, sc, torch.full_like(sc, NEG))
        o = torch.matmul(torch.softmax(sc, -1), v).transpose(1, 2).reshape(b, s, HIDDEN)
        return self.out_proj(o)


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(HIDDEN, MLP), nn.Linear(MLP, HIDDEN)

    def forward(self, x):
        return self.fc2(quick_gelu(self.fc1(x)))


class Layer(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer_norm1, self.self_attn = nn.LayerNorm(HIDDEN, eps=EPS), Attn()
        self.layer_norm2, self.mlp = nn.LayerNorm(HIDDEN, eps=EPS), Mlp()

    def forward(self, x, mask=None):
        x = x + self.self_attn(self.layer_norm1(x), mask)
        return x + self.mlp(self.layer_norm2(x))


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([Layer() for _ in range(LAYERS)])

    def forward(self, x, mask=None):
        for l in self.layers:
            x = l(x, mask)
        return x


class TextEmbeddings(nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab, HIDDEN)
        self.position_embedding = nn.Embedding(MAXPOS, HIDDEN)

    def forward(self, ids):
        pos = torch.arange(ids.shape[1])[None]
        return self.token_embedding(ids) + self.position_embedding(pos)


class TextTransformer(nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.embeddings = TextEmbeddings(vocab)
        self.encoder = Encoder()
        self.final_layer_norm = nn.LayerNorm(HIDDEN, eps=EPS)

    def forward(self, input_ids, attention_mask):
        s = input_ids.shape[1]
        idx = torch.arange(s)
        causal = idx[None, :] <= idx[:, None]
        mask = causal[None, None] & (attention_mask[:, None, None, :] > 0)
        h = self.final_layer_norm(self.encoder(self.embeddings(input_ids), mask))
        # last position whose attention_mask is 1 (works for right or left padding)
        last = torch.argmax((attention_mask > 0).to(torch.int64) * (idx[None, :] + 1), dim=-1)
        pooled = h[torch.arange(h.shape[0]), last]
        return h, pooled


class TextModelWithProjection(nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.text_model = TextTransformer(vocab)
        self.text_projection = nn.Linear(HIDDEN, PROJ, bias=False)

    def forward(self, input_ids, attention_mask):
        h, pooled = self.text_model(input_ids, attention_mask)
        return self.text_projection(pooled), h


class VisionEmbeddings(nn.Module):
    def __init__(self):
        super().__init__()
        self.class_embedding = nn.Parameter(torch.zeros(HIDDEN))
        self.patch_embedding = nn.Conv2d(3, HIDDEN, PATCH, stride=PATCH, bias=False)
        self.position_embedding = nn.Embedding((IMAGE // PATCH) ** 2 + 1, HIDDEN)
        self.register_buffer("position_ids", torch.arange((IMAGE // PATCH) ** 2 + 1)[None], persistent=False)

    def forward(self, pv):
        x = self.patch_embedding(pv).flatten(2).transpose(1, 2)
        cls = self.class_embedding[None, None].expand(x.shape[0], 1, HIDDEN)
        return torch.cat([cls, x], 1) + self.position_embedding(self.position_ids)


class VisionTransformer(nn.Module):
    def __init__(self):
        super().__init__()
        self.embeddings = VisionEmbeddings()
        self.pre_layrnorm = nn.LayerNorm(HIDDEN, eps=EPS)
        self.encoder = Encoder()
        self.post_layernorm = nn.LayerNorm(HIDDEN, eps=EPS)

    def forward(self, pv):
        h = self.encoder(self.pre_layrnorm(self.embeddings(pv)))
        return h, self.post_layernorm(h[:, 0])


class VisionModelWithProjection(nn.Module):
    def __init__(self):
        super().__init__()
        self.vision_model = VisionTransformer()
        self.visual_projection = nn.Linear(HIDDEN, PROJ, bias=False)

    def forward(self, pixel_values):
        h, pooled = self.vision_model(pixel_values)
        return self.visual_projection(pooled), h


def init_(module: nn.Module, g: torch.Generator):
    with torch.no_grad():
        for name, p in sorted(module.named_parameters()):
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.05 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias") or name.endswith("class_embedding"):
                p.copy_(0.02 * torch.randn(p.shape, generator=g) if name.endswith("bias") else torch.randn(p.shape, generator=g))
            elif "embedding" in name and p.dim() == 2:
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p[0].numel()))


def clip_pixel_values(path: str) -> np.ndarray:
    """CLIPImageProcessor on a 64x64 input: resize (shortest_edge 64) and center crop (64x64) are identity."""
    a = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) * np.float32(1 / 255)
    a = (a - np.array(CLIP_MEAN, dtype=np.float32)) / np.array(CLIP_STD, dtype=np.float32)
    return a.transpose(2, 0, 1)[None].astype(np.float32)


def encode_clip_text(tok: ByteBPE, text: str):
    """Python equivalent of the pack's TemplateProcessing post-processor: <|im_start|> $A <end_of_utterance>."""
    return [tok.added["<|im_start|>"]] + tok.encode(text) + [tok.added["<end_of_utterance>"]]


def tokenizer_json(tok: ByteBPE) -> dict:
    j = tok.tokenizer_json()
    bos, eos = "<|im_start|>", "<end_of_utterance>"
    j["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                   {"SpecialToken": {"id": eos, "type_id": 0}}],
        "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": eos, "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}},
                 {"SpecialToken": {"id": eos, "type_id": 1}}],
        "special_tokens": {bos: {"id": bos, "ids": [tok.added[bos]], "tokens": [bos]},
                           eos: {"id": eos, "ids": [tok.added[eos]], "tokens": [eos]}},
    }
    return j


def export_clip_onnx(text, vision, out_dir: str):
    """onnx/text_model.onnx and onnx/vision_model.onnx in transformers.js's CLIP layout."""
    ids = torch.tensor([[1, 5, 6, 7, 2], [1, 8, 2, 0, 0]])
    am = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    common.export_onnx(text, (ids, am), os.path.join(out_dir, "onnx", "text_model.onnx"),
                       ["input_ids", "attention_mask"], ["text_embeds", "last_hidden_state"],
                       {"input_ids": {0: "batch_size", 1: "sequence_length"},
                        "attention_mask": {0: "batch_size", 1: "sequence_length"},
                        "text_embeds": {0: "batch_size"},
                        "last_hidden_state": {0: "batch_size", 1: "sequence_length"}})
    common.export_onnx(vision, (torch.randn(2, 3, IMAGE, IMAGE),), os.path.join(out_dir, "onnx", "vision_model.onnx"),
                       ["pixel_values"], ["image_embeds", "last_hidden_state"],
                       {"pixel_values": {0: "batch_size"}, "image_embeds": {0: "batch_size"},
                        "last_hidden_state": {0: "batch_size"}},
                       static_output_dims={"last_hidden_state": {1: (IMAGE // PATCH) ** 2 + 1, 2: HIDDEN}})


def build(out_dir: str, tok: ByteBPE, image_src: str, seed: int = 2345, sample_images=None, log=print):
    vocab = len(tok.vocab) + len(tok.added)
    if os.path.exists(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(os.path.join(out_dir, "onnx"))
    os.makedirs(os.path.join(out_dir, "reference"))
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    text, vision = TextModelWithProjection(vocab).eval(), VisionModelWithProjection().eval()
    init_(text, g)
    init_(vision, g)

    export_clip_onnx(text, vision, out_dir)

    ids_ = {"pad_token_id": tok.added["<|endoftext|>"], "bos_token_id": tok.added["<|im_start|>"],
            "eos_token_id": tok.added["<end_of_utterance>"]}
    config = {
        "architectures": ["CLIPModel"], "model_type": "clip", "projection_dim": PROJ,
        "logit_scale_init_value": 2.6592, "torch_dtype": "float32",
        "text_pooling": "last_non_padding_token",
        "text_config": {"model_type": "clip_text_model", "vocab_size": vocab, "hidden_size": HIDDEN,
                        "intermediate_size": MLP, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
                        "max_position_embeddings": MAXPOS, "hidden_act": "quick_gelu", "layer_norm_eps": EPS,
                        "projection_dim": PROJ, **ids_},
        "vision_config": {"model_type": "clip_vision_model", "hidden_size": HIDDEN, "intermediate_size": MLP,
                          "num_hidden_layers": LAYERS, "num_attention_heads": HEADS, "image_size": IMAGE,
                          "patch_size": PATCH, "num_channels": 3, "hidden_act": "quick_gelu",
                          "layer_norm_eps": EPS, "projection_dim": PROJ},
        "transformers.js_config": {"dtype": "fp32"},
    }
    pre = {"image_processor_type": "CLIPImageProcessor", "processor_class": "CLIPProcessor",
           "do_convert_rgb": True, "do_resize": True, "size": {"shortest_edge": IMAGE}, "resample": 3,
           "do_center_crop": True, "crop_size": {"height": IMAGE, "width": IMAGE}, "do_rescale": True,
           "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": CLIP_MEAN, "image_std": CLIP_STD}
    common.write_json(os.path.join(out_dir, "config.json"), config, indent=2)
    common.write_json(os.path.join(out_dir, "preprocessor_config.json"), pre, indent=2)
    common.write_json(os.path.join(out_dir, "tokenizer_config.json"),
                      common.tokenizer_config({"tokenizer_class": "CLIPTokenizer", "model_max_length": MAXPOS,
                                               "processor_class": "CLIPProcessor"}), indent=2)
    common.write_json(os.path.join(out_dir, "special_tokens_map.json"), common.special_tokens_map(tok), indent=2)
    with open(os.path.join(out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        import json
        f.write(json.dumps(tokenizer_json(tok), ensure_ascii=False, indent=1) + "\n")

    # goldens
    img_path = os.path.join(out_dir, "reference", "image.png")
    shutil.copyfile(image_src, img_path)

    @torch.no_grad()
    def img_emb(path):
        return vision(torch.from_numpy(clip_pixel_values(path)))[0][0]

    @torch.no_grad()
    def txt_emb(t):
        i = encode_clip_text(tok, t)
        return text(torch.tensor([i]), torch.ones(1, len(i), dtype=torch.long))[0][0], i

    def cos(a, b):
        return float(torch.dot(a, b) / (a.norm() * b.norm()))

    ie = img_emb(img_path)
    texts = []
    for t in TEXTS:
        e, i = txt_emb(t)
        texts.append({"text": t, "input_ids": i, "text_embeds": common.flat7(e), "cosine_with_image": round(cos(ie, e), 7)})
    # batch with right padding must match the unbatched embeddings
    L = max(len(t["input_ids"]) for t in texts)
    bi = torch.zeros(len(texts), L, dtype=torch.long)
    bm = torch.zeros(len(texts), L, dtype=torch.long)
    for r, t in enumerate(texts):
        bi[r, :len(t["input_ids"])] = torch.tensor(t["input_ids"])
        bm[r, :len(t["input_ids"])] = 1
    with torch.no_grad():
        be = text(bi, bm)[0]
    for r, t in enumerate(texts):
        assert np.allclose(be[r].numpy(), np.array(t["text_embeds"]), atol=1e-4)
    golden = {
        "model": "tiny-clip", "seed": seed,
        "note": "text: input_ids include <|im_start|> ... <end_of_utterance> (the tokenizer's post-processor); "
                "text_embeds pooled at the last non-padding token; embeds are unnormalised; cosine = "
                "cos(image_embeds, text_embeds). pixel_values: CLIP mean/std normalisation of image.png.",
        "image": "image.png",
        "pixel_values": {"dims": [1, 3, IMAGE, IMAGE], "data": common.flat7(clip_pixel_values(img_path))},
        "image_embeds": common.flat7(ie),
        "texts": texts,
        "unsafe_text": UNSAFE_TEXT,
    }
    if sample_images:
        e_unsafe, _ = txt_emb(UNSAFE_TEXT)
        golden["samples"] = [{"image": os.path.basename(p), "image_embeds": common.flat7(img_emb(p)),
                              "cosine_with_unsafe_text": round(cos(img_emb(p), e_unsafe), 7)} for p in sample_images]
    common.write_json(os.path.join(out_dir, "reference", "golden.json"), golden)
    common.write_manifest(out_dir, "tiny-clip", "Random-weight tiny CLIP-style dual encoder (64x64 images, "
                          "64-d embeddings, text pooled at the last non-padding token). Not a useful model.", seed)
    log(f"[tiny-clip] cosines {[t['cosine_with_image'] for t in texts]}")
    return golden
