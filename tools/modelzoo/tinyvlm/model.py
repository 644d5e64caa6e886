"""A tiny Idefics3/SmolVLM-layout VLM in plain PyTorch (SigLIP-like vision encoder, pixel-shuffle connector,
LLaMA-style decoder with grouped-query attention), with HF-style module names so that ONNX node names come out
like `/model/layers.0/self_attn/o_proj/MatMul`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

NEG = -1.0e9  # finite "minus infinity": fully masked rows stay finite (no NaN in padded positions)


@dataclass
class VisionConfig:
    hidden_size: int = 64
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    intermediate_size: int = 128
    image_size: int = 64
    patch_size: int = 8
    num_channels: int = 3
    layer_norm_eps: float = 1e-6


@dataclass
class TextConfig:
    vocab_size: int = 1000
    hidden_size: int = 128
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int = 32
    intermediate_size: int = 256
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    max_position_embeddings: int = 512


@dataclass
class VLMConfig:
    vision: VisionConfig = field(default_factory=VisionConfig)
    text: TextConfig = field(default_factory=TextConfig)
    scale_factor: int = 2
    image_token_id: int = 3

    @property
    def image_seq_len(self) -> int:
        n = (self.vision.image_size // self.vision.patch_size) ** 2
        return n // (self.scale_factor ** 2)


# ----------------------------------------------------------------------------------------------- vision
class VisionEmbeddings(nn.Module):
    def __init__(self, c: VisionConfig):
        super().__init__()
        self.c = c
        self.patch_embedding = nn.Conv2d(c.num_channels, c.hidden_size, c.patch_size, stride=c.patch_size)
        self.num_patches = (c.image_size // c.patch_size) ** 2
        self.position_embedding = nn.Embedding(self.num_patches, c.hidden_size)
        self.register_buffer("position_ids", torch.arange(self.num_patches).unsqueeze(0), persistent=False)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = self.patch_embedding(pixel_values)  # [n, d, h/p, w/p]
        x = x.flatten(2).transpose(1, 2)
        return x + self.position_embedding(self.position_ids)


class VisionAttention(nn.Module):
    def __init__(self, c: VisionConfig):
        super().__init__()
        self.h = c.num_attention_heads
        self.d = c.hidden_size // c.num_attention_heads
        self.q_proj = nn.Linear(c.hidden_size, c.hidden_size)
        self.k_proj = nn.Linear(c.hidden_size, c.hidden_size)
        self.v_proj = nn.Linear(c.hidden_size, c.hidden_size)
        self.out_proj = nn.Linear(c.hidden_size, c.hidden_size)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        n, s, _ = x.shape
        q = self.q_proj(x).view(n, s, self.h, self.d).transpose(1, 2)
        k = self.k_proj(x).view(n, s, self.h, self.d).transpose(1, 2)
        v = self.v_proj(x).view(n, s, self.h, self.d).transpose(1, 2)
        scores = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.d)
        scores = torch.where(key_mask[:, None, None, :], scores, torch.full_like(scores, NEG))
        p = torch.softmax(scores, dim=-1)
        o = torch.matmul(p, v).transpose(1, 2).reshape(n, s, self.h * self.d)
        return self.out_proj(o)


class VisionMLP(nn.Module):
    def __init__(self, c: VisionConfig):
        super().__init__()
        self.fc1 = nn.Linear(c.hidden_size, c.intermediate_size)
        self.fc2 = nn.Linear(c.intermediate_size, c.hidden_size)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class VisionLayer(nn.Module):
    def __init__(self, c: VisionConfig):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.self_attn = VisionAttention(c)
        self.layer_norm2 = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.mlp = VisionMLP(c)

    def forward(self, x, key_mask):
        x = x + self.self_attn(self.layer_norm1(x), key_mask)
        return x + self.mlp(self.layer_norm2(x))


class VisionEncoder(nn.Module):
    def __init__(self, c: VisionConfig):
        super().__init__()
        self.layers = nn.ModuleList([VisionLayer(c) for _ in range(c.num_hidden_layers)])

    def forward(self, x, key_mask):
        for layer in self.layers:
            x = layer(x, key_mask)
        return x


class VisionTransformer(nn.Module):
    def __init__(self, c: VisionConfig):
        super().__init__()
        self.c = c
        self.embeddings = VisionEmbeddings(c)
        self.encoder = VisionEncoder(c)
        self.post_layernorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, pixel_values: torch.Tensor, patch_mask: torch.Tensor) -> torch.Tensor:
        return self.post_layernorm(self.encoder(self.embeddings(pixel_values), patch_mask))


class SimpleMLP(nn.Module):
    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.proj = nn.Linear(d_in, d_out, bias=False)

    def forward(self, x):
        return self.proj(x)


class Connector(nn.Module):
    def __init__(self, cfg: VLMConfig):
        super().__init__()
        self.scale_factor = cfg.scale_factor
        self.seq = (cfg.vision.image_size // cfg.vision.patch_size) ** 2
        self.modality_projection = SimpleMLP(cfg.vision.hidden_size * cfg.scale_factor ** 2, cfg.text.hidden_size)

    def pixel_shuffle(self, x: torch.Tensor) -> torch.Tensor:
        """Exactly Idefics3Connector.pixel_shuffle (static sizes)."""
        sf = self.scale_factor
        bsz = x.shape[0]
        seq, embed_dim = self.seq, x.shape[2]
        height = width = int(seq ** 0.5)
        x = x.reshape(bsz, height, width, embed_dim)
        x = x.reshape(bsz, height, width // sf, embed_dim * sf)
        x = x.permute(0, 2, 1, 3)
        x = x.reshape(bsz, width // sf, height // sf, embed_dim * sf * sf)
        x = x.permute(0, 2, 1, 3)
        x = x.reshape(bsz, seq // (sf * sf), embed_dim * sf * sf)
        return x

    def forward(self, x):
        return self.modality_projection(self.pixel_shuffle(x))


class VisionEncoderForExport(nn.Module):
    """pixel_values [b, n, 3, H, W], pixel_attention_mask bool [b, n, H, W] -> image_features [b*n, seq, d_text].

    pixel_attention_mask is reduced to a per-patch mask (a patch is valid when any of its pixels is valid,
    as Idefics3 does with unfold(...).sum() > 0) and used as the key mask of the vision self-attention.
    Images are not dropped (HF drops all-zero padding images; with do_image_splitting=false every sample has
    exactly one image, so there are none)."""

    def __init__(self, cfg: VLMConfig):
        super().__init__()
        self.cfg = cfg
        self.vision_model = VisionTransformer(cfg.vision)
        self.connector = Connector(cfg)

    def forward(self, pixel_values: torch.Tensor, pixel_attention_mask: torch.Tensor) -> torch.Tensor:
        c = self.cfg.vision
        hw, p = c.image_size, c.patch_size
        g = hw // p
        pv = pixel_values.reshape(-1, c.num_channels, hw, hw)
        m = pixel_attention_mask.reshape(-1, g, p, g, p).to(torch.float32)
        patch_mask = m.sum(dim=(2, 4)).reshape(-1, g * g) > 0
        return self.connector(self.vision_model(pv, patch_mask))


# ------------------------------------------------------------------------------------------------- text
class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        var = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(var + self.eps))


def rotate_half(x):
    d = x.shape[-1] // 2
    return torch.cat((-x[..., d:], x[..., :d]), dim=-1)


class RotaryEmbedding(nn.Module):
    def __init__(self, head_dim: int, theta: float):
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, position_ids: torch.Tensor):
        freqs = position_ids.to(torch.float32)[:, :, None] * self.inv_freq[None, None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos(), emb.sin()


class Attention(nn.Module):
    def __init__(self, c: TextConfig):
        super().__init__()
        self.h, self.kvh, self.d = c.num_attention_heads, c.num_key_value_heads, c.head_dim
        self.q_proj = nn.Linear(c.hidden_size, self.h * self.d, bias=False)
        self.k_proj = nn.Linear(c.hidden_size, self.kvh * self.d, bias=False)
        self.v_proj = nn.Linear(c.hidden_size, self.kvh * self.d, bias=False)
        self.o_proj = nn.Linear(self.h * self.d, c.hidden_size, bias=False)

    def forward(self, x, cos, sin, mask, past_k, past_v):
        b, s, _ = x.shape
        q = self.q_proj(x).view(b, s, self.h, self.d).transpose(1, 2)
        k = self.k_proj(x).view(b, s, self.kvh, self.d).transpose(1, 2)
        v = self.v_proj(x).view(b, s, self.kvh, self.d).transpose(1, 2)
        cos, sin = cos[:, None], sin[:, None]
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if past_k is not None:
            k = torch.cat([past_k, k], dim=2)
            v = torch.cat([past_v, v], dim=2)
        rep = self.h // self.kvh
        t = k.shape[2]
        kk = k[:, :, None].expand(b, self.kvh, rep, t, self.d).reshape(b, self.h, t, self.d)
        vv = v[:, :, None].expand(b, self.kvh, rep, t, self.d).reshape(b, self.h, t, self.d)
        scores = torch.matmul(q, kk.transpose(2, 3)) / math.sqrt(self.d)
        scores = torch.where(mask, scores, torch.full_like(scores, NEG))
        p = torch.softmax(scores, dim=-1)
        o = torch.matmul(p, vv).transpose(1, 2).reshape(b, s, self.h * self.d)
        return self.o_proj(o), k, v


class MLP(nn.Module):
    def __init__(self, c: TextConfig):
        super().__init__()
        self.gate_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.up_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.down_proj = nn.Linear(c.intermediate_size, c.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, c: TextConfig):
        super().__init__()
        self.self_attn = Attention(c)
        self.mlp = MLP(c)
        self.input_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)

    def forward(self, x, cos, sin, mask, past_k, past_v):
        a, k, v = self.self_attn(self.input_layernorm(x), cos, sin, mask, past_k, past_v)
        x = x + a
        x = x + self.mlp(self.post_attention_layernorm(x))
        return x, k, v


class TextModel(nn.Module):
    def __init__(self, c: TextConfig):
        super().__init__()
        self.c = c
        self.embed_tokens = nn.Embedding(c.vocab_size, c.hidden_size)
        self.layers = nn.ModuleList([DecoderLayer(c) for _ in range(c.num_hidden_layers)])
        self.norm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.rotary_emb = RotaryEmbedding(c.head_dim, c.rope_theta)

    def forward(self, inputs_embeds, attention_mask, position_ids,
                past: Optional[List[Tuple[torch.Tensor, torch.Tensor]]] = None):
        b, s, _ = inputs_embeds.shape
        total = attention_mask.shape[1]
        q_idx = torch.arange(s, device=inputs_embeds.device) + (total - s)
        k_idx = torch.arange(total, device=inputs_embeds.device)
        causal = k_idx[None, :] <= q_idx[:, None]  # [s, total]
        mask = causal[None, None] & (attention_mask[:, None, None, :] > 0)  # [b, 1, s, total]
        cos, sin = self.rotary_emb(position_ids)
        x = inputs_embeds
        presents = []
        for i, layer in enumerate(self.layers):
            pk, pv = (past[i][0], past[i][1]) if past is not None else (None, None)
            x, k, v = layer(x, cos, sin, mask, pk, pv)
            presents.append((k, v))
        return self.norm(x), presents


class CausalLM(nn.Module):
    def __init__(self, c: TextConfig):
        super().__init__()
        self.c = c
        self.model = TextModel(c)
        self.lm_head = nn.Linear(c.hidden_size, c.vocab_size, bias=False)

    def forward(self, inputs_embeds, attention_mask, position_ids, past):
        h, presents = self.model(inputs_embeds, attention_mask, position_ids, past)
        return self.lm_head(h), presents

    def empty_past(self, batch: int):
        c = self.c
        z = torch.zeros(batch, c.num_key_value_heads, 0, c.head_dim)
        return [(z, z) for _ in range(c.num_hidden_layers)]


class DecoderForExport(nn.Module):
    """Flat-signature wrapper for ONNX export; `model.` and `lm_head` keep HF scope names."""

    def __init__(self, lm: CausalLM):
        super().__init__()
        self.model = lm.model
        self.lm_head = lm.lm_head
        self.n = lm.c.num_hidden_layers

    def forward(self, inputs_embeds, attention_mask, position_ids, *past_flat):
        past = [(past_flat[2 * i], past_flat[2 * i + 1]) for i in range(self.n)]
        h, presents = self.model(inputs_embeds, attention_mask, position_ids, past)
        out = [self.lm_head(h)]
        for k, v in presents:
            out += [k, v]
        return tuple(out)


class EmbedForExport(nn.Module):
    def __init__(self, lm: CausalLM):
        super().__init__()
        self.embed_tokens = lm.model.embed_tokens

    def forward(self, input_ids):
        return self.embed_tokens(input_ids)


class TinyVLM(nn.Module):
    def __init__(self, cfg: VLMConfig):
        super().__init__()
        self.cfg = cfg
        self.vision = VisionEncoderForExport(cfg)
        self.lm = CausalLM(cfg.text)

    def init_weights(self, seed: int, embed_std: float = 1.0, head_std: float = 0.5, std: float = 0.08):
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in sorted(self.named_parameters()):
                if name.endswith("layernorm.weight") or name.endswith("norm.weight") or "layer_norm" in name:
                    if p.dim() == 1 and (name.endswith("weight")):
                        p.copy_(1.0 + 0.05 * torch.randn(p.shape, generator=g))
                    else:
                        p.copy_(0.02 * torch.randn(p.shape, generator=g))
                elif name.endswith("embed_tokens.weight"):
                    p.copy_(embed_std * torch.randn(p.shape, generator=g))
                elif name.endswith("lm_head.weight"):
                    p.copy_(head_std * torch.randn(p.shape, generator=g))
                elif name.endswith("position_embedding.weight"):
                    p.copy_(0.5 * torch.randn(p.shape, generator=g))
                elif name.endswith(".bias"):
                    p.copy_(0.02 * torch.randn(p.shape, generator=g))
                else:
                    fan_in = p[0].numel()
                    p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(fan_in))

    def image_features(self, pixel_values, pixel_attention_mask):
        return self.vision(pixel_values, pixel_attention_mask)
