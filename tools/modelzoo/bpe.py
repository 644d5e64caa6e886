"""Byte-level BPE (GPT-2 style): training, encoding and decoding in pure Python, and export as a
Hugging Face `tokenizer.json`.

The encoder here is independent of the TypeScript/JS tokenizers, so goldens carry input_ids that were
computed without the code under test.
"""
from __future__ import annotations

import json
import unicodedata
from collections import Counter
from typing import Dict, List, Sequence, Tuple


def bytes_to_unicode() -> Dict[int, str]:
    """GPT-2's reversible byte -> printable unicode character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


BYTE_ENCODER = bytes_to_unicode()
BYTE_DECODER = {v: k for k, v in BYTE_ENCODER.items()}


def _is_l(ch: str) -> bool:
    return unicodedata.category(ch).startswith("L")


def _is_n(ch: str) -> bool:
    return unicodedata.category(ch).startswith("N")


# Unicode White_Space (what `\s` means in the Rust and JS regex engines; str.isspace() also counts \x1c-\x1f)
_WHITE_SPACE = set("\t\n\x0b\x0c\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000") | {chr(c) for c in range(0x2000, 0x200B)}


def _is_s(ch: str) -> bool:
    return ch in _WHITE_SPACE


def _is_other(ch: str) -> bool:
    return not (_is_s(ch) or _is_l(ch) or _is_n(ch))


_CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")


def pretokenize(text: str) -> List[str]:
    """Hand-written scanner equivalent to the GPT-2 / ByteLevel regex
    `'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+`."""
    out: List[str] = []
    i, n = 0, len(text)
    while i < n:
        # contractions
        m = None
        for c in _CONTRACTIONS:
            if text.startswith(c, i):
                m = c
                break
        if m is not None:
            out.append(m)
            i += len(m)
            continue
        # ' ?\p{L}+' | ' ?\p{N}+' | ' ?[^\s\p{L}\p{N}]+' (an optional leading space, then a run of one class)
        j = i + 1 if (text[i] == " " and i + 1 < n) else i
        ch = text[j]
        cls = None
        if _is_l(ch):
            cls = _is_l
        elif _is_n(ch):
            cls = _is_n
        elif not _is_s(ch):
            cls = _is_other
        if cls is not None:
            k = j
            while k < n and cls(text[k]):
                k += 1
            out.append(text[i:k])
            i = k
            continue
        # whitespace: \s+(?!\S) then \s+
        k = i
        while k < n and _is_s(text[k]):
            k += 1
        if k == n:
            out.append(text[i:k])
            i = k
        elif k - i > 1:
            out.append(text[i:k - 1])  # leave the last space for the next ' ?X' token
            i = k - 1
        else:
            out.append(text[i:k])
            i = k
    return out


def _words(text: str) -> List[str]:
    return ["".join(BYTE_ENCODER[b] for b in w.encode("utf-8")) for w in pretokenize(text)]


def train_bpe(text: str, num_merges: int) -> List[Tuple[str, str]]:
    counts = Counter(_words(text))
    words = {w: list(w) for w in counts}
    merges: List[Tuple[str, str]] = []
    for _ in range(num_merges):
        pairs: Counter = Counter()
        for w, syms in words.items():
            f = counts[w]
            for a, b in zip(syms, syms[1:]):
                pairs[(a, b)] += f
        if not pairs:
            break
        best = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))[0]
        merges.append(best)
        a, b = best
        for w, syms in words.items():
            if len(syms) < 2:
                continue
            out, i = [], 0
            while i < len(syms):
                if i + 1 < len(syms) and syms[i] == a and syms[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(syms[i])
                    i += 1
            words[w] = out
    return merges


class ByteBPE:
    def __init__(self, vocab: Dict[str, int], merges: Sequence[Tuple[str, str]], added: Dict[str, int]):
        self.vocab = dict(vocab)
        self.inv = {i: t for t, i in self.vocab.items()}
        for t, i in added.items():
            self.inv[i] = t
        self.ranks = {tuple(m): r for r, m in enumerate(merges)}
        self.merges = list(merges)
        self.added = dict(added)
        # longest first so that e.g. '<row_1_col_1>' never half-matches
        self._added_sorted = sorted(added, key=lambda s: (-len(s), s))

    def _bpe(self, word: str) -> List[str]:
        syms = list(word)
        while len(syms) > 1:
            best, best_rank = None, None
            for i in range(len(syms) - 1):
                r = self.ranks.get((syms[i], syms[i + 1]))
                if r is not None and (best_rank is None or r < best_rank):
                    best, best_rank = i, r
            if best is None:
                break
            a, b = syms[best], syms[best + 1]
            out, i = [], 0
            while i < len(syms):
                if i + 1 < len(syms) and syms[i] == a and syms[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(syms[i])
                    i += 1
            syms = out
        return syms

    def _split_added(self, text: str) -> List[Tuple[str, bool]]:
        parts: List[Tuple[str, bool]] = []
        i, start = 0, 0
        while i < len(text):
            hit = None
            if text[i] == "<":
                for t in self._added_sorted:
                    if text.startswith(t, i):
                        hit = t
                        break
            if hit:
                if start < i:
                    parts.append((text[start:i], False))
                parts.append((hit, True))
                i += len(hit)
                start = i
            else:
                i += 1
        if start < len(text):
            parts.append((text[start:], False))
        return parts

    def encode(self, text: str) -> List[int]:
        ids: List[int] = []
        for part, special in self._split_added(text):
            if special:
                ids.append(self.added[part])
                continue
            for w in _words(part):
                ids.extend(self.vocab[s] for s in self._bpe(w))
        return ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        out: List[str] = []
        buf: List[int] = []
        added_ids = set(self.added.values())
        for i in ids:
            i = int(i)
            if i in added_ids:
                if buf:
                    out.append(bytes(buf).decode("utf-8", errors="replace"))
                    buf = []
                if not skip_special_tokens:
                    out.append(self.inv[i])
            else:
                buf.extend(BYTE_DECODER[c] for c in self.inv[i])
        if buf:
            out.append(bytes(buf).decode("utf-8", errors="replace"))
        return "".join(out)

    def tokenizer_json(self) -> dict:
        added_tokens = [
            {"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True}
            for t, i in sorted(self.added.items(), key=lambda kv: kv[1])
        ]
        return {
            "version": "1.0",
            "truncation": None,
            "padding": None,
            "added_tokens": added_tokens,
            "normalizer": None,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
            "post_processor": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": True},
            "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
            "model": {
                "type": "BPE",
                "dropout": None,
                "unk_token": None,
                "continuing_subword_prefix": None,
                "end_of_word_suffix": None,
                "fuse_unk": False,
                "byte_fallback": False,
                "ignore_merges": False,
                "vocab": dict(sorted({**self.vocab, **self.added}.items(), key=lambda kv: kv[1])),
                "merges": [[a, b] for a, b in self.merges],
            },
        }


SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<end_of_utterance>", "<image>", "<fake_token_around_image>",
                  "<global-img>"] + [f"<row_{r}_col_{c}>" for r in range(1, 5) for c in range(1, 5)]


def build_tokenizer(corpus: str, vocab_size: int = 1000) -> ByteBPE:
    """Special tokens get ids 0..21 (so <|endoftext|>=0, <|im_start|>=1, <end_of_utterance>=2, <image>=3, ...),
    then the 256 byte symbols, then one id per merge, up to vocab_size ids in all."""
    added = {t: i for i, t in enumerate(SPECIAL_TOKENS)}
    base = len(added)
    vocab = {}
    for b in range(256):
        vocab[BYTE_ENCODER[b]] = base + b
    num_merges = vocab_size - base - 256
    merges = train_bpe(corpus, num_merges)
    for a, b in merges:
        tok = a + b
        if tok not in vocab:
            vocab[tok] = len(vocab) + base
    return ByteBPE(vocab, merges, added)


def dumps_tokenizer(tok: ByteBPE) -> str:
    return json.dumps(tok.tokenizer_json(), ensure_ascii=False, indent=1) + "\n"
