#!/usr/bin/env python3
"""Greedy reference continuations from llama.cpp (llama-cpp-python) on the default model.

For each prompt in PROMPTS this records llama.cpp's tokenization of the prompt (with the
model's default BOS behaviour, special tokens parsed) and a 32-token greedy continuation
(argmax of llama.cpp's logits at every step: temperature 0, no repetition penalty), with
the detokenized text, and writes `tests/fixtures/llama_cpp_greedy.json`.

The continuation does not stop at end-of-generation tokens (all 32 ids are argmax ids);
`eog_index` says where the first one is, and `completion_text` is what
`create_completion(temperature=0, top_k=1, repeat_penalty=1.0)` returns (which does stop),
as a cross-check. `margins` holds llama.cpp's top1 - top2 logit gap at every step: a step
with a small margin may legitimately flip in another engine (different float order).

Run (after scripts/fetch-test-data.sh and `pip install llama-cpp-python==0.3.36`):

    python tools/llama_cpp_reference.py [--model .cache/models/SmolLM2-135M-Instruct.Q4_1.gguf]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
N_NEW = 32
PROMPTS = [
    ("capital", "The capital of France is"),
    ("once", "Once upon a time"),
    ("fibonacci", "def fibonacci(n):"),
    ("fox", "The quick brown fox"),
    ("chat", "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"),
    ("chat_system", "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
                    "Hugging Face<|im_end|>\n<|im_start|>user\nName three colors.<|im_end|>\n"
                    "<|im_start|>assistant\n"),
]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main() -> None:
    cache = Path(os.environ.get("MEMWALL_CACHE", REPO / ".cache"))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=cache / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures" / "llama_cpp_greedy.json")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import llama_cpp
    from lcp_util import open_llama

    llm = open_llama(str(args.model), n_ctx=512, n_batch=512, n_threads=args.threads,
                     seed=0, logits_all=True, verbose=False)
    meta = llm.metadata
    eos = llm.token_eos()
    bos = llm.token_bos()

    def is_eog(tok: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(llm._model.vocab, tok)) if hasattr(
            llama_cpp, "llama_vocab_is_eog") else tok == eos

    cases = []
    for name, prompt in PROMPTS:
        ids = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
        llm.reset()
        llm.eval(ids)
        greedy, margins = [], []
        for _ in range(N_NEW):
            logits = np.asarray(llm.scores[llm.n_tokens - 1], dtype=np.float32)
            top2 = np.argsort(logits)[-2:][::-1]
            greedy.append(int(top2[0]))
            margins.append(round(float(logits[top2[0]] - logits[top2[1]]), 4))
            llm.eval([int(top2[0])])
        eog_index = next((i for i, t in enumerate(greedy) if is_eog(t)), None)
        pieces = [llm.detokenize([t], special=True).decode("utf-8", errors="replace") for t in greedy]
        upto = greedy if eog_index is None else greedy[:eog_index]
        text = llm.detokenize(upto).decode("utf-8", errors="replace")
        llm.reset()
        comp = llm.create_completion(prompt, max_tokens=N_NEW, temperature=0.0, top_k=1, top_p=1.0,
                                     min_p=0.0, repeat_penalty=1.0, seed=0)
        completion_text = comp["choices"][0]["text"]
        cases.append({
            "name": name, "prompt": prompt, "prompt_ids": [int(t) for t in ids],
            "greedy_ids": greedy, "greedy_text": text, "greedy_pieces": pieces,
            "eog_index": eog_index, "margins": margins, "completion_text": completion_text,
            "completion_matches_greedy": completion_text == text,
        })
        print(f"{name:12s} prompt {len(ids)} tok (first id {ids[0]}) -> {text!r}")
        if completion_text != text:
            print(f"   create_completion differs: {completion_text!r}")

    out = {
        "model": args.model.name, "model_sha256": sha256(args.model),
        "llama_cpp_python_version": llama_cpp.__version__,
        "n_vocab": llm.n_vocab(), "bos_token_id": bos, "eos_token_id": eos,
        "add_bos_token": meta.get("tokenizer.ggml.add_bos_token"),
        "tokenizer_pre": meta.get("tokenizer.ggml.pre"),
        "tokenize": "llama_tokenize(add_special=True, parse_special=True): BOS is prepended only "
                    "if the vocab says add_bos",
        "sampling": "argmax of llama.cpp logits at every step (temperature 0, top_k 1, "
                    "repeat_penalty 1.0); does not stop at EOG",
        "n_threads": args.threads, "n_new": N_NEW, "cases": cases,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {args.out}")
    capital = next(c for c in cases if c["name"] == "capital")
    if not capital["greedy_text"].startswith(" Paris."):
        raise SystemExit(f"'The capital of France is' continued with {capital['greedy_text']!r}, not ' Paris.'")


if __name__ == "__main__":
    main()
