"""The official `openai` Python client against a running `memwall serve`.

Run by scripts/test-openai-client.sh, which starts the server and sets
MEMWALL_BASE_URL (e.g. http://127.0.0.1:PORT/v1), MEMWALL_API_KEY and
MEMWALL_MODEL (or pass --base-url, --api-key, --model). Plain asserts, no
test framework: exits non-zero on failure.

With --reference URL (scripts/test-mpi.sh: a split model under mpirun
against one process on the same model), three greedy chat replies from the
server under test, non-streaming and streaming, must equal the reference
server's (with --tie-tolerance, a reply may leave the reference's at a near
tie), and the three at once must answer as one at a time; --reference-only
skips the rest of the suite.
"""

import argparse
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import openai
from openai import OpenAI


def parse_args():
    p = argparse.ArgumentParser(description="The openai client against memwall serve.")
    p.add_argument("--base-url", default=os.environ.get("MEMWALL_BASE_URL"), help="the server under test, .../v1")
    p.add_argument("--api-key", default=os.environ.get("MEMWALL_API_KEY", "unused"))
    p.add_argument("--model", default=os.environ.get("MEMWALL_MODEL"), help="the served model name")
    p.add_argument("--reference", metavar="URL", help="a server whose greedy chat replies must be the same")
    p.add_argument(
        "--tie-tolerance",
        type=float,
        default=0.0,
        metavar="NATS",
        help="a reply may leave the reference's at a token whose logprob under the reference is within NATS "
        "of the reference's choice (default 0: the same text)",
    )
    p.add_argument("--reference-only", action="store_true", help="only compare with --reference")
    args = p.parse_args()
    if not args.base_url or not args.model:
        p.error("give --base-url and --model (or MEMWALL_BASE_URL and MEMWALL_MODEL)")
    if (args.reference_only or args.tie_tolerance) and not args.reference:
        p.error("--reference-only and --tie-tolerance need --reference URL")
    return args


ARGS = parse_args()
BASE_URL = ARGS.base_url
API_KEY = ARGS.api_key
MODEL = ARGS.model

client = OpenAI(base_url=BASE_URL, api_key=API_KEY, max_retries=0, timeout=120)


def check(name, fn):
    fn()
    print(f"ok   {name}", flush=True)


def models_list():
    ids = [m.id for m in client.models.list()]
    assert ids == [MODEL], ids


def chat_non_streaming():
    r = client.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
        max_tokens=24,
        temperature=0,
        seed=1,
    )
    assert r.object == "chat.completion", r
    assert len(r.choices) == 1
    c = r.choices[0]
    assert c.message.role == "assistant"
    assert isinstance(c.message.content, str) and c.message.content.strip(), c
    assert c.finish_reason in ("stop", "length"), c.finish_reason
    assert r.usage.prompt_tokens > 10 and 0 < r.usage.completion_tokens <= 24, r.usage
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    print(f"     chat says: {c.message.content.strip()!r}")


def chat_streaming():
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Count from one to five."}],
        max_tokens=16,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    text, finish, usage, roles = [], None, None, []
    for chunk in stream:
        assert chunk.object == "chat.completion.chunk", chunk
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.role:
                roles.append(choice.delta.role)
            if choice.delta.content:
                text.append(choice.delta.content)
            if choice.finish_reason:
                finish = choice.finish_reason
    assert roles == ["assistant"], roles
    assert "".join(text).strip(), text
    assert finish in ("stop", "length"), finish
    assert usage is not None and 0 < usage.completion_tokens <= 16, usage
    # Greedy: the same text as without streaming.
    r = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Count from one to five."}],
        max_tokens=16,
        temperature=0,
    )
    assert r.choices[0].message.content == "".join(text), (r.choices[0].message.content, "".join(text))


def completions():
    r = client.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=8, temperature=0)
    assert r.object == "text_completion", r
    assert r.choices[0].text, r
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.completion_tokens > 0
    streamed = "".join(
        c.choices[0].text
        for c in client.completions.create(
            model=MODEL, prompt="The capital of France is", max_tokens=8, temperature=0, stream=True
        )
        if c.choices
    )
    assert streamed == r.choices[0].text, (streamed, r.choices[0].text)


def n_and_stop():
    r = client.completions.create(
        model=MODEL, prompt="1, 2, 3,", max_tokens=12, n=2, seed=5, temperature=0.7, stop=["\n", "9"]
    )
    assert len(r.choices) == 2 and [c.index for c in r.choices] == [0, 1], r
    for c in r.choices:
        assert "9" not in c.text and "\n" not in c.text, c.text


def check_chat_token(t, top_n):
    assert isinstance(t.token, str) and isinstance(t.bytes, list), t
    assert t.logprob <= 0.0 and all(0 <= b < 256 for b in t.bytes), t
    assert len(t.top_logprobs) == top_n, t
    lps = [a.logprob for a in t.top_logprobs]
    assert lps == sorted(lps, reverse=True), lps
    # Greedy: the chosen token is the most likely one.
    assert t.logprob == lps[0] and t.token == t.top_logprobs[0].token, t


def chat_logprobs():
    args = dict(
        model=MODEL,
        messages=[{"role": "user", "content": "Name three colours."}],
        max_tokens=10,
        temperature=0,
        logprobs=True,
        top_logprobs=3,
    )
    r = client.chat.completions.create(**args)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens, (len(content), r.usage)
    for t in content:
        check_chat_token(t, 3)
    # The bytes of the tokens make up the text (a SentencePiece tokenizer may
    # drop the first token's leading space from the text).
    joined = b"".join(bytes(t.bytes) for t in content).decode("utf-8", errors="replace")
    text = r.choices[0].message.content
    assert text in (joined, joined[1:]) or r.choices[0].finish_reason == "stop", (text, joined)
    streamed = []
    for chunk in client.chat.completions.create(**args, stream=True):
        for choice in chunk.choices:
            if choice.logprobs is not None and choice.logprobs.content:
                streamed.extend(choice.logprobs.content)
    assert [(t.token, t.logprob, t.bytes) for t in streamed] == [(t.token, t.logprob, t.bytes) for t in content]
    assert [[a.token for a in t.top_logprobs] for t in streamed] == [[a.token for a in t.top_logprobs] for t in content]
    plain = client.chat.completions.create(**{**args, "logprobs": False, "top_logprobs": None})
    assert plain.choices[0].logprobs is None, plain.choices[0]


def completions_logprobs():
    args = dict(model=MODEL, prompt="The capital of France is", max_tokens=6, temperature=0, logprobs=2)
    r = client.completions.create(**args)
    lp = r.choices[0].logprobs
    n = r.usage.completion_tokens
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == n, lp
    assert lp.text_offset[0] == 0 and lp.text_offset == sorted(lp.text_offset), lp.text_offset
    for token, logprob, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        assert isinstance(token, str) and logprob <= 0.0, (token, logprob)
        assert 1 <= len(top) <= 2 and logprob == max(top.values()), (token, logprob, top)
    streamed = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
    for chunk in client.completions.create(**args, stream=True):
        for choice in chunk.choices:
            if choice.logprobs is not None:
                for key in streamed:
                    streamed[key].extend(getattr(choice.logprobs, key))
    for key, values in streamed.items():
        assert values == getattr(lp, key), (key, values, getattr(lp, key))


def errors():
    try:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], temperature=-1)
        raise AssertionError("temperature=-1 was accepted")
    except openai.BadRequestError as e:
        assert e.status_code == 400
        assert e.body["param"] == "temperature", e.body
    try:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], top_logprobs=2)
        raise AssertionError("top_logprobs without logprobs was accepted")
    except openai.BadRequestError as e:
        assert e.status_code == 400 and e.body["param"] == "top_logprobs", e.body
    try:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
        raise AssertionError("an unknown model was accepted")
    except openai.NotFoundError as e:
        assert e.status_code == 404 and e.body["code"] == "model_not_found", e.body
    bad = OpenAI(base_url=BASE_URL, api_key="wrong-key", max_retries=0)
    try:
        bad.models.list()
        raise AssertionError("a wrong API key was accepted")
    except openai.AuthenticationError as e:
        assert e.status_code == 401


# Greedy chat requests for the comparisons with --reference.
SAME_CHATS = [
    [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is the capital of France?"},
    ],
    [{"role": "user", "content": "Count from one to five."}],
    [{"role": "user", "content": "Name three colours."}],
]


def greedy_chat(c, messages, stream=False):
    """(text, finish_reason, completion_tokens) of a greedy chat reply from client `c`."""
    args = dict(model=MODEL, messages=messages, max_tokens=24, temperature=0, seed=1)
    if not stream:
        r = c.chat.completions.create(**args)
        return r.choices[0].message.content, r.choices[0].finish_reason, r.usage.completion_tokens
    text, finish, usage = [], None, None
    for chunk in c.chat.completions.create(**args, stream=True, stream_options={"include_usage": True}):
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            text.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    assert usage is not None, "no usage chunk"
    return "".join(text), finish, usage.completion_tokens


def greedy_chat_tokens(c, messages):
    """The greedy reply's text and tokens, each with its logprob and top 5."""
    r = c.chat.completions.create(
        model=MODEL, messages=messages, max_tokens=24, temperature=0, seed=1, logprobs=True, top_logprobs=5
    )
    return r.choices[0].message.content, r.choices[0].logprobs.content


def equal_up_to_a_near_tie(messages, ref):
    """The reply equals the reference's, or leaves it at a token the
    reference ranks within --tie-tolerance of its own choice (a near tie
    that a split's other order of additions may tip)."""
    want_text, want = greedy_chat_tokens(ref, messages)
    got_text, got = greedy_chat_tokens(client, messages)
    if got_text == want_text:
        return
    assert ARGS.tie_tolerance > 0, ("non-streaming", got_text, want_text)
    i = next((i for i, (g, w) in enumerate(zip(got, want)) if g.token != w.token), min(len(got), len(want)))
    assert i < min(len(got), len(want)), ("one reply stops early", got_text, want_text)
    top = {t.token: t.logprob for t in want[i].top_logprobs}
    gap = want[i].logprob - top.get(got[i].token, float("-inf"))
    why = f"token {i}: {got[i].token!r} is {gap:.3f} below the reference's {want[i].token!r}"
    assert gap <= ARGS.tie_tolerance, (why, got_text, want_text)
    print(f"     {why} (a near tie) in {want_text!r}")


def same_as_reference():
    ref = OpenAI(base_url=ARGS.reference, api_key=API_KEY, max_retries=0, timeout=120)
    want = [greedy_chat(ref, m) for m in SAME_CHATS]
    print(f"     reference {ARGS.reference} says: {want[0][0]!r}")
    assert all(n > 0 for _, _, n in want), want
    for messages, w in zip(SAME_CHATS, want):
        got = greedy_chat(client, messages)
        if got != w:
            equal_up_to_a_near_tie(messages, ref)
        assert greedy_chat(client, messages, stream=True) == got, ("streaming", messages)


def at_once_as_one_at_a_time():
    """Batch invariance: SAME_CHATS in flight together (steps batch several
    sequences, and the later ones hit the prefix cache) answer as one at a time."""
    alone = [greedy_chat(client, m) for m in SAME_CHATS]
    with ThreadPoolExecutor(len(SAME_CHATS)) as pool:
        together = list(pool.map(lambda m: greedy_chat(client, m), SAME_CHATS))
    for t, a in zip(together, alone):
        assert t == a, (t, a)


def main():
    print(f"openai {openai.__version__} against {BASE_URL} ({MODEL})")
    checks = []
    if ARGS.reference:
        tie = f", up to a near tie within {ARGS.tie_tolerance}" if ARGS.tie_tolerance else ""
        checks += [
            (f"{len(SAME_CHATS)} greedy chat.completions equal the reference's{tie} (non-streaming and streaming)",
             same_as_reference),
            (f"{len(SAME_CHATS)} greedy chat.completions at once equal them one at a time", at_once_as_one_at_a_time),
        ]
    if not ARGS.reference_only:
        checks += [
            ("models.list", models_list),
            ("chat.completions (non-streaming)", chat_non_streaming),
            ("chat.completions (streaming, include_usage)", chat_streaming),
            ("completions (non-streaming and streaming)", completions),
            ("completions n=2 with stop", n_and_stop),
            ("chat.completions logprobs=True, top_logprobs=3 (streaming and not)", chat_logprobs),
            ("completions logprobs=2 (streaming and not)", completions_logprobs),
            ("errors: 400 param, 404 model, 401 key", errors),
        ]
    for name, fn in checks:
        check(name, fn)
    print(f"all {len(checks)} openai client checks passed")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # report and fail
        print(f"FAIL: {type(e).__name__}: {e}", file=sys.stderr)
        raise
