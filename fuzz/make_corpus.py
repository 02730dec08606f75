#!/usr/bin/env python3
"""Writes the committed seed corpora in fuzz/corpus/<target>/.

    python3 fuzz/make_corpus.py

Seeds are small (a few KB at most) so libFuzzer's default -max_len stays
small and mutations stay fast. GGUF and safetensors seeds are built here
byte by byte; config.json and chat-template seeds come from the committed
fixtures in tests/fixtures/models/. Re-running overwrites the same files.
"""
import json
import os
import struct

ROOT = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(ROOT, "..", "tests", "fixtures", "models")
ARCHS = ["llama", "mistral", "qwen2", "qwen3", "phi3", "gpt2"]


def write(target, name, data):
    d = os.path.join(ROOT, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---------------------------------------------------------------- GGUF
U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)


def gstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def gval(t, v):
    fmt = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f", BOOL: "<?",
           U64: "<Q", I64: "<q", F64: "<d"}
    if t == STRING:
        return gstr(v)
    if t == ARRAY:
        et, items = v
        return struct.pack("<IQ", et, len(items)) + b"".join(gval(et, x) for x in items)
    return struct.pack(fmt[t], v)


def gguf(kvs, tensors, alignment=32):
    """kvs: [(key, type, value)]; tensors: [(name, dims, ggml_type, data bytes)]."""
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs))
    for k, t, v in kvs:
        out += gstr(k) + struct.pack("<I", t) + gval(t, v)
    offset = 0
    blobs = b""
    for name, dims, gtype, data in tensors:
        out += gstr(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", gtype, offset)
        pad = (-len(data)) % alignment
        blobs += data + b"\0" * pad
        offset += len(data) + pad
    out += b"\0" * ((-len(out)) % alignment)
    return out + blobs


def f32s(n):
    return struct.pack(f"<{n}f", *[0.25 * (i % 7) for i in range(n)])


def spm_vocab():
    toks = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in (0x0A, 0x20, 0x41)]
    toks += ["\u2581", "\u2581the", "\u2581a", "h", "e", "l", "o", "\u2581hello", "\u2581world", "w", "r", "d", "!"]
    types = [2, 3, 3] + [6] * 3 + [1] * (len(toks) - 6)
    return [
        ("tokenizer.ggml.model", STRING, "llama"),
        ("tokenizer.ggml.tokens", ARRAY, (STRING, toks)),
        ("tokenizer.ggml.scores", ARRAY, (F32, [-float(i) for i in range(len(toks))])),
        ("tokenizer.ggml.token_type", ARRAY, (I32, types)),
        ("tokenizer.ggml.bos_token_id", U32, 1),
        ("tokenizer.ggml.eos_token_id", U32, 2),
        ("tokenizer.ggml.unknown_token_id", U32, 0),
        ("tokenizer.ggml.add_bos_token", BOOL, True),
        ("tokenizer.chat_template", STRING, "{% for m in messages %}{{ m['content'] }}{% endfor %}"),
    ]


def bpe_vocab():
    toks = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + [chr(c) for c in range(ord("a"), ord("k"))]
    toks += ["\u0120", "\u0120a", "ab", "cd", "abcd", "\u010a"]
    merges = ["\u0120 a", "a b", "c d", "ab cd"]
    return [
        ("tokenizer.ggml.model", STRING, "gpt2"),
        ("tokenizer.ggml.pre", STRING, "qwen2"),
        ("tokenizer.ggml.tokens", ARRAY, (STRING, toks)),
        ("tokenizer.ggml.token_type", ARRAY, (I32, [3, 3, 3] + [1] * (len(toks) - 3))),
        ("tokenizer.ggml.merges", ARRAY, (STRING, merges)),
        ("tokenizer.ggml.eos_token_id", U32, 2),
    ]


def arch_keys(arch, vocab):
    return [
        ("general.architecture", STRING, arch),
        ("general.name", STRING, "tiny"),
        (f"{arch}.context_length", U32, 64),
        (f"{arch}.embedding_length", U32, 8),
        (f"{arch}.block_count", U32, 1),
        (f"{arch}.feed_forward_length", U32, 16),
        (f"{arch}.attention.head_count", U32, 2),
        (f"{arch}.attention.head_count_kv", ARRAY, (U32, [1])),
        (f"{arch}.attention.layer_norm_rms_epsilon", F32, 1e-5),
        (f"{arch}.rope.freq_base", F32, 10000.0),
        (f"{arch}.vocab_size", U32, vocab),
    ]


def gguf_seeds():
    write("gguf", "empty", gguf([], []))
    write("gguf", "all_value_types", gguf([
        ("u8", U8, 1), ("i8", I8, -1), ("u16", U16, 2), ("i16", I16, -2), ("u32", U32, 3), ("i32", I32, -3),
        ("f32", F32, 0.5), ("bool", BOOL, True), ("string", STRING, "s\xe9"), ("u64", U64, 4), ("i64", I64, -4),
        ("f64", F64, 0.25), ("nested", ARRAY, (ARRAY, [(U8, [1, 2]), (STRING, ["x"])])),
        ("general.alignment", U32, 64),
    ], [("a", [4, 2], 0, f32s(8)), ("b", [32], 8, b"\0\x3c" + bytes(range(32)))], alignment=64))
    write("gguf", "llama_spm", gguf(arch_keys("llama", 19) + spm_vocab(), [
        ("token_embd.weight", [8, 19], 0, f32s(8 * 19)),
    ]))
    write("gguf", "qwen2_bpe", gguf(arch_keys("qwen2", 19) + bpe_vocab(), [
        ("output_norm.weight", [8], 0, f32s(8)), ("blk.0.attn_q.weight", [8, 8], 1, b"\0\x3c" * 64),
    ]))


# ---------------------------------------------------------------- safetensors
def safetensors(entries, metadata=None):
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    data = b""
    for name, dtype, shape, blob in entries:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
    h = json.dumps(header).encode()
    h += b" " * ((-len(h)) % 8)
    return struct.pack("<Q", len(h)) + h + data


def safetensors_seeds():
    write("safetensors", "empty_header", safetensors([]))
    write("safetensors", "two_tensors", safetensors([
        ("model.embed_tokens.weight", "F32", [4, 2], f32s(8)),
        ("model.norm.weight", "BF16", [4], b"\x80\x3f" * 4),
    ], metadata={"format": "pt"}))
    write("safetensors", "odd_dtypes", safetensors([
        ("a", "I64", [2], b"\1" * 16), ("b", "F4", [4], b"\x12\x34"), ("c", "BOOL", [0], b""),
        ("d", "F8_E4M3", [1, 3], b"abc"),
    ]))


# ---------------------------------------------------------------- config.json
def hf_config_seeds():
    for arch in ARCHS:
        with open(os.path.join(FIXTURES, arch, "config.json"), "rb") as f:
            write("hf_config", arch, f.read())
    write("hf_config", "llama3_rope_scaling", json.dumps({
        "model_type": "llama", "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2,
        "num_hidden_layers": 2, "intermediate_size": 128, "vocab_size": 300, "max_position_embeddings": 256,
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 32},
        "partial_rotary_factor": 0.5,
    }))
    # Regression (crates/model/src/config.rs, r_gpt2_huge_n_embd_is_an_error_not_an_overflow).
    write("hf_config", "gpt2_huge_n_embd", json.dumps({
        "model_type": "gpt2", "n_embd": 2**63 - 1, "n_head": 1, "n_layer": 1, "vocab_size": 10, "n_positions": 8,
    }))


# ---------------------------------------------------------------- tokenizer
def tokenizer_seeds():
    # The target reads its input through `arbitrary`; any bytes are valid
    # input, and text seeds give the mutator real words and scripts to work with.
    texts = [
        "Hello world! 123 4567",
        " leading spaces\n\n\ttabs and <s> </s> <|im_start|>user\n<|im_end|>",
        "\u00e9\u00e8 \u4e2d\u6587 \U0001f600 \u0627\u0644\u0639\u0631\u0628\u064a\u0629 \u0928\u092e\u0938\u094d\u0924\u0947",
        "don't I'll we've   x\r\ny",
    ]
    for i, t in enumerate(texts):
        for mode in range(3):
            write("tokenizer", f"text{i}_mode{mode}", bytes([mode * 90, i]) + t.encode())


# ---------------------------------------------------------------- chat templates
HOSTILE = [
    "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
    "{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}",
    "{{ 'x' * 1000 }}{% set s = namespace(v='') %}{% for i in range(50) %}{% set s.v = s.v ~ 'a' %}{% endfor %}{{ s.v }}",
    "{{ messages | tojson(indent=4) }}{{ raise_exception('no') }}",
    "{% for m in messages %}{{ m.content.strip().split(' ') | join('|') }}{{ m.items() | list }}{% endfor %}",
    "{{ strftime_now('%Y-%m-%d %-d %j %A') }}{% generation %}x{% endgeneration %}",
]


def chat_template_seeds():
    msgs = b"\0system\x01Be brief.\0user\x01Hi there\0assistant\x01Hello!\0user\x01And now?"
    for arch in ARCHS:
        with open(os.path.join(FIXTURES, arch, "tokenizer_config.json")) as f:
            tmpl = json.load(f).get("chat_template")
        if tmpl:
            write("chat_template", arch, b"\x01" + tmpl.encode() + msgs)
    for i, t in enumerate(HOSTILE):
        write("chat_template", f"hostile{i}", b"\x01" + t.encode() + msgs)


# ---------------------------------------------------------------- HTTP bodies
def http_params_seeds():
    bodies = {
        "chat": {"model": "m", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 16,
                 "temperature": 0.7, "top_p": 0.9, "stream": True, "stream_options": {"include_usage": True}},
        "completion": {"prompt": "Once upon", "max_tokens": 8, "n": 2, "stop": ["\n", "END"], "seed": 42,
                       "top_k": 40, "min_p": 0.05, "logprobs": 0},
        "penalties": {"prompt": [1, 2, 3], "presence_penalty": 1.5, "frequency_penalty": -1.0,
                      "repetition_penalty": 1.1, "max_completion_tokens": 4, "ignore_eos": True, "stop": "x"},
        "logprobs": {"messages": [], "logprobs": True, "top_logprobs": 5, "user": "u"},
    }
    for name, body in bodies.items():
        write("http_params", name, json.dumps(body))
    write("http_params", "not_an_object", "[1, 2, {\"a\": null}]")


if __name__ == "__main__":
    gguf_seeds()
    safetensors_seeds()
    hf_config_seeds()
    tokenizer_seeds()
    chat_template_seeds()
    http_params_seeds()
