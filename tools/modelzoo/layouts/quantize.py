"""4-bit blockwise weights (onnxruntime's MatMulNBits, as int4 onnxruntime-genai and onnx-community *_q4 exports
ship them), made so the reference stays exact: the PyTorch model's projection weights are replaced by their
dequantized values first, so the eager reference and the ONNX MatMulNBits graph compute with the same numbers.

MatMulNBits layout (com.microsoft, bits 4, no zero points => zero point 8): B [N, K / block, block / 2] uint8, column
n's k-th value of block b in byte (n * blocks + b) * block / 2 + k // 2, low nibble for even k; scales [N * blocks].
Symmetric: q in 1..15, w = (q - 8) * scale, scale = max|w_block| / 7.
"""
from __future__ import annotations

from typing import Dict, Tuple

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper
from torch import nn

BLOCK = 16


def quantize_weight(w_t: torch.Tensor) -> Tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """w_t: nn.Linear weight [N, K]. Returns (packed [N, blocks, BLOCK/2] uint8, scales [N*blocks] f32, dequantized [N, K])."""
    n, k = w_t.shape
    assert k % BLOCK == 0, f"K={k} is not a multiple of the block size {BLOCK}"
    blocks = k // BLOCK
    w = w_t.detach().to(torch.float32).reshape(n, blocks, BLOCK)
    scale = (w.abs().amax(dim=-1, keepdim=True) / 7.0).clamp_min(1e-8)
    q = torch.clamp(torch.round(w / scale) + 8, 1, 15).to(torch.int64)
    deq = ((q - 8).to(torch.float32) * scale).reshape(n, k)
    qn = q.numpy().astype(np.uint8)
    packed = (qn[:, :, 0::2] | (qn[:, :, 1::2] << 4)).astype(np.uint8)
    return packed, scale.reshape(-1).numpy().astype(np.float32), deq


@torch.no_grad()
def quantize_layers(lm: nn.Module) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """Every nn.Linear inside the decoder layers (lm_head stays float: Gemma ties it to the embeddings)."""
    out = {}
    for name, mod in sorted(lm.named_modules()):
        if isinstance(mod, nn.Linear) and name.startswith("model.layers."):
            packed, scales, deq = quantize_weight(mod.weight)
            mod.weight.copy_(deq)
            out[name] = (packed, scales)
    return out


def to_matmul_nbits(path: str, qweights: Dict[str, Tuple[np.ndarray, np.ndarray]]):
    """Replaces the exported MatMul of each quantized Linear by MatMulNBits (the node scope names the module)."""
    m = onnx.load(path)
    inits = {t.name: t for t in m.graph.initializer}
    used = set()
    nodes = []
    for node in m.graph.node:
        module = node.name.rsplit("/", 1)[0].lstrip("/").replace("/", ".") if node.op_type == "MatMul" else None
        if module in qweights and node.input[1] in inits:
            packed, scales = qweights[module]
            k, n = numpy_helper.to_array(inits[node.input[1]]).shape
            assert packed.shape[0] == n and packed.shape[1] * BLOCK == k
            prefix = module
            m.graph.initializer.extend([numpy_helper.from_array(packed, f"{prefix}.qweight"),
                                        numpy_helper.from_array(scales, f"{prefix}.scales")])
            used.add(node.input[1])
            nodes.append(helper.make_node("MatMulNBits", [node.input[0], f"{prefix}.qweight", f"{prefix}.scales"],
                                          list(node.output), name=node.name.replace("MatMul", "MatMulNBits"),
                                          domain="com.microsoft", K=k, N=n, bits=4, block_size=BLOCK))
        else:
            nodes.append(node)
    assert len(used) == len(qweights), f"quantized {len(used)} of {len(qweights)} projections"
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    kept = [t for t in m.graph.initializer if t.name not in used]
    del m.graph.initializer[:]
    m.graph.initializer.extend(kept)
    if not any(o.domain == "com.microsoft" for o in m.opset_import):
        m.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.save(m, path)
