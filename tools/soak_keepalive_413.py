#!/usr/bin/env python3
"""Reproduces the soak's one finding: a request lost after a 413 on a keep-alive connection.

    .cache/venv-soak/bin/python tools/soak_keepalive_413.py --base-url http://127.0.0.1:PORT \
        [--max-body-bytes 262144] [--tries 50]

Against `memwall serve --max-body-bytes 262144`: on one pooled httpx connection, POST a
body beyond the limit (Content-Length or chunked; 413), then at once a valid
completion. A server that closes the connection after its 413 without saying
`Connection: close` makes the client send the second request into a closing socket:
`RemoteProtocolError: Server disconnected without sending a response`. Prints what
each pair got; exits 1 if any well-formed follow-up request was lost.
(A reset instead of the 413 itself is counted apart: see docs/RELIABILITY.md.)
"""

import argparse
import asyncio
import json
import sys
from collections import Counter


async def pair(httpx, url: str, size: int, chunked: bool) -> tuple[str, str]:
    raw = json.dumps({"prompt": "a" * size, "max_tokens": 4}).encode()

    async def gen():
        for i in range(0, len(raw), 16384):
            yield raw[i : i + 16384]

    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=1)) as c:
        try:
            r = await c.post(url, content=gen() if chunked else raw, headers={"content-type": "application/json"})
            first = f"{r.status_code} connection={r.headers.get('connection')}"
        except httpx.HTTPError as e:
            first = type(e).__name__
        try:
            second = str((await c.post(url, json={"prompt": "hi", "max_tokens": 2})).status_code)
        except httpx.HTTPError as e:
            second = f"LOST {type(e).__name__}: {e}"
    return first, second


async def main() -> int:
    import httpx

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--max-body-bytes", type=int, default=262144)
    ap.add_argument("--tries", type=int, default=50)
    a = ap.parse_args()
    url = a.base_url.rstrip("/") + "/v1/completions"
    seen: Counter = Counter()
    for chunked in (False, True):
        for size in (a.max_body_bytes + 8000, a.max_body_bytes * 2 + 76000):
            for _ in range(a.tries):
                first, second = await pair(httpx, url, size, chunked)
                seen[("chunked" if chunked else "content-length", size, first, second)] += 1
    for k, v in sorted(seen.items(), key=str):
        print(v, *k, sep="  ")
    lost = sum(v for k, v in seen.items() if k[3].startswith("LOST"))
    print(f"{lost} of {sum(seen.values())} well-formed follow-up requests lost")
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
