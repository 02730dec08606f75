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

Teacher-forced distributions (what `llama-perplexity --kl-divergence` compares): the
sequence prompt + the 32 greedy ids is then evaluated again in ONE batch (`logits_all`,
prompt-processing path) and, at every position i (it predicts token i + 1; the last row
predicts a 33rd continuation token), `teacher_forced[i]` records llama.cpp's top-K
(K = 20) `[token id, log-probability]` pairs, largest first, log-softmax over the whole
vocabulary, rounded to 5 decimals, and `tf_margins[i]` the top1 - top2 log-prob gap.
`self_check` compares this batched pass with the step-by-step decode above (llama.cpp
uses different float orders in the two paths): how often their argmax agrees, the largest
|Δ logprob| of the decode argmax, the top-K KL(decode || batch) (K ids + one bucket for
the rest, as in the memwall test), and the largest decode margin at which the two argmaxes
differ: llama.cpp's own noise floor. Both passes run in one process, hence the same build
and thread count (`n_threads`, 1 by default, so the float order does not depend on how
rows are split between threads).

Run (after scripts/fetch-test-data.sh and `pip install llama-cpp-python==0.3.36`):

    python tools/llama_cpp_reference.py [--model .cache/models/SmolLM2-135M-Instruct.Q4_1.gguf]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
N_NEW = 32
TOP_K = 20
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


def log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    x = x - x.max()
    return x - np.log(np.exp(x).sum())


def top_k(lp: np.ndarray, k: int) -> list[int]:
    """Indices of the k largest, largest first (ties: lower id first)."""
    idx = np.argpartition(-lp, k)[:k]
    return sorted(idx.tolist(), key=lambda i: (-lp[i], i))


def kl_topk(p: np.ndarray, q: np.ndarray, k: int = TOP_K) -> float:
    """KL(p || q) over p's top-k ids plus one bucket for all other ids (the memwall test's
    approximation: a lower bound of the full-vocabulary KL, by the data-processing inequality)."""
    top = top_k(p, k)
    pp, qq = np.exp(p[top]), np.exp(q[top])
    kl = float(np.sum(pp * (p[top] - q[top])))
    p_rest, q_rest = max(1.0 - pp.sum(), 0.0), max(1.0 - qq.sum(), 1e-30)
    return kl + (p_rest * np.log(p_rest / q_rest) if p_rest > 0 else 0.0)


def main() -> None:
    cache = Path(os.environ.get("MEMWALL_CACHE", REPO / ".cache"))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=cache / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures" / "llama_cpp_greedy.json")
    ap.add_argument("--threads", type=int, default=1)
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
        greedy, margins, decode_lp = [], [], []
        for _ in range(N_NEW):
            logits = np.asarray(llm.scores[llm.n_tokens - 1], dtype=np.float32)
            top2 = np.argsort(logits)[-2:][::-1]
            greedy.append(int(top2[0]))
            margins.append(round(float(logits[top2[0]] - logits[top2[1]]), 4))
            decode_lp.append(log_softmax(logits))
            llm.eval([int(top2[0])])
        # Teacher-forced: the whole sequence in one batch, every position's logits.
        seq = [int(t) for t in ids] + greedy
        llm.reset()
        llm.eval(seq)
        batch_lp = [log_softmax(np.asarray(llm.scores[i], dtype=np.float32)) for i in range(len(seq))]
        teacher_forced, tf_margins = [], []
        for lp in batch_lp:
            top = top_k(lp, TOP_K)
            teacher_forced.append([[int(t), round(float(lp[t]), 5)] for t in top])
            tf_margins.append(round(float(lp[top[0]] - lp[top[1]]), 5))
        pairs = list(zip(decode_lp, batch_lp[len(ids) - 1:]))
        self_check = {
            "argmax_agree": sum(int(np.argmax(d) == np.argmax(b)) for d, b in pairs),
            "positions": len(pairs),
            "max_top1_logprob_diff": round(max(float(abs(d[np.argmax(d)] - b[np.argmax(d)])) for d, b in pairs), 6),
            "mean_kl_topk": round(float(np.mean([kl_topk(d, b) for d, b in pairs])), 8),
            "max_kl_topk": round(float(max(kl_topk(d, b) for d, b in pairs)), 8),
            # The largest decode-path margin at a step where the batched argmax differs.
            "max_margin_at_disagreement": max((m for m, (d, b) in zip(margins, pairs)
                                               if np.argmax(d) != np.argmax(b)), default=None),
        }
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
            "self_check": self_check, "tf_margins": tf_margins, "teacher_forced": teacher_forced,
        })
        print(f"{name:12s} prompt {len(ids)} tok (first id {ids[0]}) -> {text!r}")
        print(f"   batch vs decode: {self_check}")
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
        "teacher_forced": f"prompt_ids + greedy_ids evaluated in one batch (n_batch 512, logits_all); "
                          f"per position the top {TOP_K} [id, log-softmax] pairs, 5 decimals",
        "top_k": TOP_K, "n_threads": args.threads, "n_new": N_NEW, "cases": cases,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(out, indent=1, ensure_ascii=False)
    # One line per id list / [id, logprob] pair list: keeps the file small and diffable.
    text = re.sub(r"\[[-0-9.,\s]*\]", lambda m: re.sub(r"\s+", "", m.group(0)), text)
    text = re.sub(r"\[\s*(\[[-0-9.,]*\](?:,\s*\[[-0-9.,]*\])*)\s*\]",
                  lambda m: "[" + re.sub(r"\s+", "", m.group(1)) + "]", text)
    args.out.write_text(text + "\n")
    print(f"wrote {args.out}")
    capital = next(c for c in cases if c["name"] == "capital")
    if not capital["greedy_text"].startswith(" Paris."):
        raise SystemExit(f"'The capital of France is' continued with {capital['greedy_text']!r}, not ' Paris.'")


if __name__ == "__main__":
    main()
