"""Tiny text decoders in the layouts people ship, written from the papers / reference code in plain PyTorch.

This is the independent reference the ONNX runtime is checked against: the packs' decoders are exported from it
by torch.onnx (optimum-style graphs), and its goldens come from running it eagerly with revision hooks.

Layouts (`LayoutConfig.layout`):
- `gemma3`: sandwich norms (post_attention_layernorm on the attention output and post_feedforward_layernorm on
  the MLP output, before the residual adds; pre_feedforward_layernorm before the MLP), Gemma RMSNorm
  x * rsqrt(mean(x^2) + eps) * (1 + w), q_norm / k_norm over head_dim, head_dim != hidden / heads, attention
  scale query_pre_attn_scalar^-0.5, sliding-window layers (layer l is global iff (l + 1) % pattern == 0) with
  their own RoPE base, embeddings scaled by sqrt(hidden), gelu-tanh MLP, tied lm_head;
- `phi3`: fused qkv_proj [q | k | v] and gate_up_proj [gate | up], LLaMA norms, SiLU;
- `qwen2`: biases on q_proj, k_proj, v_proj (not o_proj), LLaMA otherwise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

NEG = -1e9


@dataclass
class LayoutConfig:
    layout: str
    vocab_size: int
    hidden_size: int = 48
    num_hidden_layers: int = 3
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int = 12
    intermediate_size: int = 96
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    # gemma3 only
    rope_local_base_freq: float = 10000.0
    query_pre_attn_scalar: Optional[float] = None
    sliding_window: Optional[int] = None
    sliding_window_pattern: int = 2

    @property
    def gemma(self) -> bool:
        return self.layout == "gemma3"

    def is_sliding(self, layer: int) -> bool:
        return self.gemma and self.sliding_window is not None and (layer + 1) % self.sliding_window_pattern != 0


class RMSNorm(nn.Module):
    """LLaMA: w * normalize(x). Gemma: normalize(x) * (1 + w), w stored as the offset from one."""

    def __init__(self, d: int, eps: float, gemma: bool):
        super().__init__()
        self.gemma = gemma
        self.weight = nn.Parameter(torch.zeros(d) if gemma else torch.ones(d))
        self.eps = eps

    def forward(self, x):
        n = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return n * (1.0 + self.weight) if self.gemma else self.weight * n


def rotate_half(x):
    d = x.shape[-1] // 2
    return torch.cat((-x[..., d:], x[..., :d]), dim=-1)


def rope(position_ids: torch.Tensor, head_dim: int, theta: float):
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    freqs = position_ids.to(torch.float32)[:, :, None] * inv_freq[None, None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos()[:, None], emb.sin()[:, None]


class Attention(nn.Module):
    def __init__(self, c: LayoutConfig, layer: int):
        super().__init__()
        self.c, self.layer = c, layer
        self.h, self.kvh, self.d = c.num_attention_heads, c.num_key_value_heads, c.head_dim
        widths = (self.h * self.d, self.kvh * self.d, self.kvh * self.d)
        if c.layout == "phi3":
            self.qkv_proj = nn.Linear(c.hidden_size, sum(widths), bias=False)
        else:
            bias = c.layout == "qwen2"
            self.q_proj = nn.Linear(c.hidden_size, widths[0], bias=bias)
            self.k_proj = nn.Linear(c.hidden_size, widths[1], bias=bias)
            self.v_proj = nn.Linear(c.hidden_size, widths[2], bias=bias)
        self.o_proj = nn.Linear(self.h * self.d, c.hidden_size, bias=False)
        if c.gemma:
            self.q_norm = RMSNorm(self.d, c.rms_norm_eps, True)
            self.k_norm = RMSNorm(self.d, c.rms_norm_eps, True)
        self.scale = (c.query_pre_attn_scalar or self.d) ** -0.5

    def forward(self, x, position_ids, mask, past_k, past_v):
        b, s, _ = x.shape
        if self.c.layout == "phi3":
            qkv = self.qkv_proj(x)
            q, k, v = qkv.split([self.h * self.d, self.kvh * self.d, self.kvh * self.d], dim=-1)
        else:
            q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        q = q.view(b, s, self.h, self.d)
        k = k.view(b, s, self.kvh, self.d)
        if self.c.gemma:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = q.transpose(1, 2), k.transpose(1, 2)
        v = v.view(b, s, self.kvh, self.d).transpose(1, 2)
        theta = self.c.rope_local_base_freq if self.c.is_sliding(self.layer) else self.c.rope_theta
        cos, sin = rope(position_ids, self.d, theta)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = torch.cat([past_k, k], dim=2)
        v = torch.cat([past_v, v], dim=2)
        rep, t = self.h // self.kvh, k.shape[2]
        kk = k[:, :, None].expand(b, self.kvh, rep, t, self.d).reshape(b, self.h, t, self.d)
        vv = v[:, :, None].expand(b, self.kvh, rep, t, self.d).reshape(b, self.h, t, self.d)
        scores = torch.matmul(q, kk.transpose(2, 3)) * self.scale
        scores = torch.where(mask, scores, torch.full_like(scores, NEG))
        o = torch.matmul(torch.softmax(scores, dim=-1), vv).transpose(1, 2).reshape(b, s, self.h * self.d)
        return self.o_proj(o), k, v


class MLP(nn.Module):
    def __init__(self, c: LayoutConfig):
        super().__init__()
        self.c = c
        m = c.intermediate_size
        if c.layout == "phi3":
            self.gate_up_proj = nn.Linear(c.hidden_size, 2 * m, bias=False)
        else:
            self.gate_proj = nn.Linear(c.hidden_size, m, bias=False)
            self.up_proj = nn.Linear(c.hidden_size, m, bias=False)
        self.down_proj = nn.Linear(m, c.hidden_size, bias=False)

    def forward(self, x):
        if self.c.layout == "phi3":
            gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        else:
            gate, up = self.gate_proj(x), self.up_proj(x)
        act = F.gelu(gate, approximate="tanh") if self.c.gemma else F.silu(gate)
        return self.down_proj(act * up)


class DecoderLayer(nn.Module):
    def __init__(self, c: LayoutConfig, layer: int):
        super().__init__()
        self.c = c
        g = c.gemma
        self.self_attn = Attention(c, layer)
        self.mlp = MLP(c)
        self.input_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps, g)
        self.post_attention_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps, g)
        if g:
            self.pre_feedforward_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps, True)
            self.post_feedforward_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps, True)

    def forward(self, x, position_ids, mask, past_k, past_v):
        a, k, v = self.self_attn(self.input_layernorm(x), position_ids, mask, past_k, past_v)
        if self.c.gemma:
            # Sandwich: the attention output is normalised before it joins the residual stream.
            x = x + self.post_attention_layernorm(a)
            x = x + self.post_feedforward_layernorm(self.mlp(self.pre_feedforward_layernorm(x)))
        else:
            x = x + a
            x = x + self.mlp(self.post_attention_layernorm(x))
        return x, k, v


class TextModel(nn.Module):
    def __init__(self, c: LayoutConfig):
        super().__init__()
        self.c = c
        self.embed_tokens = nn.Embedding(c.vocab_size, c.hidden_size)
        self.layers = nn.ModuleList([DecoderLayer(c, l) for l in range(c.num_hidden_layers)])
        self.norm = RMSNorm(c.hidden_size, c.rms_norm_eps, c.gemma)

    def embed(self, input_ids):
        e = self.embed_tokens(input_ids)
        # Gemma scales the embeddings (in the embedding module, so embed_tokens.onnx carries it).
        return e * torch.tensor(self.c.hidden_size ** 0.5, dtype=e.dtype) if self.c.gemma else e

    def forward(self, inputs_embeds, attention_mask, position_ids, past: List[Tuple[torch.Tensor, torch.Tensor]]):
        b, s, _ = inputs_embeds.shape
        total = attention_mask.shape[1]
        q_idx = torch.arange(s) + (total - s)
        k_idx = torch.arange(total)
        causal = k_idx[None, :] <= q_idx[:, None]
        pad = attention_mask[:, None, None, :] > 0
        full = causal[None, None] & pad
        sliding = full
        if self.c.sliding_window is not None:
            sliding = full & (k_idx[None, :] > q_idx[:, None] - self.c.sliding_window)[None, None]
        x = inputs_embeds
        presents = []
        for l, layer in enumerate(self.layers):
            x, k, v = layer(x, position_ids, sliding if self.c.is_sliding(l) else full, past[l][0], past[l][1])
            presents.append((k, v))
        return self.norm(x), presents


class CausalLM(nn.Module):
    def __init__(self, c: LayoutConfig):
        super().__init__()
        self.c = c
        self.model = TextModel(c)
        self.lm_head = nn.Linear(c.hidden_size, c.vocab_size, bias=False)
        if c.gemma:
            self.lm_head.weight = self.model.embed_tokens.weight  # tied, as Gemma ships it

    def forward(self, inputs_embeds, attention_mask, position_ids, past):
        h, presents = self.model(inputs_embeds, attention_mask, position_ids, past)
        return self.lm_head(h), presents

    def empty_past(self, batch: int):
        z = torch.zeros(batch, self.c.num_key_value_heads, 0, self.c.head_dim)
        return [(z, z) for _ in range(self.c.num_hidden_layers)]

    def init_weights(self, seed: int):
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in sorted(self.named_parameters()):
                if "norm" in name:
                    # Gemma stores the offset from 1, LLaMA the gain itself.
                    p.copy_((0.0 if self.c.gemma else 1.0) + 0.05 * torch.randn(p.shape, generator=g))
                elif name.endswith("embed_tokens.weight"):
                    p.copy_((0.15 if self.c.gemma else 1.0) * torch.randn(p.shape, generator=g))
                elif name.endswith("lm_head.weight"):
                    p.copy_(0.5 * torch.randn(p.shape, generator=g))
                elif name.endswith(".bias"):
                    p.copy_(0.1 * torch.randn(p.shape, generator=g))
                else:
                    p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p.shape[1]))


class DecoderForExport(nn.Module):
    """Flat signature for torch.onnx; `model.` and `lm_head` keep the HF scope names."""

    def __init__(self, lm: CausalLM):
        super().__init__()
        self.model, self.lm_head, self.n = lm.model, lm.lm_head, lm.c.num_hidden_layers

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
        self.model = lm.model

    def forward(self, input_ids):
        return self.model.embed(input_ids)
