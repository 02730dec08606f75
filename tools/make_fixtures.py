#!/usr/bin/env python3
"""Build tiny random-weight model fixtures and their reference outputs.

For each architecture in ARCHS this script

1. trains a tiny real tokenizer (SentencePiece BPE with byte fallback for the
   SentencePiece families, byte-level BPE with the `tokenizers` library for the
   GPT-2 / Qwen families) on a fixed text (llama.cpp's README from the pinned
   llama-cpp-python sdist),
2. builds a Hugging Face `transformers` model from a tiny config, fills it with
   seeded random weights and saves it as a Hugging Face directory
   `tests/fixtures/models/<arch>/` (config.json, model.safetensors or two shards +
   index, tokenizer files, generation_config.json),
3. loads that directory back in float32 and records the reference outputs in
   `expected.json` (top-10 logits after every prompt position, all last-position
   logits, a 12-token greedy continuation) for a short and a long prompt,
4. converts the directory to GGUF with llama.cpp's own `convert_hf_to_gguf.py`
   (from the sdist, with its bundled gguf-py) into `tests/fixtures/models/<arch>.gguf`,
5. reads the GGUF back with gguf-py and writes the tensor tables into
   `tests/fixtures/README.md`.

With `--check-llama-cpp` it also evaluates every GGUF with llama-cpp-python and
compares its logits against expected.json.

Run (from the repo root, after scripts/fetch-test-data.sh):

    python tools/make_fixtures.py                      # all archs
    python tools/make_fixtures.py --only llama,gpt2    # a subset
    python tools/make_fixtures.py --check-llama-cpp    # + compare with llama.cpp

Needs torch, transformers, tokenizers, sentencepiece, safetensors, numpy.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SEED = 1234
MIN_MARGIN = 5e-3  # smallest accepted top1 - top2 logit gap along the greedy references
TOP_K = 10
N_GREEDY = 12
SHORT_LEN = 12
LONG_LEN = 40

# Text the prompts are tokenized from (the ids, not the text, are the contract).
PROMPT_TEXT = (
    "The quick brown fox jumps over the lazy dog. llama.cpp runs models on the CPU, "
    "and memwall counts the bytes: 1234 tokens per second? def main():\n    return 42\n"
    "Build with cmake -B build && cmake --build build --config Release -j 8."
)

QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content']"
    " + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
INST_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ message['content'] + eos_token }}{% else %}{{ message['content'] + '\\n\\n' }}{% endif %}{% endfor %}"
)
PHI3_TEMPLATE = (
    "{% for message in messages %}{{ '<|' + message['role'] + '|>' + '\\n' + message['content'] + '<|end|>' + '\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% else %}{{ eos_token }}{% endif %}"
)
GPT2_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] + ': ' + message['content'] + '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"
)

COMMON = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
              intermediate_size=128, max_position_embeddings=256)

# tok: tokenizer kind. dtype: safetensors dtype. shards: number of safetensors files.
# outtype: GGUF --outtype. pre: llama.cpp pre-tokenizer name for byte-level BPE vocabularies.
ARCHS: dict[str, dict] = {
    "llama": dict(
        tok="spm", dtype="float32", shards=1, outtype="f32", template=INST_TEMPLATE,
        config=dict(model_type="llama", **COMMON, rms_norm_eps=1e-5, tie_word_embeddings=False,
                    rope_parameters=dict(rope_type="llama3", rope_theta=10000.0, factor=8.0,
                                         low_freq_factor=1.0, high_freq_factor=4.0,
                                         original_max_position_embeddings=64)),
        note="Llama-3 rope scaling (factor 8, original ctx 64: head_dim 16 has rope dims "
             "unchanged, smoothed and divided by 8); GQA 4/2; SentencePiece vocab; f32"),
    "mistral": dict(
        tok="spm", dtype="bfloat16", shards=1, outtype="f32", template=INST_TEMPLATE,
        config=dict(model_type="mistral", **{**COMMON, "head_dim": 32}, rms_norm_eps=1e-5,
                    sliding_window=None, tie_word_embeddings=False,
                    rope_parameters=dict(rope_type="default", rope_theta=100000.0)),
        note="head_dim 32 != hidden/heads (q_proj is 128x64, like Mistral-Nemo); rope theta 1e5; "
             "bf16 safetensors (GGUF f32); converted to the llama GGUF architecture"),
    "qwen2": dict(
        tok="bpe", pre="qwen2", dtype="float16", shards=1, outtype="f16", template=CHATML_TEMPLATE,
        out_gain=4.0,  # tied: let the layers outweigh the token's own embedding (else greedy repeats it)
        config=dict(model_type="qwen2", **COMMON, rms_norm_eps=1e-6, tie_word_embeddings=True,
                    use_sliding_window=False,
                    rope_parameters=dict(rope_type="default", rope_theta=1000000.0)),
        note="q/k/v biases; tied embeddings (no output.weight); f16 safetensors and f16 GGUF; "
             "byte-level BPE with the qwen2 pre-tokenizer"),
    "qwen3": dict(
        tok="bpe", pre="qwen2", dtype="float32", shards=2, outtype="f32", template=CHATML_TEMPLATE,
        config=dict(model_type="qwen3", **{**COMMON, "head_dim": 16}, rms_norm_eps=1e-6,
                    tie_word_embeddings=False, use_sliding_window=False, attention_bias=False,
                    rope_parameters=dict(rope_type="default", rope_theta=1000000.0)),
        note="per-head q/k RMSNorm; untied; safetensors sharded in 2 files + index"),
    "phi3": dict(
        tok="spm-phi3", dtype="float32", shards=1, outtype="f32", template=PHI3_TEMPLATE,
        config=dict(model_type="phi3", **COMMON, rms_norm_eps=1e-5, tie_word_embeddings=False,
                    sliding_window=None, original_max_position_embeddings=256,
                    rope_parameters=dict(rope_type="default", rope_theta=10000.0)),
        note="fused qkv_proj and gate_up_proj (GGUF attn_qkv, ffn_up of 2*d_ff rows); GQA 4/2"),
    "gpt2": dict(
        tok="bpe", pre="gpt-2", dtype="float32", shards=1, outtype="f32", template=GPT2_TEMPLATE,
        out_gain=4.0,
        config=dict(model_type="gpt2", n_embd=64, n_layer=2, n_head=4, n_inner=None,
                    n_positions=256, activation_function="gelu_new", layer_norm_epsilon=1e-5,
                    tie_word_embeddings=True),
        note="LayerNorm with bias, learned positions, gelu (tanh), Conv1D weights stored "
             "(in, out) in safetensors; always tied"),
}

SPM_VOCAB = 512
BPE_VOCAB = 512


def log(msg: str) -> None:
    print(f"[make_fixtures] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- tokenizers

def corpus_lines(llama_cpp: Path) -> list[str]:
    text = (llama_cpp / "README.md").read_text(encoding="utf-8")
    text += "\n" + (llama_cpp / "docs" / "build.md").read_text(encoding="utf-8")
    text += "\n" + PROMPT_TEXT + "\n"
    return [line for line in text.splitlines() if line.strip()]


def make_spm_tokenizer(out: Path, lines: list[str], phi3: bool, template: str) -> dict:
    """SentencePiece BPE (Llama-style: byte fallback, split digits, dummy prefix)."""
    import sentencepiece as spm
    from transformers import LlamaTokenizer

    user_symbols = ["<|user|>", "<|assistant|>", "<|system|>", "<|end|>", "<|endoftext|>"] if phi3 else []
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
        spm.SentencePieceTrainer.train(
            input=str(corpus), model_prefix=str(Path(tmp) / "t"), vocab_size=SPM_VOCAB,
            model_type="bpe", byte_fallback=True, split_digits=True, add_dummy_prefix=True,
            normalization_rule_name="identity", remove_extra_whitespaces=False,
            allow_whitespace_only_pieces=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
            user_defined_symbols=user_symbols, num_threads=1, minloglevel=2,
            max_sentence_length=1 << 16, seed_sentencepiece_size=10000)
        (out / "tokenizer.model").write_bytes((Path(tmp) / "t.model").read_bytes())
    tok = LlamaTokenizer.from_pretrained(str(out))
    special = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    if phi3:
        tok.add_special_tokens({"additional_special_tokens": user_symbols})
        special["eos_token"] = "<|endoftext|>"
        tok.eos_token = "<|endoftext|>"
    tok.save_pretrained(str(out))
    legacy_spm_pipeline(out / "tokenizer.json")
    ids = {"bos_token_id": tok.convert_tokens_to_ids("<s>"),
           "eos_token_id": tok.convert_tokens_to_ids(special["eos_token"]),
           "vocab_size": SPM_VOCAB, "add_bos": True}
    finish_tokenizer_config(out, template, add_bos=True, tokenizer_class="PreTrainedTokenizerFast")
    return ids


def legacy_spm_pipeline(path: Path) -> None:
    """Make tokenizer.json tokenize exactly like the SentencePiece model (and llama.cpp).

    transformers 5 converts a SentencePiece model with a Metaspace pre-tokenizer
    (prepend_scheme "first"), which drops the dummy-prefix space in front of text that
    already starts with a space: " Hello" becomes "▁Hello", where sentencepiece gives
    "▁▁Hello". Llama-2's own tokenizer.json uses the normalizer below instead
    (prepend "▁", then spaces -> "▁", no pre-tokenizer), which agrees with sentencepiece.
    """
    tj = json.loads(path.read_text(encoding="utf-8"))
    tj["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "\u2581"},
        {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]}
    tj["pre_tokenizer"] = None
    path.write_text(json.dumps(tj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def make_bpe_tokenizer(out: Path, lines: list[str], pre: str, template: str) -> dict:
    """Byte-level BPE trained with `tokenizers`; pre-tokenizer matches llama.cpp's `pre`."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>"] if pre == "gpt-2" else ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tk = Tokenizer(models.BPE())
    if pre == "gpt-2":
        tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    elif pre == "qwen2":
        tk.normalizer = normalizers.NFC()
        tk.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    else:
        raise ValueError(pre)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=BPE_VOCAB, special_tokens=specials, min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tk.train_from_iterator(lines, trainer)
    tk.post_processor = None
    vocab_size = tk.get_vocab_size()
    fast = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<|endoftext|>",
                                   eos_token="<|im_end|>" if pre == "qwen2" else "<|endoftext|>",
                                   unk_token=None, pad_token="<|endoftext|>")
    fast.save_pretrained(str(out))
    finish_tokenizer_config(out, template, add_bos=False,
                            # loads tokenizer.json as-is in transformers 4 and 5 alike
                            tokenizer_class="PreTrainedTokenizerFast")
    return {"bos_token_id": tk.token_to_id("<|endoftext|>"),
            "eos_token_id": tk.token_to_id("<|im_end|>" if pre == "qwen2" else "<|endoftext|>"),
            "vocab_size": vocab_size, "add_bos": False}


def finish_tokenizer_config(out: Path, template: str, add_bos: bool,
                            tokenizer_class: str | None = None) -> None:
    """Put the chat template inside tokenizer_config.json (not a separate .jinja)."""
    path = out / "tokenizer_config.json"
    cfg = json.loads(path.read_text())
    if tokenizer_class:
        cfg["tokenizer_class"] = tokenizer_class
    cfg["chat_template"] = template
    cfg["add_bos_token"] = add_bos
    cfg["add_eos_token"] = False
    cfg["model_max_length"] = 256
    path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
    for extra in ("chat_template.jinja", "special_tokens_map.json"):
        if (out / extra).exists():
            (out / extra).unlink()


# ---------------------------------------------------------------- models

def build_model(arch: str, spec: dict, tok: dict, seed: int):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg_kwargs = dict(spec["config"])
    model_type = cfg_kwargs.pop("model_type")
    cfg_kwargs.update(vocab_size=tok["vocab_size"], bos_token_id=tok["bos_token_id"],
                      eos_token_id=tok["eos_token_id"])
    if model_type != "gpt2":
        cfg_kwargs["pad_token_id"] = None
    config = AutoConfig.for_model(model_type, **cfg_kwargs)
    config.architectures = [{"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
                             "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM",
                             "phi3": "Phi3ForCausalLM", "gpt2": "GPT2LMHeadModel"}[model_type]]
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32, attn_implementation="eager")
    gen = torch.Generator().manual_seed(seed + sum(map(ord, arch)))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1 and ("norm" in name or ".ln_" in name) and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))          # norm gains ~1
            elif p.dim() == 1:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))                # biases
            elif "embed_tokens" in name or "wte" in name or "lm_head" in name:
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))                # logit std ~2
            elif "wpe" in name:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            else:
                fan_in = p.shape[0] if arch == "gpt2" else p.shape[1]             # Conv1D is (in, out)
                gain = spec.get("out_gain", 1.0) if any(
                    k in name for k in ("o_proj", "down_proj", "c_proj")) else 1.0
                p.copy_(gain * torch.randn(p.shape, generator=gen) / fan_in ** 0.5)
        # round through the storage dtype so the in-memory model is exactly what gets saved
        storage = getattr(torch, spec["dtype"])
        for p in model.parameters():
            p.copy_(p.to(storage).to(torch.float32))
    if config.tie_word_embeddings:
        model.tie_weights()
    model.eval()
    model.generation_config.bos_token_id = tok["bos_token_id"]
    model.generation_config.eos_token_id = tok["eos_token_id"]
    model.generation_config.do_sample = False
    return model


def save_model(model, out: Path, spec: dict) -> None:
    import torch

    dtype = getattr(torch, spec["dtype"])
    model = model.to(dtype)
    total = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    kwargs = {}
    if spec["shards"] == 2:
        kwargs["max_shard_size"] = int(total * 0.6)
    model.save_pretrained(str(out), **kwargs)
    if spec["config"]["model_type"] == "gpt2":
        # llama.cpp's GPT-2 converter reads n_ctx, which OpenAI's gpt2 config.json has and
        # transformers 5 no longer writes.
        cfg_path = out / "config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["n_ctx"] = cfg["n_positions"]
        cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    files = sorted(p.name for p in out.glob("*.safetensors"))
    if len(files) != spec["shards"]:
        raise SystemExit(f"{out}: expected {spec['shards']} safetensors files, got {files}")
    model.to(torch.float32)


# ---------------------------------------------------------------- references

def reference_case(model, prompt_ids: list[int]) -> dict:
    import torch

    with torch.no_grad():
        logits = model(torch.tensor([prompt_ids])).logits[0].float()
        top = []
        for row in logits:
            vals, idx = torch.topk(row, TOP_K)
            top.append([[int(i), float(v)] for i, v in zip(idx, vals)])
        ids = list(prompt_ids)
        greedy, margins = [], []
        for _ in range(N_GREEDY):
            last = model(torch.tensor([ids])).logits[0, -1].float()
            vals, idx = torch.topk(last, 2)
            margins.append(float(vals[0] - vals[1]))
            greedy.append(int(idx[0]))
            ids.append(int(idx[0]))
    return {"prompt_ids": list(map(int, prompt_ids)), "top_logits": top,
            "last_logits": [float(x) for x in logits[-1]], "greedy_ids": greedy,
            "greedy_min_margin": min(margins),
            "logits_std": float(logits.std()), "top1_minus_top2_last": float(
                torch.topk(logits[-1], 2).values.diff().abs()[0])}


def prompts_for(out: Path, tok: dict) -> tuple[list[int], list[int]]:
    from transformers import AutoTokenizer

    t = AutoTokenizer.from_pretrained(str(out))
    ids = t(PROMPT_TEXT, add_special_tokens=True)["input_ids"]
    if tok["add_bos"] and ids[0] != tok["bos_token_id"]:
        ids = [tok["bos_token_id"]] + ids
    if len(ids) < LONG_LEN:
        raise SystemExit(f"{out}: prompt text gives only {len(ids)} tokens")
    return ids[:SHORT_LEN], ids[:LONG_LEN]


def write_expected(arch: str, spec: dict, out: Path, tok: dict, seed: int) -> dict:
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32,
                                                 attn_implementation="eager")
    model.eval()
    short, long = prompts_for(out, tok)
    cases = {"short": reference_case(model, short), "long": reference_case(model, long)}
    s = cases["short"]
    expected = {
        "arch": arch,
        "prompt_ids": s["prompt_ids"], "top_logits": s["top_logits"],
        "last_logits": s["last_logits"], "greedy_ids": s["greedy_ids"],
        "long": cases["long"],
        "greedy_min_margin": min(c["greedy_min_margin"] for c in cases.values()),
        "safetensors_dtype": spec["dtype"], "gguf": f"{arch}.gguf", "gguf_outtype": spec["outtype"],
        "add_bos": tok["add_bos"], "note": spec["note"],
        "transformers_version": transformers.__version__, "torch_version": torch.__version__,
        "seed": seed,
    }
    (out / "expected.json").write_text(json.dumps(expected) + "\n")
    log(f"{arch}: logits std {s['logits_std']:.2f}, last top1-top2 {s['top1_minus_top2_last']:.3f}, "
        f"greedy min margin {expected['greedy_min_margin']:.4f}, greedy {s['greedy_ids']}")
    return expected


# ---------------------------------------------------------------- GGUF

CONVERT_DRIVER = r"""
import sys, runpy
src, pre = sys.argv[1], sys.argv[2]
sys.path.insert(0, src)
sys.path.insert(1, src + '/gguf-py')
import conversion.base as base
if pre:
    # Our tiny BPE vocabularies hash to nothing the converter knows: say which
    # llama.cpp pre-tokenizer they were built with.
    base.TextModel.get_vocab_base_pre = lambda self, tokenizer: pre
sys.argv = [src + '/convert_hf_to_gguf.py'] + sys.argv[3:]
runpy.run_path(src + '/convert_hf_to_gguf.py', run_name='__main__')
"""


def convert_to_gguf(llama_cpp: Path, model_dir: Path, out: Path, spec: dict) -> None:
    cmd = [sys.executable, "-c", CONVERT_DRIVER, str(llama_cpp), spec.get("pre", ""),
           str(model_dir), "--outfile", str(out), "--outtype", spec["outtype"]]
    env = dict(os.environ, NO_LOCAL_GGUF="1")  # the driver puts the sdist's gguf-py first itself
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        sys.stderr.write(res.stdout + res.stderr)
        raise SystemExit(f"convert_hf_to_gguf failed for {model_dir}")


def gguf_reader_module(llama_cpp: Path):
    sys.path.insert(0, str(llama_cpp / "gguf-py"))
    import gguf  # noqa: E402  (the sdist's copy, matching the converter)
    return gguf


def inspect_gguf(gguf, path: Path) -> dict:
    reader = gguf.GGUFReader(str(path))
    tensors = [(t.name, [int(x) for x in t.shape], t.tensor_type.name) for t in reader.tensors]
    kv = {}
    for field in reader.fields.values():
        if field.name.startswith("tokenizer.ggml.") and field.name.split(".")[-1] in (
                "tokens", "scores", "token_type", "merges"):
            kv[field.name] = f"[{len(field.data)} items]"
            continue
        try:
            val = field.contents()
        except Exception:  # noqa: BLE001
            val = "?"
        if isinstance(val, str) and len(val) > 60:
            val = val[:57] + "..."
        kv[field.name] = val
    return {"tensors": tensors, "kv": kv}


_LLAMA_BLOCK = ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
                "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"]
# GGUF tensors each fixture must have: (per-block weights, per-block biases, global weights)
EXPECTED_TENSORS = {
    "llama": (_LLAMA_BLOCK, [], ["token_embd", "output_norm", "output", "rope_freqs"]),
    "mistral": (_LLAMA_BLOCK, [], ["token_embd", "output_norm", "output"]),
    "qwen2": (_LLAMA_BLOCK, ["attn_q", "attn_k", "attn_v"], ["token_embd", "output_norm"]),
    "qwen3": (_LLAMA_BLOCK + ["attn_q_norm", "attn_k_norm"], [], ["token_embd", "output_norm", "output"]),
    "phi3": (["attn_norm", "attn_qkv", "attn_output", "ffn_norm", "ffn_up", "ffn_down"], [],
             ["token_embd", "output_norm", "output"]),
    "gpt2": (["attn_norm", "attn_qkv", "attn_output", "ffn_norm", "ffn_up", "ffn_down"],
             ["attn_norm", "attn_qkv", "attn_output", "ffn_norm", "ffn_up", "ffn_down"],
             ["token_embd", "position_embd", "output_norm"]),
}


def check_tensor_names(arch: str, info: dict, n_layers: int = 2) -> None:
    weights, biases, globals_ = EXPECTED_TENSORS[arch]
    want = {f"{g}.weight" for g in globals_}
    if arch == "gpt2":
        want.add("output_norm.bias")
    for b in range(n_layers):
        want |= {f"blk.{b}.{w}.weight" for w in weights} | {f"blk.{b}.{w}.bias" for w in biases}
    have = {name for name, _, _ in info["tensors"]}
    if have != want:
        raise SystemExit(f"{arch}.gguf tensors: missing {sorted(want - have)}, unexpected {sorted(have - want)}")


# ---------------------------------------------------------------- llama.cpp check

def check_llama_cpp(arch: str, gguf_path: Path, expected: dict) -> dict:
    from lcp_util import open_llama

    # f32 KV cache: llama.cpp's default f16 cache alone costs ~3e-3 in these logits
    llm = open_llama(str(gguf_path), n_ctx=256, n_batch=256, logits_all=True,
                     n_threads=2, verbose=False, seed=0, type_k=0, type_v=0)  # 0 = GGML_TYPE_F32
    result = {}
    for name, case in (("short", expected), ("long", expected["long"])):
        llm.reset()
        ids = case["prompt_ids"]
        llm.eval(ids)
        scores = np.array(llm.scores[: len(ids)], dtype=np.float64)
        err_top = max(abs(scores[pos, i] - v) for pos, row in enumerate(case["top_logits"])
                      for i, v in row)
        err_last = float(np.max(np.abs(scores[-1] - np.array(case["last_logits"]))))
        # greedy with llama.cpp (argmax of its own logits)
        llm.reset()
        toks = list(ids)
        greedy = []
        llm.eval(toks)
        for _ in range(N_GREEDY):
            nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            greedy.append(nxt)
            llm.eval([nxt])
        result[name] = {"max_abs_err_top": float(err_top), "max_abs_err_last": err_last,
                        "greedy_match": greedy == case["greedy_ids"], "greedy": greedy}
    del llm
    return result


# ---------------------------------------------------------------- README

def readme_tables(infos: dict[str, dict], checks: dict[str, dict]) -> str:
    lines = []
    for arch, info in infos.items():
        spec = ARCHS[arch]
        lines.append(f"### {arch}\n")
        lines.append(f"{spec['note']}.\n")
        sizes = info["sizes"]
        lines.append("Files: " + ", ".join(f"`{k}` {v:,} B" for k, v in sizes.items()) + "\n")
        kv = info["kv"]
        keys = [k for k in kv if not k.startswith("general.") or k in ("general.architecture",)]
        lines.append("<details><summary>GGUF metadata</summary>\n\n| key | value |\n|---|---|")
        for k in keys:
            v = str(kv[k]).replace("|", "\\|").replace("\n", "\\n")
            lines.append(f"| `{k}` | {v} |")
        lines.append("\n</details>\n")
        lines.append("| GGUF tensor | shape (ne0, ne1) | type |\n|---|---|---|")
        for name, shape, typ in info["tensors"]:
            lines.append(f"| `{name}` | {tuple(shape)} | {typ} |")
        if arch in checks:
            c = checks[arch]
            lines.append("\nllama.cpp (llama-cpp-python) vs transformers: " + "; ".join(
                f"{n}: max |Δlogit| top-10 {r['max_abs_err_top']:.2e}, last row {r['max_abs_err_last']:.2e}, "
                f"greedy {'matches' if r['greedy_match'] else 'DIFFERS'}" for n, r in c.items()))
        lines.append("")
    return "\n".join(lines)


def write_readme(fixtures: Path, infos: dict, checks: dict) -> None:
    path = fixtures / "README.md"
    head = (path.read_text().split("<!-- tables -->")[0] if path.exists() else "# tests/fixtures\n\n")
    path.write_text(head.rstrip() + "\n\n<!-- tables -->\n" + readme_tables(infos, checks))


# ---------------------------------------------------------------- main

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="", help="comma-separated archs (default: all)")
    ap.add_argument("--fixtures", type=Path, default=REPO / "tests" / "fixtures")
    ap.add_argument("--llama-cpp", type=Path,
                    default=Path(os.environ.get("MEMWALL_CACHE", REPO / ".cache")) / "llama.cpp-src",
                    help="llama.cpp source tree (vendor/llama.cpp of the llama-cpp-python sdist)")
    ap.add_argument("--check-llama-cpp", action="store_true",
                    help="also compare each GGUF's logits from llama-cpp-python with expected.json")
    ap.add_argument("--check-only", action="store_true",
                    help="skip generation; only run the llama.cpp check on existing fixtures")
    args = ap.parse_args()
    if not (args.llama_cpp / "convert_hf_to_gguf.py").exists():
        raise SystemExit(f"{args.llama_cpp}: no convert_hf_to_gguf.py; run scripts/fetch-test-data.sh")

    archs = [a for a in args.only.split(",") if a] or list(ARCHS)
    models_dir = args.fixtures / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    gguf = gguf_reader_module(args.llama_cpp)
    lines = corpus_lines(args.llama_cpp)
    infos_path = args.fixtures / "models" / "gguf_tensors.json"
    infos = json.loads(infos_path.read_text()) if infos_path.exists() else {}
    checks_path = args.fixtures / "models" / "llama_cpp_check.json"
    checks = json.loads(checks_path.read_text()) if checks_path.exists() else {}

    for arch in archs:
        spec = ARCHS[arch]
        out = models_dir / arch
        gguf_path = models_dir / f"{arch}.gguf"
        if not args.check_only:
            log(f"{arch}: building")
            if out.exists():
                for p in out.iterdir():
                    p.unlink()
            out.mkdir(parents=True, exist_ok=True)
            if spec["tok"].startswith("spm"):
                tok = make_spm_tokenizer(out, lines, spec["tok"] == "spm-phi3", spec["template"])
            else:
                tok = make_bpe_tokenizer(out, lines, spec["pre"], spec["template"])
            # A random model can have near-ties between its top two logits; a greedy
            # reference is only useful when the winner is clear, so try seeds until it is.
            short, long = prompts_for(out, tok)
            for seed in range(SEED, SEED + 50):
                model = build_model(arch, spec, tok, seed)
                refs = [reference_case(model, p) for p in (short, long)]
                margin = min(r["greedy_min_margin"] for r in refs)
                distinct = min(len(set(r["greedy_ids"])) for r in refs)
                if margin >= MIN_MARGIN and distinct >= 4:
                    break
                log(f"{arch}: seed {seed}: greedy margin {margin:.2e} (need {MIN_MARGIN}), "
                    f"{distinct} distinct greedy ids (need 4): next seed")
            save_model(model, out, spec)
            del model
            write_expected(arch, spec, out, tok, seed)
            log(f"{arch}: converting to GGUF ({spec['outtype']})")
            convert_to_gguf(args.llama_cpp, out, gguf_path, spec)
            info = inspect_gguf(gguf, gguf_path)
            check_tensor_names(arch, info)
            sizes = {p.name: p.stat().st_size for p in sorted(out.iterdir())}
            sizes[gguf_path.name] = gguf_path.stat().st_size
            info["sizes"] = sizes
            total = sum(sizes.values())
            log(f"{arch}: {total:,} bytes in total, {len(info['tensors'])} GGUF tensors")
            if total > 3_000_000:
                raise SystemExit(f"{arch}: fixture is {total} bytes (> 3 MB)")
            infos[arch] = info
        if args.check_llama_cpp or args.check_only:
            expected = json.loads((out / "expected.json").read_text())
            checks[arch] = check_llama_cpp(arch, gguf_path, expected)
            log(f"{arch}: llama.cpp check {json.dumps(checks[arch])}")

    infos = {a: infos[a] for a in ARCHS if a in infos}
    infos_path.write_text(json.dumps(infos, indent=1, default=str) + "\n")
    checks = {a: checks[a] for a in ARCHS if a in checks}
    if checks:
        checks_path.write_text(json.dumps(checks, indent=1) + "\n")
    write_readme(args.fixtures, infos, checks)


if __name__ == "__main__":
    main()
