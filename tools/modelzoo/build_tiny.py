"""Rebuild every small pack and its goldens, deterministically.

    /usr/bin/python3 -m tools.modelzoo.build_tiny --out models --samples samples

(run from the repository root). Builds: the shared byte-level BPE, samples/demo-batch, models/tiny-vlm
(+ reference/), models/tiny-clip (+ reference/), models/tiny-guard (+ reference/).
"""
from __future__ import annotations

import argparse
import os
import time

import torch

from . import clip, guard, samples
from .bpe import build_tokenizer
from .corpus import corpus_text
from .tinyvlm import build as vlm_build


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="models", help="directory that receives tiny-vlm, tiny-clip, tiny-guard")
    ap.add_argument("--samples", default="samples", help="directory that receives demo-batch")
    ap.add_argument("--only", nargs="*", choices=["samples", "tiny-vlm", "tiny-clip", "tiny-guard"],
                    help="build only these (default: all)")
    a = ap.parse_args(argv)
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    want = set(a.only or ["samples", "tiny-vlm", "tiny-clip", "tiny-guard"])
    t0 = time.time()
    tok = build_tokenizer(corpus_text(), vocab_size=1000)
    print(f"[tokenizer] {len(tok.vocab) + len(tok.added)} ids, {len(tok.merges)} merges ({time.time() - t0:.1f}s)")
    sample_dir = os.path.join(a.samples, "demo-batch")
    sample_paths = None
    steps = [("samples", lambda: samples.build(sample_dir)),
             ("tiny-vlm", lambda: vlm_build.build(os.path.join(a.out, "tiny-vlm"), tok)),
             ("tiny-clip", lambda: clip.build(os.path.join(a.out, "tiny-clip"), tok,
                                              os.path.join(a.out, "tiny-vlm", "reference", "image.png"),
                                              sample_images=sorted(
                                                  os.path.join(sample_dir, f) for f in os.listdir(sample_dir)
                                                  if f.endswith(".png")) if os.path.isdir(sample_dir) else None)),
             ("tiny-guard", lambda: guard.build(os.path.join(a.out, "tiny-guard"), tok))]
    for name, fn in steps:
        if name in want:
            t = time.time()
            fn()
            print(f"[{name}] built in {time.time() - t:.1f}s")
    print(f"[all] done in {time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()
