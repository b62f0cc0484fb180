"""Tokenizer fixtures for the C++ engine/tokenizer tests.

Trains two small byte-level BPE tokenizers on tokenizer_corpus.txt with
bpe_tokenizer.py (GPT-2 shape: ByteLevel(use_regex); Llama-3 shape: Sequence
[Split(regex), ByteLevel] with ignore_merges) and writes, into --out:
  gpt2_tokenizer.json, llama3_tokenizer.json
  tokenizer_cases.json: {"tokenizers": {name: {"path", "bos_id", "eos_id", "vocab_size",
      "encode": [{"text", "add_bos", "ids"}], "decode": [{"ids", "text"}]}}}
Deterministic. Usage: make_tokenizer_fixtures.py --out DIR [--vocab 600]
"""

import argparse
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bpe_tokenizer  # noqa: E402

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                  r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

EXTRA_CASES = [
    "", " ", "  ", "\n", "\n\n\n", "\t\t", " \t \n ", "a", "é", "日", "👍🏽",
    "Hello, world!", "hello world  ", "   leading spaces", "trailing\n", "x\r\ny\rz",
    "<|bos|>", "<|eos|>", "<|bos|><|eos|>", "<|bos", "<|eos|", "bos|>", "<|bos|>x<|eos|>y",
    "a<|eos|>b", "text<|bos|>", "<<|eos|>>", "<|bos|><|bos|>",
    "I'm, you're, they've, she'll, he'd, it's, don't; I'M YOU'RE",
    "1234567890123", "3.14159265358979", "  12  345  ", "١٢٣ ٤٥٦ (Arabic-Indic digits)",
    "👨‍👩‍👧‍👦👨‍👩‍👧‍👦", "🏳️‍🌈🇺🇸🇯🇵", "🧑🏿‍💻 ", "e\u0301 (combining acute)", "ﬁ ligature",
    "non\u00a0breaking\u00a0space", "ideographic\u3000space", "zero\u200bwidth", "tab\there",
    "mixed 日本語 and English and émojis 🎉 together",
    "ALL CAPS SHOUTING", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    " " * 100, "\n" * 40, "!" * 50, "ab" * 40, "\U0010FFFF \U0001F600 \u0800 \u07FF \u0080",
]


def make_cases(tok, corpus, rng):
    texts = [line for line in corpus.split("\n")] + [corpus] + EXTRA_CASES
    # Random slices of the corpus (by character, so always valid UTF-8).
    for _ in range(40):
        a = rng.randrange(len(corpus))
        texts.append(corpus[a:a + rng.randrange(1, 80)])
    encode = [{"text": t, "add_bos": False, "ids": tok.encode(t)} for t in texts]
    encode += [{"text": t, "add_bos": True, "ids": tok.encode(t, add_bos=True)}
               for t in texts[:5] + EXTRA_CASES[:3]]
    # Decode of arbitrary id sequences: many split or break UTF-8 characters.
    decode = []
    high = [i for i in range(tok.vocab_size) if i in tok.added_by_id
            or any(b >= 0x80 for b in tok.token_bytes(i))]
    for n in list(range(1, 12)) + [30, 60]:
        for _ in range(6):
            ids = [rng.choice(high) if rng.random() < 0.7 else rng.randrange(tok.vocab_size)
                   for _ in range(n)]
            decode.append({"ids": ids, "text": tok.decode(ids)})
    for byte_seq in [b"\xe2\x82", b"\xe2\x82\xac", b"\xf0\x9f", b"\xf0\x9f\x98\x80", b"\xc3",
                     b"\xed\xa0\x80", b"\xe0\x80\x80", b"\xf4\x90\x80\x80", b"\xff\xfe",
                     b"\x80abc", b"\xc3\xa9\x80"]:
        ids = [tok.vocab[bpe_tokenizer.BYTE_TO_CHAR[b]] for b in byte_seq]
        decode.append({"ids": ids, "text": tok.decode(ids)})
    return encode, decode


def main(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--vocab", type=int, default=600)
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "tokenizer_corpus.txt"), encoding="utf-8") as f:
        corpus = f.read()
    out = {"tokenizers": {}}
    for name, pattern, ignore_merges in [("gpt2", bpe_tokenizer.GPT2_PATTERN, False),
                                         ("llama3", LLAMA3_PATTERN, True)]:
        tok = bpe_tokenizer.train_bpe(corpus, args.vocab, ["<|bos|>", "<|eos|>"], pattern)
        tok.ignore_merges = ignore_merges
        path = os.path.join(args.out, f"{name}_tokenizer.json")
        tok.save(path)
        tok = bpe_tokenizer.Tokenizer.load(path)  # the cases come from what was written
        encode, decode = make_cases(tok, corpus, random.Random(1234))
        for c in encode:
            assert tok.decode(c["ids"][1 if c["add_bos"] else 0:]) == c["text"], c["text"]
        out["tokenizers"][name] = {"path": path, "bos_id": tok.bos_id, "eos_id": tok.eos_id,
                                   "vocab_size": tok.vocab_size, "encode": encode,
                                   "decode": decode}
        print(f"{name}: vocab {tok.vocab_size}, {len(tok.merges)} merges, "
              f"{len(encode)} encode + {len(decode)} decode cases")
    with open(os.path.join(args.out, "tokenizer_cases.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
