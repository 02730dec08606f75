#!/usr/bin/env python3
"""Soak test for `memwall serve`: hostile mixed load for a fixed time, then checks.

Run by scripts/soak.sh, which builds memwall, starts the server with a small KV
pool and a small --max-queue, and passes its pid and address here:

    python tools/soak.py --base-url http://127.0.0.1:PORT --pid PID \
        --duration 10m --concurrency 32 --max-queue 32 --max-body-bytes 262144

What it sends (each worker of --concurrency loops over a weighted random mix):

    chat, completion                 well-formed, non-streaming (some with n=2, stop strings)
    chat_stream, completion_stream   well-formed, SSE with stream_options.include_usage
    disconnect                       SSE, the client closes the connection after k chunks
    malformed_json                   truncated, not JSON, not an object, invalid UTF-8, nested 10^5 deep
    wrong_type                       a parameter of the wrong type or out of range (400 naming it)
    oversized                        a body beyond --max-body-bytes, with and without Content-Length
    too_long_context                 a prompt longer than the model's context
    too_long_kv                      a prompt that fits the context but never fits the KV pool
    burst                            every --burst-every, 4 x max-queue requests at once (expect 429)

and, at the end, checks (exit 1 if any fails):

    no 5xx, no error event inside a 200 stream, no transport error, no timeout
    every well-formed request got 429 or completed (finish_reason stop/length,
        usage consistent) or was closed by its own client (disconnect)
    every hostile request got the 4xx it deserves
    the server never held more requests than --max-queue (running + waiting)
    idle after the load: KV blocks in use, running and waiting all 0
    no request thread left behind, open fds back to the warm-up level
    VmRSS at the end within 10% of VmRSS after warm-up (both taken idle)
    /metrics counts no 5xx; /health answers 200; a last chat request completes

The outcome logic (`classify_*`, `check_*`) is pure and unit-tested by
tools/soak_test.py (stdlib only); httpx is imported only to drive the load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Optional

# --- request categories -------------------------------------------------------------

WELL_FORMED = ("chat", "chat_stream", "completion", "completion_stream", "burst")
HOSTILE = ("malformed_json", "wrong_type", "oversized", "too_long_context", "too_long_kv")
CATEGORIES = WELL_FORMED + ("disconnect",) + HOSTILE

# Relative frequency of each category in a worker's loop (bursts have their own task).
WEIGHTS = {
    "chat": 14,
    "chat_stream": 14,
    "completion": 12,
    "completion_stream": 12,
    "disconnect": 14,
    "malformed_json": 8,
    "wrong_type": 10,
    "oversized": 4,
    "too_long_context": 3,
    "too_long_kv": 4,
}

# Outcomes that pass. Everything else names what went wrong.
OK_OUTCOMES = {"completed", "cancelled_by_client", "rejected_429", "rejected_as_expected", "reset_instead_of_413"}


@dataclass
class Case:
    """One request to send and what a correct server answers."""

    category: str
    path: str  # "/v1/chat/completions" or "/v1/completions"
    body: Any  # bytes, or a list of byte chunks (sent chunked, no Content-Length)
    stream: bool = False
    n: int = 1
    max_tokens: int = 0
    disconnect_after: int = 0  # close after this many SSE data events (disconnect)
    expect_status: int = 200  # hostile cases: the 4xx they deserve
    expect_param: Optional[str] = None  # 400s: the `param` the error must name
    expect_code: Optional[str] = None  # 400s: the `code` the error must carry
    may_429: bool = False  # reaches the server's queue check (429 is then a correct answer)
    variant: str = ""


@dataclass
class Result:
    category: str
    status: Optional[int]  # HTTP status; None when no response arrived
    outcome: str
    detail: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    variant: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome in OK_OUTCOMES


# --- pure checking logic ------------------------------------------------------------


def error_of(body: Any) -> Optional[dict]:
    """The `error` object of an OpenAI-shaped error body, if it is one."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return body["error"]
    return None


def check_usage(usage: Any, n: int, max_tokens: int, finishes: list) -> Optional[str]:
    """A problem with `usage` against the choices' finish reasons, or None."""
    if not isinstance(usage, dict):
        return "no usage"
    p, c, t = usage.get("prompt_tokens"), usage.get("completion_tokens"), usage.get("total_tokens")
    if not all(isinstance(x, int) for x in (p, c, t)):
        return f"usage fields not integers: {usage}"
    if p <= 0:
        return f"prompt_tokens {p}"
    if t != p + c:
        return f"total_tokens {t} != {p} + {c}"
    if not (n <= c <= n * max_tokens):
        return f"completion_tokens {c} outside [{n}, {n * max_tokens}]"
    if n == 1 and finishes == ["length"] and c != max_tokens:
        return f"finish_reason length but completion_tokens {c} != max_tokens {max_tokens}"
    return None


def check_finishes(finishes: list, n: int) -> Optional[str]:
    if len(finishes) != n:
        return f"{len(finishes)} finish reasons for n={n}"
    bad = [f for f in finishes if f not in ("stop", "length")]
    if bad:
        return f"finish_reason {bad}"
    return None


def classify_rejection(case: Case, status: int, body: Any) -> Optional[Result]:
    """The outcome of a non-200 answer, shared by every category; None for 200."""
    if status == 200:
        return None
    if status >= 500:
        return Result(case.category, status, "server_error", f"{status}: {str(body)[:200]}")
    err = error_of(body)
    if err is None:
        return Result(case.category, status, "error_not_openai_shaped", str(body)[:200])
    # 429 is a correct answer to anything that reached the queue check.
    if status == 429 and (case.may_429 or case.category in WELL_FORMED + ("disconnect",)):
        if err.get("type") != "rate_limit_error":
            return Result(case.category, status, "wrong_error_type", f"429 with type {err.get('type')}")
        return Result(case.category, status, "rejected_429")
    if case.category in WELL_FORMED or case.category == "disconnect":
        return Result(case.category, status, "well_formed_rejected", f"{status}: {err.get('message')}")
    if status != case.expect_status:
        return Result(case.category, status, "unexpected_status", f"expected {case.expect_status}: {err.get('message')}")
    if case.expect_param is not None and err.get("param") != case.expect_param:
        return Result(
            case.category, status, "wrong_param", f"param {err.get('param')!r}, expected {case.expect_param!r}"
        )
    if case.expect_code is not None and err.get("code") != case.expect_code:
        return Result(case.category, status, "wrong_code", f"code {err.get('code')!r}, expected {case.expect_code!r}")
    return Result(case.category, status, "rejected_as_expected")


def classify_json(case: Case, status: int, body: Any) -> Result:
    """Outcome of a non-streaming answer whose body parsed as `body` (None if not JSON)."""
    rejected = classify_rejection(case, status, body)
    if rejected is not None:
        return rejected
    if case.category not in WELL_FORMED:
        return Result(case.category, status, "hostile_accepted", f"expected {case.expect_status}, got 200")
    if not isinstance(body, dict) or not isinstance(body.get("choices"), list):
        return Result(case.category, status, "malformed_response", str(body)[:200])
    finishes = [c.get("finish_reason") for c in body["choices"] if isinstance(c, dict)]
    problem = check_finishes(finishes, case.n) or check_usage(body.get("usage"), case.n, case.max_tokens, finishes)
    if problem:
        return Result(case.category, status, "incomplete", problem)
    u = body["usage"]
    return Result(case.category, status, "completed", prompt_tokens=u["prompt_tokens"], completion_tokens=u["completion_tokens"])


def parse_sse(text: str) -> tuple[list, bool, Optional[str]]:
    """SSE text to (JSON chunks, saw [DONE], problem)."""
    chunks, done = [], False
    for line in text.split("\n"):
        line = line.rstrip("\r")
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            done = True
            continue
        if done:
            return chunks, done, "data after [DONE]"
        try:
            chunks.append(json.loads(data))
        except ValueError:
            return chunks, done, f"chunk is not JSON: {data[:100]}"
    return chunks, done, None


def classify_stream(case: Case, status: int, chunks: list, done: bool, closed_early: bool, problem: Optional[str] = None) -> Result:
    """Outcome of a 200 SSE answer: its parsed chunks, whether [DONE] came, and
    whether the client closed it on purpose before the end."""
    if problem:
        return Result(case.category, status, "malformed_stream", problem)
    for c in chunks:
        if error_of(c) is not None:
            return Result(case.category, status, "stream_error_event", str(c["error"].get("message"))[:200])
    if case.category not in WELL_FORMED and case.category != "disconnect":
        return Result(case.category, status, "hostile_accepted", f"expected {case.expect_status}, got a stream")
    finishes: dict = {}
    usage = None
    texts = 0
    for c in chunks:
        if c.get("usage") is not None:
            if c.get("choices"):
                return Result(case.category, status, "malformed_stream", "usage chunk with choices")
            usage = c["usage"]
        for ch in c.get("choices") or []:
            idx = ch.get("index")
            if ch.get("finish_reason") is not None:
                if idx in finishes:
                    return Result(case.category, status, "malformed_stream", f"two finish reasons for index {idx}")
                finishes[idx] = ch["finish_reason"]
            elif idx in finishes:
                return Result(case.category, status, "malformed_stream", f"text after finish for index {idx}")
            piece = ch.get("text") if "text" in ch else (ch.get("delta") or {}).get("content")
            if piece:
                texts += 1
    if closed_early and not done:
        return Result(case.category, status, "cancelled_by_client")
    if not done:
        return Result(case.category, status, "incomplete", "stream ended without [DONE]")
    flist = [finishes[k] for k in sorted(finishes, key=lambda x: (x is None, x))]
    problem = check_finishes(flist, case.n) or check_usage(usage, case.n, case.max_tokens, flist)
    if problem:
        return Result(case.category, status, "incomplete", problem)
    if texts > usage["completion_tokens"]:
        return Result(case.category, status, "incomplete", f"{texts} text chunks > {usage['completion_tokens']} tokens")
    return Result(case.category, status, "completed", prompt_tokens=usage["prompt_tokens"], completion_tokens=usage["completion_tokens"])


def classify_transport(case: Case, what: str) -> Result:
    """No (complete) answer: a timeout is a hang; a dropped connection is lost,
    except for an oversized body, where a reset after the server stopped reading
    can destroy its 413 in flight (tolerated, counted apart)."""
    if "Timeout" in what:
        outcome = "timeout"
    elif case.category == "oversized" and what.split(":")[0] in ("ReadError", "WriteError", "RemoteProtocolError"):
        outcome = "reset_instead_of_413"
    else:
        outcome = "transport_error"
    return Result(case.category, None, outcome, what[:200])


def parse_metrics(text: str) -> dict:
    """Prometheus text to {name or name{labels}: value}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([A-Za-z_:][A-Za-z0-9_:]*(?:\{[^}]*\})?)\s+(\S+)$", line)
        if m:
            try:
                out[m.group(1)] = float(m.group(2))
            except ValueError:
                pass
    return out


def server_5xx(metrics: dict) -> int:
    total = 0
    for k, v in metrics.items():
        m = re.match(r'^memwall_requests_total\{status="(\d+)"\}$', k)
        if m and int(m.group(1)) >= 500:
            total += int(v)
    return total


def parse_duration(s: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", s)
    if not m:
        raise argparse.ArgumentTypeError(f"not a duration: {s!r} (use 60s, 10m, 1h)")
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def rss_within(warm_kb: int, end_kb: int, tolerance: float) -> bool:
    return warm_kb > 0 and abs(end_kb - warm_kb) <= tolerance * warm_kb


# --- building requests --------------------------------------------------------------

PROMPTS = [
    "Name three colours.",
    "Write a haiku about the sea.",
    "What is the capital of France?",
    "Explain what a CPU cache is in two sentences.",
    "List five animals that live in the Arctic.",
    "Tell me a short story about a robot who learns to paint.",
    "Give me a recipe for pancakes.",
    "Why is the sky blue?",
    "Translate 'good morning' into Spanish, French and German.",
    "Count from one to twenty in words.",
]
SYSTEM = "You are a helpful assistant. Answer briefly and precisely. " * 3
COMPLETION_PROMPTS = ["Once upon a time", "The capital of France is", "def fibonacci(n):", "1, 2, 3, 4,", "In 1969,"]


def dumps(v: Any) -> bytes:
    return json.dumps(v).encode()


def well_formed(rng: random.Random, category: str, model: str) -> Case:
    chat = category.startswith("chat") or (category == "disconnect" and rng.random() < 0.5)
    stream = category.endswith("_stream") or category == "disconnect"
    n = 2 if (not stream and category != "burst" and rng.random() < 0.15) else 1
    max_tokens = 4 if category == "burst" else rng.choice([1, 8, 16, 32, 48])
    body: dict = {"model": model, "max_tokens": max_tokens, "n": n}
    if chat:
        msgs = [{"role": "user", "content": rng.choice(PROMPTS)}]
        if rng.random() < 0.3:
            msgs.insert(0, {"role": "system", "content": SYSTEM})  # shared prefix for the prefix cache
        body["messages"] = msgs
    else:
        body["prompt"] = rng.choice(COMPLETION_PROMPTS)
    r = rng.random()
    if r < 0.3:
        body["temperature"] = 0
    elif r < 0.5:
        body["seed"] = rng.randrange(1 << 31)
    if rng.random() < 0.2:
        body["stop"] = rng.choice(["\n", ".", ["\n\n", "The"]])
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    path = "/v1/chat/completions" if chat else "/v1/completions"
    k = rng.randint(1, 6) if category == "disconnect" else 0
    return Case(category, path, dumps(body), stream=stream, n=n, max_tokens=max_tokens, disconnect_after=k)


def malformed(rng: random.Random) -> Case:
    variants = {
        "truncated": b'{"messages": [{"role": "user", "content": "hi"',
        "not_json": b"hello, server",
        "array": b'[{"role": "user", "content": "hi"}]',
        "empty": b"",
        "bad_utf8": b'{"prompt": "\xff\xfe\xfd", "max_tokens": 4}',
        "deep": b"[" * 100_000 + b"]" * 100_000,
        "trailing": b'{"prompt": "hi", "max_tokens": 4} garbage',
    }
    name = rng.choice(sorted(variants))
    path = rng.choice(["/v1/chat/completions", "/v1/completions"])
    return Case("malformed_json", path, variants[name], expect_status=400, variant=name)


def wrong_type(rng: random.Random) -> Case:
    chat = [{"role": "user", "content": "hi"}]
    variants = [
        ("temperature_str", {"messages": chat, "temperature": "hot"}, "temperature"),
        ("max_tokens_neg", {"messages": chat, "max_tokens": -1}, "max_tokens"),
        ("max_tokens_str", {"messages": chat, "max_tokens": "ten"}, "max_tokens"),
        ("messages_str", {"messages": "hi"}, "messages"),
        ("messages_missing", {"max_tokens": 4}, "messages"),
        ("content_obj", {"messages": [{"role": "user", "content": {"a": 1}}]}, "messages"),
        ("stream_str", {"messages": chat, "stream": "yes"}, "stream"),
        ("n_huge", {"messages": chat, "n": 1000}, "n"),
        ("top_p_range", {"messages": chat, "top_p": 5}, "top_p"),
        ("stop_many", {"messages": chat, "stop": ["x%d" % i for i in range(100)]}, "stop"),
        ("prompt_obj", {"prompt": {"text": "hi"}, "max_tokens": 4}, "prompt"),
        ("max_tokens_zero", {"prompt": "hi", "max_tokens": 0}, "max_tokens"),
        ("max_tokens_huge", {"prompt": "hi", "max_tokens": 1 << 40}, "max_tokens"),
    ]
    name, body, param = rng.choice(variants)
    path = "/v1/completions" if "prompt" in body else "/v1/chat/completions"
    # max_tokens beyond the KV pool is checked after the queue slot is taken.
    return Case(
        "wrong_type", path, dumps(body), expect_status=400, expect_param=param, variant=name, may_429=name == "max_tokens_huge"
    )


def oversized(rng: random.Random, max_body: int) -> Case:
    extra = rng.randint(1, 64 * 1024)
    filler = "a" * (max_body + extra)
    raw = dumps({"prompt": filler, "max_tokens": 4})
    if rng.random() < 0.5:
        return Case("oversized", "/v1/completions", raw, expect_status=413, variant="content_length")
    step = 16 * 1024
    parts = [raw[i : i + step] for i in range(0, len(raw), step)]
    return Case("oversized", "/v1/completions", parts, expect_status=413, variant="chunked")


def too_long(rng: random.Random, category: str, context: int, kv_tokens: int) -> Case:
    if category == "too_long_context":
        # " hello" is one token in SmolLM2's vocabulary; add margin anyway.
        words = context + rng.randint(64, 512)
        return Case(
            category,
            "/v1/completions",
            dumps({"prompt": "hello" + " hello" * words, "max_tokens": 4}),
            expect_status=400,
            expect_param="prompt",
            expect_code="context_length_exceeded",
            may_429=True,
        )
    words = kv_tokens + rng.randint(16, 128)
    chat = rng.random() < 0.5
    body = (
        {"messages": [{"role": "user", "content": "hello" + " hello" * words}], "max_tokens": 4}
        if chat
        else {"prompt": "hello" + " hello" * words, "max_tokens": 4}
    )
    path = "/v1/chat/completions" if chat else "/v1/completions"
    return Case(category, path, dumps(body), expect_status=400, may_429=True)


def make_case(rng: random.Random, cfg: argparse.Namespace) -> Case:
    cats = list(WEIGHTS)
    category = rng.choices(cats, weights=[WEIGHTS[c] for c in cats])[0]
    if category in WELL_FORMED or category == "disconnect":
        return well_formed(rng, category, cfg.model)
    if category == "malformed_json":
        return malformed(rng)
    if category == "wrong_type":
        return wrong_type(rng)
    if category == "oversized":
        return oversized(rng, cfg.max_body_bytes)
    return too_long(rng, category, cfg.context, cfg.kv_tokens)


# --- driving the server -------------------------------------------------------------


async def send(client, base: str, case: Case, timeout: float) -> Result:
    import httpx

    t0 = time.monotonic()
    headers = {"content-type": "application/json"}
    if isinstance(case.body, list):
        parts = case.body

        async def gen():
            for p in parts:
                yield p

        content: Any = gen()
    else:
        content = case.body
    try:
        async with asyncio.timeout(timeout):
            async with client.stream("POST", base + case.path, content=content, headers=headers) as resp:
                status = resp.status_code
                if status != 200 or not case.stream:
                    raw = await resp.aread()
                    try:
                        body = json.loads(raw) if raw else None
                    except ValueError:
                        body = raw[:200]
                    res = classify_json(case, status, body)
                else:
                    buf, events, closed = "", 0, False
                    async for text in resp.aiter_text():
                        buf += text
                        events = buf.count("\n\n")
                        if case.disconnect_after and events >= case.disconnect_after and "data: [DONE]" not in buf:
                            closed = True
                            break  # leaving the block closes the connection mid-stream
                    chunks, done, problem = parse_sse(buf if not closed else buf[: buf.rfind("\n\n") + 2])
                    res = classify_stream(case, status, chunks, done, closed, problem)
    except TimeoutError:
        res = classify_transport(case, f"Timeout after {timeout}s")
    except httpx.HTTPError as e:
        res = classify_transport(case, f"{type(e).__name__}: {e}")
    res.seconds = time.monotonic() - t0
    res.variant = case.variant
    return res


def make_client(connections: int):
    import httpx

    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(None))


async def get_text(client, url: str) -> tuple[int, str]:
    r = await client.get(url, timeout=30)
    return r.status_code, r.text


def proc_status(pid: int) -> dict:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def snapshot(pid: int) -> dict:
    st = proc_status(pid)
    kb = lambda k: int(st.get(k, "0 kB").split()[0])  # noqa: E731
    tasks = os.listdir(f"/proc/{pid}/task")
    req_threads = 0
    for t in tasks:
        try:
            with open(f"/proc/{pid}/task/{t}/comm") as f:
                req_threads += f.read().startswith("memwall-req")
        except OSError:
            pass
    return {
        "rss_kb": kb("VmRSS"),
        "rss_anon_kb": kb("RssAnon"),
        "rss_file_kb": kb("RssFile"),
        "threads": len(tasks),
        "request_threads": req_threads,
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
    }


class Soak:
    def __init__(self, cfg: argparse.Namespace):
        self.cfg = cfg
        self.base = cfg.base_url.rstrip("/")
        self.results: list[Result] = []
        self.max_in_engine = 0  # running + waiting seen in /metrics
        self.max_kv_used = 0
        self.rss_samples: list[int] = []
        self.bursts = 0

    def log(self, msg: str) -> None:
        print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    async def metrics(self, client) -> dict:
        _, text = await get_text(client, self.base + "/metrics")
        return parse_metrics(text)

    async def worker(self, client, rng: random.Random, until: float) -> None:
        while time.monotonic() < until:
            r = await send(client, self.base, make_case(rng, self.cfg), self.cfg.request_timeout)
            self.results.append(r)
            if r.status == 429:
                await asyncio.sleep(rng.uniform(0.25, 1.0))  # back off, as a real client does

    async def burster(self, client, rng: random.Random, until: float) -> None:
        """Every --burst-every, burst_factor x max_queue requests at once (not
        waiting for the previous burst to finish)."""
        size = self.cfg.burst_factor * self.cfg.max_queue
        pending = []

        async def fire(cases):
            self.results.extend(await asyncio.gather(*(send(client, self.base, c, self.cfg.request_timeout) for c in cases)))

        while True:
            await asyncio.sleep(min(self.cfg.burst_every, max(0.0, until - time.monotonic())))
            if time.monotonic() >= until:
                break
            self.bursts += 1
            pending.append(asyncio.create_task(fire([well_formed(rng, "burst", self.cfg.model) for _ in range(size)])))
        await asyncio.gather(*pending)

    async def sampler(self, client, until: float) -> None:
        while time.monotonic() < until:
            try:
                m = await self.metrics(client)
                self.max_in_engine = max(
                    self.max_in_engine, int(m.get("memwall_requests_running", 0) + m.get("memwall_requests_waiting", 0))
                )
                self.max_kv_used = max(self.max_kv_used, int(m.get("memwall_kv_blocks_used", 0)))
                self.rss_samples.append(snapshot(self.cfg.pid)["rss_kb"])
            except Exception as e:  # noqa: BLE001 - a failed scrape is reported, not fatal here
                self.log(f"metrics scrape failed: {e!r}")
            await asyncio.sleep(2)

    async def load(self, seconds: float, seed: int) -> None:
        cfg = self.cfg
        until = time.monotonic() + seconds
        conns = cfg.concurrency + cfg.burst_factor * cfg.max_queue + 8
        async with make_client(conns) as client, make_client(4) as probe:
            tasks = [self.worker(client, random.Random(seed * 1000 + i), until) for i in range(cfg.concurrency)]
            tasks.append(self.burster(client, random.Random(seed * 1000 + 999), until))
            tasks.append(self.sampler(probe, until))
            await asyncio.gather(*tasks)

    async def wait_idle(self, timeout: float) -> tuple[bool, dict]:
        async with make_client(2) as client:
            deadline = time.monotonic() + timeout
            m: dict = {}
            while True:
                m = await self.metrics(client)
                idle = all(
                    m.get(k, -1) == 0
                    for k in ("memwall_kv_blocks_used", "memwall_requests_running", "memwall_requests_waiting")
                )
                if idle or time.monotonic() > deadline:
                    return idle, m
                await asyncio.sleep(0.5)

    async def idle_snapshot(self) -> tuple[bool, dict, dict]:
        idle, m = await self.wait_idle(self.cfg.idle_timeout)
        await asyncio.sleep(2)  # let the server close the sockets the client just closed
        return idle, m, snapshot(self.cfg.pid)

    async def final_probe(self) -> tuple[int, Result]:
        async with make_client(2) as client:
            health, _ = await get_text(client, self.base + "/health")
            case = Case(
                "chat",
                "/v1/chat/completions",
                dumps({"model": self.cfg.model, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 16, "temperature": 0}),
                max_tokens=16,
            )
            return health, await send(client, self.base, case, self.cfg.request_timeout)

    async def run(self) -> int:
        cfg = self.cfg
        self.log(f"warm-up: {cfg.warmup:.0f}s of the mix at concurrency {cfg.concurrency}")
        t_start = time.monotonic()
        async with make_client(2) as c:
            self.m_start = await self.metrics(c)
        await self.load(cfg.warmup, seed=cfg.seed)
        n_warm = len(self.results)
        idle_w, m_warm, snap_warm = await self.idle_snapshot()
        self.log(f"after warm-up: {n_warm} requests, idle={idle_w}, {snap_warm}")
        self.log(f"load: {cfg.duration:.0f}s, bursts of {cfg.burst_factor * cfg.max_queue} every {cfg.burst_every:.0f}s")
        t_load = time.monotonic()
        self.load_sample0 = len(self.rss_samples)
        await self.load(cfg.duration, seed=cfg.seed + 1)
        load_secs = time.monotonic() - t_load
        self.log(f"load done: {len(self.results) - n_warm} requests in {load_secs:.0f}s; waiting for idle")
        idle, m_end, snap_end = await self.idle_snapshot()
        health, final = await self.final_probe()
        _, m_end = await self.wait_idle(5)
        return self.report(n_warm, load_secs, time.monotonic() - t_start, idle, m_warm, m_end, snap_warm, snap_end, health, final)

    def report(self, n_warm, load_secs, total_secs, idle, m_warm, m_end, snap_warm, snap_end, health, final) -> int:
        cfg = self.cfg
        res = self.results
        by_cat: dict = {c: Counter() for c in CATEGORIES}
        for r in res:
            by_cat[r.category][f"{r.status}:{r.outcome}"] += 1
        failures = [r for r in res if not r.ok]
        fail_kinds = Counter(f"{r.category}/{r.outcome}" for r in failures)
        five = sum(1 for r in res if r.status is not None and r.status >= 500)
        wf = [r for r in res if r.category in WELL_FORMED or r.category == "disconnect"]
        accepted = [r for r in wf if r.status == 200]
        completed = sum(1 for r in accepted if r.outcome == "completed")
        cancelled = sum(1 for r in accepted if r.outcome == "cancelled_by_client")
        burst = [r for r in res if r.category == "burst"]
        burst_429 = sum(1 for r in burst if r.status == 429)
        gen_tokens = sum(r.completion_tokens for r in res)
        prompt_tokens = sum(r.prompt_tokens for r in res)
        rss_w, rss_e = snap_warm["rss_kb"], snap_end["rss_kb"]
        server5 = server_5xx(m_end) - server_5xx(self.m_start)  # /health says 503 while loading
        eng_cancel = int(m_end.get("memwall_engine_requests_cancelled_total", 0))
        checks = [
            Check("no 5xx (client side)", five == 0, f"{five}"),
            Check("no 5xx counted by /metrics", server5 == 0, f"{server5}"),
            Check(
                "every request answered as expected",
                not failures,
                "all" if not failures else ", ".join(f"{k}={v}" for k, v in fail_kinds.most_common()),
            ),
            Check(
                "accepted well-formed requests completed or cancelled by their client",
                completed + cancelled == len(accepted),
                f"{len(accepted)} accepted = {completed} completed + {cancelled} cancelled by client",
            ),
            Check("bursts beyond --max-queue got 429", self.bursts == 0 or burst_429 > 0, f"{burst_429} of {len(burst)} in {self.bursts} bursts"),
            # The engine counts sequences (n=2 is two) and frees a cancelled request's
            # sequences a step after its queue slot: hence 2 x --max-queue.
            Check(
                "the engine never held more than 2 x --max-queue sequences",
                self.max_in_engine <= 2 * cfg.max_queue,
                f"max running+waiting seen {self.max_in_engine} (--max-queue {cfg.max_queue}, n <= 2)",
            ),
            Check(
                "idle: KV blocks used, running, waiting back to 0",
                idle,
                "kv_blocks_used={:.0f} running={:.0f} waiting={:.0f} (kv_blocks_cached={:.0f} of {:.0f})".format(
                    m_end.get("memwall_kv_blocks_used", -1),
                    m_end.get("memwall_requests_running", -1),
                    m_end.get("memwall_requests_waiting", -1),
                    m_end.get("memwall_kv_blocks_cached", -1),
                    m_end.get("memwall_kv_blocks_total", -1),
                ),
            ),
            Check("no request thread left", snap_end["request_threads"] == 0, f"{snap_end['request_threads']}"),
            Check(
                "open fds back to the warm-up level",
                snap_end["fds"] <= snap_warm["fds"] + 4,
                f"{snap_warm['fds']} after warm-up, {snap_end['fds']} at the end",
            ),
            Check(
                f"VmRSS at the end within {cfg.rss_tolerance:.0%} of after warm-up",
                rss_within(rss_w, rss_e, cfg.rss_tolerance),
                f"{rss_w / 1024:.1f} MiB -> {rss_e / 1024:.1f} MiB ({(rss_e - rss_w) / max(rss_w, 1):+.1%}); "
                f"anon {snap_warm['rss_anon_kb'] / 1024:.1f} -> {snap_end['rss_anon_kb'] / 1024:.1f} MiB",
            ),
            Check("/health answers 200", health == 200, f"{health}"),
            Check("a last chat request completes", final.outcome == "completed", f"{final.outcome} {final.detail}".strip()),
        ]
        lines = []
        p = lines.append
        p("")
        p("== memwall soak ==")
        p(
            f"duration: warm-up {cfg.warmup:.0f}s + load {load_secs:.0f}s (total {total_secs:.0f}s); concurrency {cfg.concurrency}; "
            f"--max-queue {cfg.max_queue}; --max-body-bytes {cfg.max_body_bytes}; KV {cfg.kv_tokens} tokens"
        )
        p(f"requests: {len(res)} ({n_warm} in warm-up), {len(res) / max(total_secs, 1):.1f}/s; bursts: {self.bursts}")
        p(f"tokens (client usage): prompt {prompt_tokens}, generated {gen_tokens}")
        p(
            "server /metrics: generated {:.0f}, prompt {:.0f}, prefix-cache hits {:.0f}, preemptions {:.0f}, "
            "engine cancellations {}, steps {:.0f}, max KV blocks used seen {}".format(
                m_end.get("memwall_generation_tokens_total", 0),
                m_end.get("memwall_prompt_tokens_total", 0),
                m_end.get("memwall_prefix_cache_hit_tokens_total", 0),
                m_end.get("memwall_preemptions_total", 0),
                eng_cancel,
                m_end.get("memwall_engine_steps_total", 0),
                self.max_kv_used,
            )
        )
        statuses = {k.split("\"")[1]: int(v) for k, v in m_end.items() if k.startswith("memwall_requests_total{")}
        p(f"server requests by status: {statuses}")
        p(
            "process: VmRSS {:.1f} MiB after warm-up, {:.1f} MiB at the end, peak sampled {:.1f} MiB; threads {} -> {}; fds {} -> {}".format(
                rss_w / 1024, rss_e / 1024, max(self.rss_samples or [0]) / 1024, snap_warm["threads"], snap_end["threads"], snap_warm["fds"], snap_end["fds"]
            )
        )
        trend = self.rss_samples[getattr(self, "load_sample0", 0) :]
        if trend:
            marks = [trend[min(len(trend) - 1, int(q * (len(trend) - 1)))] / 1024 for q in (0, 0.25, 0.5, 0.75, 1)]
            p("VmRSS under load (0/25/50/75/100% of the load): " + " / ".join(f"{x:.1f}" for x in marks) + " MiB")
        p("")
        p(f"{'category':<18} {'sent':>6}  outcomes (status:outcome count)")
        for c in CATEGORIES:
            total = sum(by_cat[c].values())
            detail = ", ".join(f"{k} {v}" for k, v in sorted(by_cat[c].items()))
            p(f"{c:<18} {total:>6}  {detail}")
        if failures:
            p("")
            p("first failures:")
            for r in failures[:10]:
                p(f"  {r.category}/{r.variant or '-'} status={r.status} {r.outcome}: {r.detail}")
        p("")
        for ch in checks:
            p(f"[{'PASS' if ch.ok else 'FAIL'}] {ch.name}: {ch.detail}")
        passed = sum(ch.ok for ch in checks)
        p(f"checks: {passed} passed, {len(checks) - passed} failed")
        print("\n".join(lines), flush=True)
        if cfg.json_out:
            summary = {
                "duration_s": cfg.duration,
                "warmup_s": cfg.warmup,
                "load_s": load_secs,
                "concurrency": cfg.concurrency,
                "max_queue": cfg.max_queue,
                "requests": len(res),
                "by_category": {c: dict(v) for c, v in by_cat.items()},
                "prompt_tokens": prompt_tokens,
                "generated_tokens": gen_tokens,
                "server_metrics_end": m_end,
                "snapshot_warm": snap_warm,
                "snapshot_end": snap_end,
                "rss_samples_kb": self.rss_samples,
                "checks": [ch.__dict__ for ch in checks],
            }
            with open(cfg.json_out, "w") as f:
                json.dump(summary, f, indent=1)
        return 0 if passed == len(checks) else 1


def main(argv: Optional[list] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--pid", type=int, required=True, help="the server's pid (VmRSS, threads, fds from /proc)")
    ap.add_argument("--model", default=None, help="model id to send (default: the first of /v1/models)")
    ap.add_argument("--duration", type=parse_duration, default=parse_duration("10m"))
    ap.add_argument("--warmup", type=parse_duration, default=None, help="default: a tenth of --duration, 15s..60s")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--max-queue", type=int, required=True, help="the server's --max-queue")
    ap.add_argument("--max-body-bytes", type=int, required=True, help="the server's --max-body-bytes")
    ap.add_argument("--context", type=int, required=True, help="the model's context, in tokens")
    ap.add_argument("--kv-tokens", type=int, required=True, help="token positions the server's KV pool holds")
    ap.add_argument("--burst-every", type=parse_duration, default=parse_duration("20s"))
    ap.add_argument("--burst-factor", type=int, default=4, help="a burst is this many times --max-queue requests")
    ap.add_argument("--request-timeout", type=parse_duration, default=parse_duration("5m"), help="longer is a hang")
    ap.add_argument("--idle-timeout", type=parse_duration, default=parse_duration("2m"))
    ap.add_argument("--rss-tolerance", type=float, default=0.10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json-out", default=None)
    cfg = ap.parse_args(argv)
    if cfg.warmup is None:
        cfg.warmup = min(60.0, max(15.0, cfg.duration / 10))
    return asyncio.run(prepare_and_run(cfg))


async def prepare_and_run(cfg: argparse.Namespace) -> int:
    """Asks the server for its model id, then soaks."""
    import httpx

    async with httpx.AsyncClient(timeout=30) as c:
        models = (await c.get(cfg.base_url.rstrip("/") + "/v1/models")).json()
        cfg.model = cfg.model or models["data"][0]["id"]
    return await Soak(cfg).run()


if __name__ == "__main__":
    sys.exit(main())
