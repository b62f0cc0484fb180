#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora (tests/fuzz/corpus/<target>/):
small valid inputs and near-valid ones that stop at each validation step.
Run from anywhere; rewrites only the seed_* files it owns. The
generate_request seeds need protoc (protobuf-compiler) for --encode."""
import json
import os
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed_" + name), "wb") as f:
        f.write(data)


def dumps(obj):
    return json.dumps(obj, separators=(",", ":"))


# --- safetensors -------------------------------------------------------------
def st(header, data=b"", pad=True):
    h = header if isinstance(header, bytes) else dumps(header).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def safetensors():
    f32 = lambda n: struct.pack("<%df" % n, *[0.5 * i for i in range(n)])
    write("safetensors", "one_f32", st({"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}, f32(6)))
    write("safetensors", "mixed_meta", st({
        "__metadata__": {"format": "pt"},
        "a": {"dtype": "BF16", "shape": [4], "data_offsets": [0, 8]},
        "b": {"dtype": "F16", "shape": [2, 2], "data_offsets": [8, 16]},
        "c": {"dtype": "I32", "shape": [1], "data_offsets": [16, 20]},
        "d": {"dtype": "I64", "shape": [], "data_offsets": [24, 32]},
        "e": {"dtype": "F32", "shape": [0, 5], "data_offsets": [32, 32]}}, bytes(range(32))))
    write("safetensors", "past_end", st({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, f32(2)))
    write("safetensors", "overlap", st({
        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, f32(3)))
    write("safetensors", "reversed", st({"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}, f32(1)))
    write("safetensors", "size_mismatch", st({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, f32(3)))
    write("safetensors", "shape_overflow", st({"w": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]}}))
    write("safetensors", "negative_dim", st({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, f32(1)))
    write("safetensors", "bad_dtype", st({"w": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]}}, f32(2)))
    write("safetensors", "extra_field", st({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4], "x": 1}}, f32(1)))
    write("safetensors", "duplicate", st(b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', f32(2)))
    write("safetensors", "header_past_end", struct.pack("<Q", 4096) + b'{"a":1}')
    write("safetensors", "header_huge", struct.pack("<Q", 1 << 62) + b"{}")
    write("safetensors", "not_json", st(b"{not json", b""))
    write("safetensors", "array_header", st(b"[1,2,3]"))
    write("safetensors", "short", b"\x02\x00\x00")


# --- config.json ---------------------------------------------------------------
BASE_CONFIG = {
    "model_type": "looped_moe", "vocab_size": 64, "hidden_size": 32,
    "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8,
    "max_position_embeddings": 1024, "num_prelude_layers": 1,
    "num_recurrent_layers": 2, "num_coda_layers": 1, "num_loops": 4,
    "intermediate_size": 48, "num_experts": 4, "num_experts_per_tok": 2,
    "moe_intermediate_size": 16, "num_shared_experts": 1, "iter_adaln_rank": 4}


def model_config():
    write("model_config", "valid", dumps(BASE_CONFIG))
    write("model_config", "valid_all_fields", dumps(dict(
        BASE_CONFIG, rope_theta=500000.0, rms_norm_eps=1e-5, qk_norm=True,
        prelude_ffn="dense", recurrent_ffn="moe", coda_ffn="dense", router_score="sigmoid",
        norm_topk_prob=False, routed_scaling_factor=2.5, exit_gate=True,
        tie_word_embeddings=False, torch_dtype="bfloat16")))
    c = dict(BASE_CONFIG)
    del c["num_loops"]
    write("model_config", "missing_loops", dumps(c))
    write("model_config", "k_gt_e", dumps(dict(BASE_CONFIG, num_experts_per_tok=8)))
    write("model_config", "heads_indivisible", dumps(dict(BASE_CONFIG, num_key_value_heads=3)))
    write("model_config", "float_field", dumps(dict(BASE_CONFIG, hidden_size=32.5)))
    write("model_config", "huge_field", dumps(dict(BASE_CONFIG, num_loops=1e300)))
    write("model_config", "string_field", dumps(dict(BASE_CONFIG, vocab_size="64")))
    write("model_config", "negative", dumps(dict(BASE_CONFIG, num_coda_layers=-1)))
    write("model_config", "big_ints", dumps(dict(BASE_CONFIG, hidden_size=2**62, num_loops=2**31 - 1)))
    write("model_config", "wrong_type", dumps(dict(BASE_CONFIG, model_type="llama")))
    write("model_config", "not_object", "[1, 2]")


# --- exit_policies.json ----------------------------------------------------------
def exit_policies():
    write("exit_policies", "valid", dumps({"policies": {
        "fast": {"criterion": "max_prob", "threshold": 0.9, "min_loops": 1, "max_loops": 0, "kv_fill": "reuse"},
        "margin": {"criterion": "margin", "threshold": 0.3},
        "ent": {"criterion": "entropy", "threshold": 1.5, "kv_fill": "propagate"},
        "kl": {"criterion": "kl", "threshold": 0.01, "min_loops": 2},
        "stable": {"criterion": "top1_stable", "threshold": 2},
        "cos": {"criterion": "hidden_cosine", "threshold": 0.99},
        "gate": {"criterion": "gate", "threshold": 0.5, "max_loops": 3},
        "never": {"criterion": "never"}}}))
    write("exit_policies", "empty", dumps({"policies": {}}))
    write("exit_policies", "bad_criterion", dumps({"policies": {"x": {"criterion": "best"}}}))
    write("exit_policies", "bad_loops", dumps({"policies": {"x": {"criterion": "max_prob", "threshold": 0.5, "min_loops": 5, "max_loops": 2}}}))
    write("exit_policies", "huge_loops", dumps({"policies": {"x": {"criterion": "max_prob", "threshold": 0.5, "min_loops": 1e200}}}))
    write("exit_policies", "nan_threshold", '{"policies":{"x":{"criterion":"max_prob","threshold":NaN}}}')
    write("exit_policies", "unknown_field", dumps({"policies": {"x": {"criterion": "never", "speed": 1}}}))
    write("exit_policies", "policies_array", dumps({"policies": [1]}))
    write("exit_policies", "not_object", '"policies"')


# --- deployment ------------------------------------------------------------------
def deployment():
    write("deployment", "named", dumps({"name": "fast", "policy": "fast"}))
    write("deployment", "full", dumps({
        "name": "d", "exit_policy": {"criterion": "entropy", "threshold": 1.0, "min_loops": 2},
        "sampling": {"temperature": 0.7, "top_k": 40, "top_p": 0.9, "seed": 7, "logprobs": 2},
        "default_max_tokens": 32,
        "limits": {"max_prompt_tokens": 256, "max_tokens": 128, "allow_exit_overrides": True}}))
    write("deployment", "both_policies", dumps({"name": "d", "policy": "fast", "exit_policy": {}}))
    write("deployment", "unknown_policy", dumps({"name": "d", "policy": "slow"}))
    write("deployment", "sampling_not_object", dumps({"name": "d", "sampling": 5}))
    write("deployment", "limits_array", dumps({"name": "d", "limits": [1, 2]}))
    write("deployment", "huge_max_tokens", dumps({"name": "d", "default_max_tokens": 1e300}))
    write("deployment", "bad_sampling", dumps({"name": "d", "sampling": {"temperature": -1}}))
    write("deployment", "no_name", dumps({"policy": "fast"}))


# --- tokenizer.json ---------------------------------------------------------------
def byte_level_char(b):
    # GPT-2 bytes_to_unicode.
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    if b in printable:
        return chr(b)
    n = 0
    for x in range(256):
        if x not in printable:
            if x == b:
                return chr(256 + n)
            n += 1


def tokenizer(merges, pre_tokenizer=None, pairs=False):
    bl = lambda s: "".join(byte_level_char(b) for b in s.encode())
    vocab = {byte_level_char(b): b for b in range(256)}
    merge_list = []
    for l, r in merges:
        if bl(l + r) not in vocab:
            vocab[bl(l + r)] = len(vocab)
        merge_list.append([bl(l), bl(r)] if pairs else bl(l) + " " + bl(r))
    added = []
    for name in ["<|bos|>", "<|eos|>"]:
        added.append({"id": len(vocab), "content": name, "special": True})
        vocab[name] = len(vocab)
    return {"version": "1.0", "added_tokens": added, "normalizer": None,
            "pre_tokenizer": pre_tokenizer or {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True},
            "post_processor": None, "decoder": {"type": "ByteLevel"},
            "model": {"type": "BPE", "vocab": vocab, "merges": merge_list}}


def tokenizer_json():
    merges = [("h", "e"), ("l", "l"), ("he", "ll"), ("hell", "o"), (" ", "w")]
    write("tokenizer_json", "gpt2_style", dumps(tokenizer(merges)))
    llama3 = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"},
         "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
    write("tokenizer_json", "llama3_style_pairs", dumps(tokenizer(merges, llama3, pairs=True)))
    bad_regex = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "(unclosed"}, "behavior": "Isolated"},
        {"type": "ByteLevel", "use_regex": False}]}
    write("tokenizer_json", "bad_regex", dumps(tokenizer(merges, bad_regex)))
    t = tokenizer(merges)
    t["model"]["merges"].append("zz qq")
    write("tokenizer_json", "merge_unknown", dumps(t))
    t = tokenizer(merges)
    t["model"]["type"] = "WordPiece"
    write("tokenizer_json", "wrong_model", dumps(t))
    t = tokenizer(merges)
    t["added_tokens"].append({"id": 100000, "content": "<big>", "special": True})
    write("tokenizer_json", "added_id_far", dumps(t))
    t = tokenizer(merges)
    t["model"]["vocab"]["Ġw"] = -5
    write("tokenizer_json", "negative_id", dumps(t))
    write("tokenizer_json", "not_object", "[]")


def tokenizer_encode():
    for name, text in [
        ("ascii", "hello world, hello wall"),
        ("special", "<|bos|>hello<|eos|> <|eos|<|bos|>"),
        ("unicode", "caf\u00e9 \u20ac \U0001F600 \u4e2d\u6587 \u0645\u0631\u062d\u0628\u0627"),
        ("numbers", "1234567 3.14159 -42 1e10"),
        ("whitespace", "  \t\n\n  a  b\r\n   "),
        ("contractions", "I'm we'll they've she'd it's DON'T"),
    ]:
        write("tokenizer_encode", name, text)
    write("tokenizer_encode", "invalid_utf8", b"ok \xff\xfe \xc3 \xe2\x82 \xed\xa0\x80 \xf4\x90\x80\x80 end")
    write("tokenizer_encode", "nul_bytes", b"a\x00b\x00\x00c")


# --- GenerateRequest protos -------------------------------------------------------------
def generate_request():
    requests = {
        "ids": 'deployment: "open" token_ids { ids: [1, 2, 3] } max_tokens: 8',
        "text": 'text: "hello world" max_tokens: 4 stop: "wor" stop_token_ids: [5]',
        "sampling": 'token_ids { ids: [10, 20] } sampling { temperature: 0.8 top_k: 5 top_p: 0.9 seed: 3 logprobs: 2 }',
        "override": 'token_ids { ids: [7] } exit_override { criterion: "entropy" threshold: 0.5 min_loops: 1 max_loops: 3 kv_fill: "propagate" }',
        "override_bad": 'token_ids { ids: [7] } exit_override { criterion: "gate" threshold: 2 min_loops: 9 }',
        "empty_prompt": 'token_ids { } max_tokens: 1',
        "no_prompt": 'max_tokens: 1',
        "too_many_tokens": 'token_ids { ids: [1] } max_tokens: 100000',
        "negative_max": 'token_ids { ids: [1] } max_tokens: -3',
        "stop_out_of_vocab": 'token_ids { ids: [1] } stop_token_ids: [-1, 300]',
        "bad_sampling": 'token_ids { ids: [1] } sampling { temperature: -1 top_p: 7 logprobs: 99 }',
    }
    proto = os.path.join(ROOT, "proto")
    for name, text in requests.items():
        out = subprocess.run(["protoc", "--proto_path=" + proto,
                              "--encode=loopserve.v1.GenerateRequest", "loopserve/v1/loopserve.proto"],
                             input=text.encode(), capture_output=True, check=True).stdout
        write("generate_request", name, out)


def main():
    safetensors()
    model_config()
    exit_policies()
    deployment()
    tokenizer_json()
    tokenizer_encode()
    generate_request()
    for target in sorted(os.listdir(os.path.join(HERE, "corpus"))):
        d = os.path.join(HERE, "regressions", target)
        os.makedirs(d, exist_ok=True)
        # The empty input is every target's first regression case.
        open(os.path.join(d, "empty"), "wb").close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
