#!/usr/bin/env python3
"""Tokenizer test vectors for SmolLM2's vocabulary, produced by llama.cpp itself.

Takes the standard case list of llama.cpp's tokenizer tests (the `.inp` of
`ggml-vocab-llama-spm` from the llama-cpp-python 0.3.36 sdist, which scripts/fetch-test-data.sh
puts in .cache/vocab/), encodes every case with llama-cpp-python on the vocabulary inside
SmolLM2-135M-Instruct.Q4_1.gguf (vocab_only, no BOS, special tokens not parsed), and writes
`tests/fixtures/vocab/ggml-vocab-smollm.gguf.inp` / `.out` in llama.cpp's format:
cases each followed by "\\n__ggml_vocab_test__\\n"; one output line per case, every id
preceded by a space.

Optionally compares with another .out (e.g. an older copy from llama.cpp's history, whose
case list may differ slightly) with --compare.

    python tools/smollm_vocab_vectors.py [--compare path/to/ggml-vocab-smollm.gguf.out]
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SEP = "\n__ggml_vocab_test__\n"


def read_cases(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    parts = text.split(SEP)
    if parts[-1] != "":
        raise SystemExit(f"{path}: does not end with the case separator")
    return parts[:-1]


def main() -> None:
    cache = Path(os.environ.get("MEMWALL_CACHE", REPO / ".cache"))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=cache / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--cases", type=Path, default=cache / "vocab" / "ggml-vocab-llama-spm.gguf.inp")
    ap.add_argument("--out-dir", type=Path, default=REPO / "tests" / "fixtures" / "vocab")
    ap.add_argument("--compare", type=Path, help="another ggml-vocab-smollm.gguf.out to diff against")
    ap.add_argument("--compare-inp", type=Path, help="the .inp that goes with --compare")
    args = ap.parse_args()

    from lcp_util import open_llama

    cases = read_cases(args.cases)
    llm = open_llama(str(args.model), vocab_only=True, verbose=False)
    rows = [llm.tokenize(c.encode("utf-8"), add_bos=False, special=False) for c in cases]

    args.out_dir.mkdir(parents=True, exist_ok=True)
    inp = args.out_dir / "ggml-vocab-smollm.gguf.inp"
    out = args.out_dir / "ggml-vocab-smollm.gguf.out"
    with open(inp, "w", encoding="utf-8", newline="") as f:
        for c in cases:
            f.write(c + SEP)
    with open(out, "w", encoding="utf-8", newline="") as f:
        for r in rows:
            f.write("".join(f" {t}" for t in r) + "\n")
    print(f"wrote {inp} and {out}: {len(cases)} cases")

    if args.compare:
        other = args.compare.read_text(encoding="utf-8").split("\n")[:-1]
        other_cases = read_cases(args.compare_inp) if args.compare_inp else None
        mine = ["".join(f" {t}" for t in r) for r in rows]
        ndiff = 0
        for i, (a, b) in enumerate(zip(mine, other)):
            if a != b:
                ndiff += 1
                other_case = other_cases[i] if other_cases else "?"
                print(f"case {i}: {cases[i]!r} -> {a!r}\n   compare ({other_case!r}) -> {b!r}")
        print(f"{ndiff} of {min(len(mine), len(other))} lines differ"
              f" ({len(mine)} vs {len(other)} cases)")


if __name__ == "__main__":
    main()
