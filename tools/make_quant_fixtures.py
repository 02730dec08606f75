#!/usr/bin/env python3
"""Generate the quantization fixtures of memwall-kernels from gguf-py.

For each of F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 writes
crates/kernels/tests/data/quant_<name>.bin:

    b"MWQF", u32 rows, u32 cols, u32 n_qbytes          (little endian)
    f32[rows * cols]   input
    u8[n_qbytes]       gguf.quants.quantize(input)
    f32[rows * cols]   gguf.quants.dequantize(quantized)

The input is fixed-seed random data plus edge cases: all-zero blocks, blocks of
equal values, large magnitudes, tiny (f16-subnormal) scales, and values that
land exactly on rounding ties (x * id = k + 0.5).

For the k-quants (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K), which memwall only
decodes, writes crates/kernels/tests/data/kquant_<name>.bin:

    b"MWKF", u32 n_blocks, u32 block_bytes, u32 0
    u8[n_blocks * block_bytes]   random bytes with finite f16 scales, plus
                                 gguf.quants.quantize(input row 0) where gguf-py can
    f32[n_blocks * 256]          gguf.quants.dequantize(bytes)

Run: /work/cache/venv/bin/python tools/make_quant_fixtures.py
"""

import pathlib
import struct

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants

ROWS, COLS = 4, 256
OUT = pathlib.Path(__file__).resolve().parent.parent / "crates/kernels/tests/data"


def make_input() -> np.ndarray:
    rng = np.random.default_rng(20240611)
    x = rng.standard_normal((ROWS, COLS)).astype(np.float32)
    b = [slice(32 * i, 32 * (i + 1)) for i in range(COLS // 32)]
    # row 1: edge blocks
    x[1, b[0]] = 0.0
    x[1, b[1]] = 0.75
    x[1, b[2]] = -3.0
    x[1, b[3]] = rng.standard_normal(32) * 3.0e4
    x[1, b[4]] = rng.standard_normal(32) * 1.0e-6
    x[1, b[5]] = np.clip(rng.standard_normal(32) * 6.0e4, -65000, 65000)
    x[1, b[6]] = 0.0
    x[1, b[6].start] = 5.0  # one outlier in a block of zeros
    x[1, b[7]] = rng.uniform(-1, 1, 32) + 100.0  # offset block (Q4_1/Q5_1 min)
    # row 2: rounding ties. amax 127 -> Q8_0 d = 1; max -8 / -16 -> Q4_0 / Q5_0 d = 1.
    ties = np.arange(32, dtype=np.float32) - 15.5
    x[2, b[0]] = ties * 4
    x[2, b[0].start] = 127.0
    x[2, b[1]] = np.clip(ties / 2, -7.5, 6.5)
    x[2, b[1].start] = -8.0
    x[2, b[2]] = np.clip(ties, -15.5, 14.5)
    x[2, b[2].start] = -16.0
    x[2, b[3]] = ties  # Q4_1/Q5_1: min -15.5, max 15.5
    # row 3: uniform with one huge outlier per block
    x[3] = rng.uniform(-1, 1, COLS).astype(np.float32)
    x[3, ::32] = 1000.0
    return x.astype(np.float32)


# (type, block bytes, byte offsets of the f16 scales)
KQUANTS = [("q2_K", T.Q2_K, 84, [80, 82]), ("q3_K", T.Q3_K, 110, [108]), ("q4_K", T.Q4_K, 144, [0, 2]),
           ("q5_K", T.Q5_K, 176, [0, 2]), ("q6_K", T.Q6_K, 210, [208])]
K_BLOCKS = 6


def write_kquants(x: np.ndarray) -> None:
    rng = np.random.default_rng(20250101)
    for name, qt, bb, scale_at in KQUANTS:
        raw = rng.integers(0, 256, size=(K_BLOCKS, bb), dtype=np.uint8)
        for at in scale_at:
            v = rng.uniform(-0.05, 0.05, K_BLOCKS).astype(np.float16)
            raw[:, at:at + 2] = v.view(np.uint8).reshape(K_BLOCKS, 2)
        try:  # gguf-py quantizes some k-quants; use real quantized blocks too when it can
            real = np.ascontiguousarray(quants.quantize(x[:1], qt)).view(np.uint8).reshape(-1, bb)
            raw = np.concatenate([raw, real])
        except NotImplementedError:
            pass
        d = quants.dequantize(raw, qt).astype("<f4").reshape(-1)
        path = OUT / f"kquant_{name}.bin"
        with open(path, "wb") as f:
            f.write(b"MWKF" + struct.pack("<III", raw.shape[0], bb, 0))
            f.write(raw.tobytes())
            f.write(d.tobytes())
        print(f"{path}: {raw.shape[0]} blocks")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    x = make_input()
    for name, qt in [("f16", T.F16), ("bf16", T.BF16), ("q4_0", T.Q4_0), ("q4_1", T.Q4_1),
                     ("q5_0", T.Q5_0), ("q5_1", T.Q5_1), ("q8_0", T.Q8_0)]:
        q = np.ascontiguousarray(quants.quantize(x, qt)).view(np.uint8).reshape(-1)
        d = quants.dequantize(q.reshape(ROWS, -1), qt).astype(np.float32).reshape(-1)
        assert d.size == ROWS * COLS
        path = OUT / f"quant_{name}.bin"
        with open(path, "wb") as f:
            f.write(b"MWQF" + struct.pack("<III", ROWS, COLS, q.size))
            f.write(x.astype("<f4").tobytes())
            f.write(q.tobytes())
            f.write(d.astype("<f4").tobytes())
        print(f"{path}: {q.size} quantized bytes")
    write_kquants(x)


if __name__ == "__main__":
    main()
