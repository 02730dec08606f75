#!/usr/bin/env python3
"""Generate crates/kernels/tests/data/kquant_quantize.bin: ggml's own k-quant
quantizer output (quantize_row_q{2,3,4,5,6}_K_ref from llama-cpp-python's
libggml-base.so, called through ctypes) on blocks of fixed pseudo-random input.

The inputs are not stored: each 256-element block is described by a recipe
(kind, seed, scale, offset) that memwall's test regenerates exactly. The
generator uses only integer arithmetic (splitmix64) and integers below 2^24
(exact in f32), followed by f32 multiplies and adds, so Python (numpy f32)
and Rust compute the same bits. A hash of the generated input is stored too,
so a generator mismatch fails loudly instead of looking like a quantizer bug.

File layout (little endian):

    b"MWKQ", u32 n_blocks, u32 n_types, u32 0
    n_blocks x (u32 kind, u32 0, u64 seed, f32 scale, f32 offset)   recipes
    u64 fnv1a64(input as f32 LE bytes)
    n_types x (u32 ggml type id, u32 block_bytes, u8[n_blocks * block_bytes])

Kinds (g = sum of 4 integers uniform in [-2^20, 2^20), u = integer uniform
in [-2^23, 2^23), both drawn per element in order):
    0 zero         x = 0
    1 gauss        x = f32(g) * scale + offset
    2 uniform      x = f32(u) * scale + offset
    3 outlier      x = f32(g) * scale; then x[next() % 256] = offset
    4 sparse       x = f32(g) * scale; then the 16-element groups whose bit is
                   set in next() & 0xffff are zeroed
    5 heavy tail   v = f32(g) * scale; x = v * |v| + offset

Run: /work/cache/venv/bin/python tools/kquant_fixtures.py

With `--llama-quantize MODEL.gguf` it instead runs llama.cpp's own
`llama_model_quantize` (llama-cpp-python) on MODEL (the F32 test model that
`cargo test -p memwall-cli --test quantize` writes to
$TMPDIR/memwall-quantize-test-<pid>/model-f32.gguf) for every type
`memwall quantize` accepts, and writes
crates/cli/tests/data/llama_quantize.json: the model's sha256 and, per type,
the sha256 of its tensors (sorted by name; per tensor the name, a 0 byte,
the u32 ggml type id and the data), which the test compares with memwall's.
"""

import ctypes
import glob
import hashlib
import json
import pathlib
import struct
import sys
import tempfile

import numpy as np

QK_K = 256
OUT = pathlib.Path(__file__).resolve().parent.parent / "crates/kernels/tests/data/kquant_quantize.bin"
LIB_GLOB = "/work/cache/venv/lib/python3.11/site-packages/llama_cpp/lib/libggml-base.so"

# (ggml type id, name, block bytes)
TYPES = [(10, "q2_K", 84), (11, "q3_K", 110), (12, "q4_K", 144), (13, "q5_K", 176), (14, "q6_K", 210)]

MASK = (1 << 64) - 1
S21 = 2.0**-21
S23 = 2.0**-23

# (kind, seed, scale, offset)
RECIPES = [
    (0, 1, 0.0, 0.0),  # all zero
    (1, 2, S21, 0.0),  # N(0, ~0.6)
    (1, 3, 0.02 * S21, 0.0),  # typical weight magnitudes
    (1, 4, 0.25 * S21, 1.5),  # mostly positive: the minimum is clamped to 0
    (1, 5, 0.5 * S21, -2.0),  # all negative
    (2, 6, S23, 0.0),  # uniform [-1, 1)
    (3, 7, 0.02 * S21, 3.0),  # one large outlier
    (3, 8, 0.02 * S21, -5.0),  # one large negative outlier
    (4, 9, 0.05 * S21, 0.0),  # some groups all zero
    (5, 10, S21, 0.0),  # heavy tails
    (1, 11, 1e-9 * S21, 0.0),  # scales underflow f16
    (2, 12, 0.0, 0.7),  # constant
    (1, 13, 300.0 * S21, 0.0),  # large magnitudes
    (2, 14, 0.1 * S23, 0.05),  # small, offset
]


class SplitMix64:
    def __init__(self, seed: int):
        self.s = seed & MASK

    def next(self) -> int:
        self.s = (self.s + 0x9E3779B97F4A7C15) & MASK
        z = self.s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)


def gauss_int(r: SplitMix64) -> int:
    return sum((r.next() >> 43) - (1 << 20) for _ in range(4))


def uniform_int(r: SplitMix64) -> int:
    return (r.next() >> 40) - (1 << 23)


def make_block(kind: int, seed: int, scale: float, offset: float) -> np.ndarray:
    r = SplitMix64(seed)
    sc, off = np.float32(scale), np.float32(offset)
    x = np.zeros(QK_K, dtype=np.float32)
    if kind == 0:
        return x
    for i in range(QK_K):
        if kind == 2:
            x[i] = np.float32(uniform_int(r)) * sc + off
        elif kind == 5:
            v = np.float32(gauss_int(r)) * sc
            x[i] = v * np.float32(abs(v)) + off
        elif kind in (1, 3, 4):
            v = np.float32(gauss_int(r)) * sc
            x[i] = v + off if kind == 1 else v
        else:
            raise ValueError(kind)
    if kind == 3:
        x[r.next() % QK_K] = off
    if kind == 4:
        mask = r.next() & 0xFFFF
        for g in range(16):
            if mask >> g & 1:
                x[16 * g : 16 * g + 16] = 0
    return x


def fnv1a64(b: bytes) -> int:
    h = 0xCBF29CE484222325
    for c in b:
        h = ((h ^ c) * 0x100000001B3) & MASK
    return h


def main() -> None:
    (lib_path,) = glob.glob(LIB_GLOB)
    lib = ctypes.CDLL(lib_path)
    x = np.concatenate([make_block(*r) for r in RECIPES]).astype(np.float32)
    n = len(RECIPES)
    out = bytearray(b"MWKQ" + struct.pack("<III", n, len(TYPES), 0))
    for kind, seed, scale, offset in RECIPES:
        out += struct.pack("<IIQff", kind, 0, seed, scale, offset)
    out += struct.pack("<Q", fnv1a64(x.tobytes()))
    for type_id, name, bb in TYPES:
        fn = getattr(lib, f"quantize_row_{name}_ref")
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
        fn.restype = None
        dst = ctypes.create_string_buffer(n * bb)
        fn(x.ctypes.data, dst, n * QK_K)
        out += struct.pack("<II", type_id, bb) + dst.raw
    OUT.write_bytes(bytes(out))
    print(f"wrote {OUT} ({len(out)} bytes, {n} blocks)")


# memwall --type -> llama_ftype
FTYPES = {
    "q4_0": 2, "q4_1": 3, "q5_0": 8, "q5_1": 9, "q8_0": 7, "q2_k": 10, "q3_k": 11, "q4_k": 14,
    "q5_k": 16, "q6_k": 18, "q3_k_m": 12, "q4_k_m": 15, "q5_k_m": 17, "f16": 1, "bf16": 32,
}


def tensor_digest(path: str) -> str:
    import gguf

    h = hashlib.sha256()
    for t in sorted(gguf.GGUFReader(path).tensors, key=lambda t: t.name):
        h.update(t.name.encode() + b"\0" + struct.pack("<I", int(t.tensor_type)) + t.data.tobytes())
    return h.hexdigest()


def llama_quantize(model: str) -> None:
    import llama_cpp

    out = {
        "source": "llama_model_quantize, llama-cpp-python " + llama_cpp.__version__,
        "model_sha256": hashlib.sha256(pathlib.Path(model).read_bytes()).hexdigest(),
        "types": {},
    }
    with tempfile.TemporaryDirectory() as d:
        for name, ftype in FTYPES.items():
            p = llama_cpp.llama_model_quantize_default_params()
            p.ftype = ftype
            p.nthread = 1
            dst = f"{d}/{name}.gguf"
            rc = llama_cpp.llama_model_quantize(model.encode(), dst.encode(), ctypes.byref(p))
            assert rc == 0, (name, rc)
            out["types"][name] = tensor_digest(dst)
    path = pathlib.Path(__file__).resolve().parent.parent / "crates/cli/tests/data/llama_quantize.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--llama-quantize":
        llama_quantize(sys.argv[2])
    else:
        main()
