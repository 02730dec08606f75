"""Regenerates this tiny Llama-2-style tokenizer.json (SentencePiece BPE with
`<0xXX>` byte fallback, `▁` for spaces, Strip decoder) and prints the ids the
Rust test `hf_spm_dir_matches_python_tokenizers` expects."""
import json

from tokenizers import Tokenizer

vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
for b in range(256):
    vocab[f"<0x{b:02X}>"] = len(vocab)
pieces = ["▁", "H", "e", "l", "o", "w", "r", "d", "!", "世", "界",
          "ll", "llo", "ello", "Hello", "▁Hello", "▁w", "or", "▁wor", "ld", "▁world"]
for p in pieces:
    vocab[p] = len(vocab)
merges = ["l l", "ll o", "e llo", "H ello", "▁ Hello", "▁ w", "o r", "▁w or", "l d", "▁wor ld"]
tj = {
    "version": "1.0",
    "truncation": None,
    "padding": None,
    "added_tokens": [
        {"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True}
        for t, i in [("<unk>", 0), ("<s>", 1), ("</s>", 2)]
    ],
    "normalizer": {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "▁"},
        {"type": "Replace", "pattern": {"String": " "}, "content": "▁"},
    ]},
    "pre_tokenizer": None,
    "post_processor": {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}},
    },
    "decoder": {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
        {"type": "ByteFallback"},
        {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0},
    ]},
    "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
              "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True,
              "vocab": vocab, "merges": merges},
}
json.dump(tj, open("tokenizer.json", "w"), ensure_ascii=False, indent=1)
json.dump({"bos_token": "<s>", "eos_token": "</s>"}, open("tokenizer_config.json", "w"), indent=1)

t = Tokenizer.from_file("tokenizer.json")
for s in ["Hello world!", "Hello 世界 é</s>"]:
    e = t.encode(s, add_special_tokens=False)
    print(repr(s), e.ids, repr(t.decode(e.ids, skip_special_tokens=False)))
print("with special", t.encode("Hello", add_special_tokens=True).ids)
