"""Regenerates this tiny tokenizer.json fixture (run with a Python that has
`tokenizers`). The expected ids in tests/vocab_vectors.rs
(`hf_dir_matches_python_tokenizers`) are printed at the end."""
import json

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
corpus = [
    "Hello world! The quick brown fox jumps over the lazy dog.",
    "Tokenizers turn text into numbers; numbers back into text.",
    "日本語のテキスト and emoji 🙂 too. Ünïcödé is fine.",
    "hello hello world world the the of of and and",
] * 20
trainer = trainers.BpeTrainer(
    vocab_size=300,
    special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
    initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    show_progress=False,
)
tok.train_from_iterator(corpus, trainer)
tok.post_processor = processors.ByteLevel(trim_offsets=False)
tok.save("tokenizer.json")
json.dump(
    {
        "bos_token": "<|endoftext|>",
        "eos_token": "<|im_end|>",
        "add_bos_token": False,
        "chat_template": "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
    },
    open("tokenizer_config.json", "w"),
    indent=1,
)
json.dump({"bos_token_id": 0, "eos_token_id": [2, 0]}, open("generation_config.json", "w"), indent=1)

t = Tokenizer.from_file("tokenizer.json")
for s in ["Hello world!", "<|im_start|>user\nhi 🙂<|im_end|>", "日本語 text"]:
    print(repr(s), t.encode(s, add_special_tokens=False).ids)
t.encode_special_tokens = True
print("literal", t.encode("<|im_start|>user\nhi 🙂<|im_end|>", add_special_tokens=False).ids)
