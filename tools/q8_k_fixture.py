"""Writes q8_k.bin: ggml's own Q8_K activation quantizer on fixed input.

Calls `quantize_row_q8_K_ref` (ggml-quants.c; the x86 build of ggml-cpu
quantizes k-quant activations with this same function) from
llama-cpp-python's libggml-base through ctypes, and stores the input with
the blocks it produced, for `tests/kquant_quantize.rs`:

    b"Q8KF", u32 n_blocks, f32 x[n_blocks * 256],
    n_blocks * { f32 d, i8 qs[256], i16 bsums[16] }      (ggml's block_q8_K)

Run: /work/cache/venv/bin/python tools/q8_k_fixture.py
"""

import ctypes
import pathlib
import struct

import numpy as np

LIB = "/work/cache/venv/lib/python3.11/site-packages/llama_cpp/lib/libggml-base.so"
QK_K = 256
BLOCK = 4 + QK_K + 2 * 16


def blocks() -> np.ndarray:
    rng = np.random.default_rng(20261122)
    out = []
    # Gaussian activations at several scales.
    for scale in (1e-3, 0.5, 3.0, 40.0):
        out.append(rng.standard_normal(QK_K).astype(np.float32) * np.float32(scale))
    # Heavy tails: one outlier dominates.
    x = rng.standard_normal(QK_K).astype(np.float32)
    x[17] = -55.0
    out.append(x)
    # Ties: max = -127 gives iscale = 1, so k + 0.5 rounds to even.
    x = (np.arange(QK_K, dtype=np.float32) % 16) - np.float32(7.5)
    x[3] = -127.0
    out.append(x)
    # +max before -max (first one wins: iscale = -1), and values at +-127.
    x = rng.uniform(-100, 100, QK_K).astype(np.float32)
    x[5], x[9] = 127.0, -127.0
    out.append(x)
    # All zero.
    out.append(np.zeros(QK_K, dtype=np.float32))
    # Constant block, positive.
    out.append(np.full(QK_K, 0.75, dtype=np.float32))
    return np.concatenate(out)


def main() -> None:
    lib = ctypes.CDLL(LIB)
    fn = lib.quantize_row_q8_K_ref
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    x = np.ascontiguousarray(blocks())
    n = len(x) // QK_K
    dst = ctypes.create_string_buffer(n * BLOCK)
    fn(x.ctypes.data, dst, n * QK_K)
    path = pathlib.Path(__file__).resolve().parent.parent / "crates/kernels/tests/data/q8_k.bin"
    path.write_bytes(b"Q8KF" + struct.pack("<I", n) + x.tobytes() + dst.raw)
    print(f"{path}: {n} blocks")


if __name__ == "__main__":
    main()
