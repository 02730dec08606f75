"""Regenerates expected.json: every *.jinja here rendered by transformers'
own `render_jinja_template` for two conversations, with and without the
generation prompt; a template that raises is recorded as {"error": message}.
deepseek-r1-distill-qwen and mistral-small-3.1 are copies of
ggml-org/llama.cpp models/templates/ (DeepSeek-R1-Distill-Qwen-32B and
Mistral-Small-3.1-24B-Instruct-2503). smollm2/phi3/qwen2 templates come from the GGUF files
(`python generate.py --extract` rewrites them from <workspace>/.cache)."""
import json
import sys

from transformers.utils import chat_template_utils as ctu

if "--extract" in sys.argv:
    import gguf

    def tmpl(path):
        r = gguf.GGUFReader(path)
        f = r.fields["tokenizer.chat_template"]
        return bytes(f.parts[f.data[0]]).decode()

    for name, path in [
        ("smollm2", "../../../../../.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"),
        ("phi3", "../../../../../.cache/vocab/ggml-vocab-phi-3.gguf"),
        ("qwen2", "../../../../../.cache/vocab/ggml-vocab-qwen2.gguf"),
    ]:
        open(name + ".jinja", "w").write(tmpl(path))

system = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Hi! Who are you?"},
    {"role": "assistant", "content": "  A small model.  "},
    {"role": "user", "content": "Say 日本語 🙂"},
]
nosystem = system[1:]
cases = {}
names = ["smollm2", "phi3", "qwen2", "chatml", "llama3", "mistral",
         "deepseek-r1-distill-qwen", "mistral-small-3.1"]
for name in names:
    t = open(name + ".jinja").read()
    for conv_name, conv in [("system", system), ("nosystem", nosystem)]:
        if name == "mistral" and conv_name == "system":
            continue  # Mistral's template rejects a system turn
        if name == "mistral-small-3.1" and conv_name == "nosystem":
            continue  # the default system prompt contains today's date
        for agp in [True, False]:
            try:
                out = ctu.render_jinja_template(
                    conversations=[conv], chat_template=t, add_generation_prompt=agp,
                    bos_token="<s>", eos_token="</s>",
                )
                rendered = out[0][0] if isinstance(out, tuple) else out[0]
            except Exception as e:  # noqa: BLE001 - the template's own error
                rendered = {"error": str(e)}
            cases[f"{name}/{conv_name}/{agp}"] = rendered
json.dump(
    {"conversations": {"system": system, "nosystem": nosystem}, "expected": cases},
    open("expected.json", "w"), ensure_ascii=False, indent=1,
)
