"""Byte-level BPE (GPT-2 / Llama-3 style), written from the format's description.

An independent implementation that the C++ engine/tokenizer is checked against,
and the trainer tools/train_demo uses for the demo model's tokenizer.

  train_bpe(text, vocab_size, special_tokens) -> Tokenizer
  Tokenizer.encode(text, add_bos=False) / decode(ids) / save(path) / load(path)
  python3 bpe_tokenizer.py encode TOKENIZER_JSON < text      -> JSON list of ids
  python3 bpe_tokenizer.py train --vocab N [--special T ...] CORPUS OUT_JSON

Vocabulary layout of a trained tokenizer: ids 0..255 are the 256 single bytes
(in byte order), then one id per merge in merge order, then the special tokens.
Needs only the `regex` module (python3-regex), for \\p{L} / \\p{N}.
"""

import heapq
import json
import sys
from collections import Counter, defaultdict

import regex

# The GPT-2 pre-tokenizer pattern; what HF's ByteLevel(use_regex=true) applies.
GPT2_PATTERN = (r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+"""
                r"""|\s+(?!\S)|\s+""")


def bytes_to_unicode():
    """The GPT-2 table: every byte -> a printable unicode character."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) +
          list(range(ord("\u00ae"), ord("\u00ff") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


BYTE_TO_CHAR = bytes_to_unicode()
CHAR_TO_BYTE = {c: b for b, c in BYTE_TO_CHAR.items()}


def _to_symbols(piece):
    return "".join(BYTE_TO_CHAR[b] for b in piece.encode("utf-8"))


def _split_keep_gaps(compiled, text):
    """Regex matches plus the unmatched gaps between them, in order (HF 'Isolated')."""
    out = []
    pos = 0
    for m in compiled.finditer(text):
        if m.start() > pos:
            out.append(text[pos:m.start()])
        if m.end() > m.start():
            out.append(m.group(0))
        pos = m.end()
    if pos < len(text):
        out.append(text[pos:])
    return out


class Tokenizer:
    """vocab: symbol-string -> id; merges: list of (left, right) symbol strings by rank;
    added: list of dicts {id, content, special}; pattern: the pre-tokenizer regex."""

    def __init__(self, vocab, merges, added, pattern=GPT2_PATTERN, bos_token=None,
                 eos_token=None, ignore_merges=False):
        self.vocab = dict(vocab)
        self.ignore_merges = ignore_merges  # HF: a word that is itself in vocab is one token
        self.merges = [tuple(m) for m in merges]
        self.ranks = {m: i for i, m in enumerate(self.merges)}
        self.added = [dict(a) for a in added]
        self.pattern = pattern
        self._regex = regex.compile(pattern)
        self.id_to_token = {i: t for t, i in self.vocab.items()}
        self.added_by_content = {a["content"]: a["id"] for a in self.added}
        self.added_by_id = {a["id"]: a["content"] for a in self.added}
        # Longest first so the alternation is leftmost-longest.
        contents = sorted(self.added_by_content, key=lambda s: (-len(s), s))
        self._added_regex = (regex.compile("|".join(regex.escape(c) for c in contents))
                             if contents else None)
        self._bos_token = bos_token
        self._eos_token = eos_token
        self._cache = {}

    # --- properties ------------------------------------------------------------------------
    def _special_id(self, explicit, candidates):
        for name in ([explicit] if explicit else []) + candidates:
            if name in self.added_by_content:
                return self.added_by_content[name]
        return None

    @property
    def bos_id(self):
        return self._special_id(self._bos_token, ["<|bos|>", "<|begin_of_text|>", "<s>"])

    @property
    def eos_id(self):
        return self._special_id(self._eos_token,
                                ["<|eos|>", "<|endoftext|>", "<|end_of_text|>", "</s>"])

    @property
    def vocab_size(self):
        ids = list(self.vocab.values()) + [a["id"] for a in self.added]
        return max(ids) + 1 if ids else 0

    # --- encode / decode ---------------------------------------------------------------------
    def _bpe(self, symbols):
        if symbols in self._cache:
            return self._cache[symbols]
        if self.ignore_merges and symbols in self.vocab:
            return [self.vocab[symbols]]
        word = list(symbols)
        while len(word) > 1:
            best = None
            for i in range(len(word) - 1):
                r = self.ranks.get((word[i], word[i + 1]))
                if r is not None and (best is None or r < best):
                    best = r
            if best is None:
                break
            a, b = self.merges[best]
            merged = []
            i = 0
            while i < len(word):
                if i + 1 < len(word) and word[i] == a and word[i + 1] == b:
                    merged.append(a + b)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        ids = [self.vocab[s] for s in word]
        self._cache[symbols] = ids
        return ids

    def _split_added(self, text):
        """[(segment, added_id or None)]: added tokens matched literally, leftmost-longest."""
        if self._added_regex is None:
            return [(text, None)] if text else []
        out = []
        pos = 0
        for m in self._added_regex.finditer(text):
            if m.start() > pos:
                out.append((text[pos:m.start()], None))
            out.append((m.group(0), self.added_by_content[m.group(0)]))
            pos = m.end()
        if pos < len(text):
            out.append((text[pos:], None))
        return out

    def encode(self, text, add_bos=False):
        ids = []
        if add_bos:
            if self.bos_id is None:
                raise ValueError("tokenizer has no BOS token")
            ids.append(self.bos_id)
        for segment, added_id in self._split_added(text):
            if added_id is not None:
                ids.append(added_id)
                continue
            for piece in _split_keep_gaps(self._regex, segment):
                ids.extend(self._bpe(_to_symbols(piece)))
        return ids

    def token_bytes(self, i):
        if i in self.added_by_id:
            return self.added_by_id[i].encode("utf-8")
        return bytes(CHAR_TO_BYTE[c] for c in self.id_to_token[i])

    def decode(self, ids):
        return b"".join(self.token_bytes(i) for i in ids).decode("utf-8", errors="replace")

    # --- tokenizer.json ----------------------------------------------------------------------
    def to_json(self):
        pre = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
               "use_regex": True}
        if self.pattern != GPT2_PATTERN:
            pre = {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": self.pattern}, "behavior": "Isolated",
                 "invert": False},
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                 "use_regex": False}]}
        return {
            "version": "1.0",
            "truncation": None,
            "padding": None,
            "added_tokens": [{"id": a["id"], "content": a["content"], "single_word": False,
                              "lstrip": False, "rstrip": False, "normalized": False,
                              "special": a.get("special", True)} for a in self.added],
            "normalizer": None,
            "pre_tokenizer": pre,
            "post_processor": None,
            "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                        "use_regex": True},
            "model": {"type": "BPE", "dropout": None, "unk_token": None,
                      "continuing_subword_prefix": None, "end_of_word_suffix": None,
                      "fuse_unk": False, "byte_fallback": False,
                      "ignore_merges": self.ignore_merges,
                      "vocab": self.vocab, "merges": [f"{a} {b}" for a, b in self.merges]},
        }

    def save(self, path):
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_json(), f, ensure_ascii=False, indent=1)

    @classmethod
    def load(cls, path):
        with open(path, encoding="utf-8") as f:
            j = json.load(f)
        model = j["model"]
        if model.get("type") != "BPE":
            raise ValueError(f"model.type {model.get('type')!r} is not BPE")
        merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m)
                  for m in model["merges"]]
        pattern = GPT2_PATTERN
        pre = j.get("pre_tokenizer") or {}
        for p in ([pre] if pre.get("type") != "Sequence" else pre["pretokenizers"]):
            if p.get("type") == "Split":
                pattern = p["pattern"]["Regex"]
        added = [{"id": a["id"], "content": a["content"], "special": a.get("special", False)}
                 for a in j.get("added_tokens", [])]
        return cls(model["vocab"], merges, added, pattern,
                   ignore_merges=bool(model.get("ignore_merges", False)))


# --- training --------------------------------------------------------------------------------
def train_bpe(text, vocab_size, special_tokens=("<|bos|>", "<|eos|>"), pattern=GPT2_PATTERN,
              verbose=False):
    """Trains merges until 256 + merges + len(special_tokens) == vocab_size (or no pair is
    left). Special tokens in the text are cut out before counting words."""
    special_tokens = list(special_tokens)
    n_merges = vocab_size - 256 - len(special_tokens)
    if n_merges < 0:
        raise ValueError(f"vocab_size {vocab_size} < 256 + {len(special_tokens)} specials")
    compiled = regex.compile(pattern)
    segments = [text]
    if special_tokens:
        cut = regex.compile("|".join(regex.escape(s) for s in
                                     sorted(special_tokens, key=len, reverse=True)))
        segments = cut.split(text)
    word_counts = Counter()
    for seg in segments:
        word_counts.update(_split_keep_gaps(compiled, seg))

    # Words as tuples of token ids (0..255 = bytes); merged tokens get ids from 256.
    words = [list(w.encode("utf-8")) for w in word_counts]
    freqs = list(word_counts.values())
    token_bytes = [bytes([b]) for b in range(256)]
    pair_count = defaultdict(int)
    pair_words = defaultdict(set)
    for wi, w in enumerate(words):
        f = freqs[wi]
        for p in zip(w, w[1:]):
            pair_count[p] += f
            pair_words[p].add(wi)
    # Max-heap by count, ties broken by the pair's bytes (deterministic); lazy deletion.
    heap = [(-c, token_bytes[p[0]], token_bytes[p[1]], p) for p, c in pair_count.items()]
    heapq.heapify(heap)

    id_of = {t: i for i, t in enumerate(token_bytes)}
    merges = []
    while len(token_bytes) - 256 < n_merges and heap:
        negc, _, _, pair = heapq.heappop(heap)
        if pair_count.get(pair, 0) != -negc or negc == 0:
            continue  # stale entry
        a, b = pair
        joined = token_bytes[a] + token_bytes[b]
        new_id = id_of.get(joined)
        if new_id is None:  # two merge paths may spell the same bytes: one id for both
            new_id = id_of[joined] = len(token_bytes)
            token_bytes.append(joined)
        merges.append(pair)
        changed = set()
        for wi in list(pair_words.pop(pair, ())):
            w = words[wi]
            f = freqs[wi]
            if len(w) < 2:
                continue
            for p in zip(w, w[1:]):
                pair_count[p] -= f
                changed.add(p)
            merged = []
            i = 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    merged.append(new_id)
                    i += 2
                else:
                    merged.append(w[i])
                    i += 1
            words[wi] = merged
            for p in zip(merged, merged[1:]):
                pair_count[p] += f
                pair_words[p].add(wi)
                changed.add(p)
        pair_count.pop(pair, None)
        for p in changed:
            c = pair_count.get(p, 0)
            if c > 0:
                heapq.heappush(heap, (-c, token_bytes[p[0]], token_bytes[p[1]], p))
            else:
                pair_count.pop(p, None)
        if verbose and len(merges) % 500 == 0:
            print(f"bpe: {len(merges)}/{n_merges} merges", file=sys.stderr)

    def sym(i):
        return "".join(BYTE_TO_CHAR[x] for x in token_bytes[i])

    vocab = {sym(i): i for i in range(len(token_bytes))}
    merge_strs = [(sym(a), sym(b)) for a, b in merges]
    added = []
    for k, s in enumerate(special_tokens):
        added.append({"id": len(token_bytes) + k, "content": s, "special": True})
        vocab[s] = len(token_bytes) + k
    return Tokenizer(vocab, merge_strs, added, pattern)


def _main(argv):
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("encode", help="stdin text -> JSON ids")
    e.add_argument("tokenizer_json")
    e.add_argument("--add-bos", action="store_true")
    t = sub.add_parser("train", help="train on a corpus file, write tokenizer.json")
    t.add_argument("corpus")
    t.add_argument("out")
    t.add_argument("--vocab", type=int, default=4096)
    t.add_argument("--special", nargs="*", default=["<|bos|>", "<|eos|>"])
    args = ap.parse_args(argv)
    if args.cmd == "encode":
        tok = Tokenizer.load(args.tokenizer_json)
        text = sys.stdin.buffer.read().decode("utf-8")
        json.dump(tok.encode(text, add_bos=args.add_bos), sys.stdout)
        sys.stdout.write("\n")
    else:
        with open(args.corpus, encoding="utf-8") as f:
            text = f.read()
        tok = train_bpe(text, args.vocab, args.special, verbose=True)
        tok.save(args.out)
        print(f"wrote {args.out}: vocab {tok.vocab_size}, {len(tok.merges)} merges",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
