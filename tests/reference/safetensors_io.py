"""Minimal safetensors reader/writer (numpy only) for the loopserve reference.

Format: u64 little-endian header length N, N bytes of JSON header
{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}},
then the byte buffer (offsets are relative to the buffer start).

Supported dtypes: F32, F16, BF16, I32, I64. BF16 has no numpy dtype: it is
stored as uint16 bit patterns; writing rounds f32 -> bf16 to nearest even,
reading widens bf16 -> f32 exactly (a 16-bit shift).

Sharded checkpoints: `load_checkpoint(dir)` reads `model.safetensors`, or every
shard named in `model.safetensors.index.json` ({"weight_map": {tensor: file}}).
"""

import json
import os
import struct

import numpy as np

_NP_OF = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "I32": np.dtype("<i4"),
          "I64": np.dtype("<i8"), "BF16": np.dtype("<u2")}
_SIZE_OF = {k: v.itemsize for k, v in _NP_OF.items()}
DTYPES = tuple(_NP_OF)


def f32_to_bf16_bits(x):
    """f32 array -> uint16 bf16 bit patterns, round to nearest, ties to even."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    out = rounded.astype(np.uint16)
    nan = np.isnan(np.asarray(x, dtype=np.float32))
    if nan.any():  # keep NaN a (quiet) NaN instead of rounding it into Inf
        out[nan] = ((u[nan] >> 16) | 0x40).astype(np.uint16)
    return out


def bf16_bits_to_f32(bits):
    """uint16 bf16 bit patterns -> f32 (exact)."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def round_to_dtype(x, dtype):
    """What a value becomes after storing it as `dtype` and reading it back (as f32/f64)."""
    if dtype == "BF16":
        return bf16_bits_to_f32(f32_to_bf16_bits(x))
    if dtype == "F16":
        return np.asarray(x, dtype=np.float16).astype(np.float32)
    if dtype == "F32":
        return np.asarray(x, dtype=np.float32)
    raise ValueError(f"not a float dtype: {dtype}")


def _default_dtype(arr):
    kind = {np.dtype(np.float32): "F32", np.dtype(np.float64): "F32",
            np.dtype(np.float16): "F16", np.dtype(np.int32): "I32",
            np.dtype(np.int64): "I64"}.get(arr.dtype)
    if kind is None:
        raise ValueError(f"no safetensors dtype for numpy {arr.dtype}; pass dtypes=")
    return kind


def _encode(arr, dtype):
    if dtype == "BF16":
        return f32_to_bf16_bits(np.asarray(arr, dtype=np.float32)).astype("<u2").tobytes()
    return np.ascontiguousarray(arr, dtype=_NP_OF[dtype]).tobytes()


def save_file(path, tensors, dtypes=None, metadata=None):
    """Write {name: array} to `path`.

    dtypes: None (from the numpy dtype; float64 -> F32), one dtype string for all
    float tensors, or {name: dtype}. metadata: optional {str: str}.
    """
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        arr = np.asarray(tensors[name])
        if isinstance(dtypes, dict):
            dt = dtypes.get(name) or _default_dtype(arr)
        elif isinstance(dtypes, str) and arr.dtype.kind == "f":
            dt = dtypes
        else:
            dt = _default_dtype(arr)
        if dt not in _NP_OF:
            raise ValueError(f"tensor {name}: unsupported dtype {dt}")
        blob = _encode(arr, dt)
        header[name] = {"dtype": dt, "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    hdr = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hdr += b" " * (-len(hdr) % 8)  # pad so the buffer starts 8-aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hdr)))
        f.write(hdr)
        for blob in blobs:
            f.write(blob)


def read_header(path):
    """(header dict without __metadata__, metadata dict, buffer start offset)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n).decode("utf-8"))
    meta = header.pop("__metadata__", {}) or {}
    return header, meta, 8 + n


def load_file(path, with_dtypes=False):
    """{name: array}. Floats come back as F32/F16 numpy arrays; BF16 as f32 (exact).

    with_dtypes=True returns ({name: array}, {name: dtype string}).
    """
    header, _, start = read_header(path)
    with open(path, "rb") as f:
        f.seek(start)
        buf = f.read()
    out, dts = {}, {}
    for name, info in header.items():
        dt, shape = info["dtype"], tuple(info["shape"])
        if dt not in _NP_OF:
            raise ValueError(f"tensor {name}: unsupported dtype {dt}")
        b, e = info["data_offsets"]
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if e - b != count * _SIZE_OF[dt] or e > len(buf):
            raise ValueError(f"tensor {name}: data_offsets [{b},{e}] do not fit "
                             f"{dt}{list(shape)} in a {len(buf)}-byte buffer")
        arr = np.frombuffer(buf, dtype=_NP_OF[dt], count=count, offset=b).reshape(shape)
        out[name] = bf16_bits_to_f32(arr).reshape(shape) if dt == "BF16" else arr.copy()
        dts[name] = dt
    return (out, dts) if with_dtypes else out


INDEX_NAME = "model.safetensors.index.json"


def load_checkpoint(directory, with_dtypes=False):
    """All tensors of a checkpoint directory, single-file or sharded."""
    index = os.path.join(directory, INDEX_NAME)
    if os.path.exists(index):
        with open(index) as f:
            weight_map = json.load(f)["weight_map"]
        out, dts = {}, {}
        for shard in sorted(set(weight_map.values())):
            t, d = load_file(os.path.join(directory, shard), with_dtypes=True)
            for name in t:
                if weight_map.get(name) != shard:
                    raise ValueError(f"tensor {name} found in {shard} but the index "
                                     f"maps it to {weight_map.get(name)}")
            out.update(t)
            dts.update(d)
        missing = sorted(set(weight_map) - set(out))
        if missing:
            raise ValueError(f"index names tensors absent from the shards: {missing}")
    else:
        out, dts = load_file(os.path.join(directory, "model.safetensors"), with_dtypes=True)
    return (out, dts) if with_dtypes else out


def save_sharded(directory, tensors, num_shards, dtypes=None):
    """Split tensors (sorted by name, round-robin by size) into num_shards files + index."""
    names = sorted(tensors)
    shards = [dict() for _ in range(num_shards)]
    sizes = [0] * num_shards
    for name in sorted(names, key=lambda n: -np.asarray(tensors[n]).size):
        s = sizes.index(min(sizes))
        shards[s][name] = tensors[name]
        sizes[s] += np.asarray(tensors[name]).size
    weight_map, total = {}, 0
    for s, part in enumerate(shards):
        fname = f"model-{s + 1:05d}-of-{num_shards:05d}.safetensors"
        save_file(os.path.join(directory, fname), part, dtypes=dtypes)
        for name in part:
            weight_map[name] = fname
    for name in names:
        dt = dtypes.get(name) if isinstance(dtypes, dict) else dtypes
        dt = dt if isinstance(dt, str) else _default_dtype(np.asarray(tensors[name]))
        total += np.asarray(tensors[name]).size * _SIZE_OF[dt]
    with open(os.path.join(directory, INDEX_NAME), "w") as f:
        json.dump({"metadata": {"total_size": total},
                   "weight_map": dict(sorted(weight_map.items()))}, f, indent=1)
