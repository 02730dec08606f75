#!/usr/bin/env python3
"""Unit tests of tools/soak.py's outcome logic (stdlib only, no server, ~0.1 s).

    python3 tools/soak_test.py          # also run by `scripts/soak.sh --self-test`

The soak's verdict is only as good as its classification of answers, so each
way a server can be wrong (5xx, an error event inside a 200 stream, a stream
without [DONE], usage that does not add up, a hostile request accepted, the
wrong 4xx or param) is shown to fail here, and each correct answer to pass.
"""

import json
import os
import random
import sys
import unittest
from argparse import Namespace

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import soak  # noqa: E402
from soak import Case, classify_json, classify_stream, classify_transport, parse_sse  # noqa: E402

USAGE = {"prompt_tokens": 10, "completion_tokens": 8, "total_tokens": 18}


def chat_body(finish="length", usage=USAGE, n=1):
    choices = [{"index": i, "message": {"role": "assistant", "content": "hi"}, "finish_reason": finish} for i in range(n)]
    return {"object": "chat.completion", "choices": choices, "usage": usage}


def sse(*chunks, done=True):
    text = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks)
    return text + ("data: [DONE]\n\n" if done else "")


def chat_stream_chunks(texts=("Hel", "lo"), finish="stop", usage=USAGE):
    out = [{"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}]
    out += [{"choices": [{"index": 0, "delta": {"content": t}, "finish_reason": None}]} for t in texts]
    out.append({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    if usage is not None:
        out.append({"choices": [], "usage": usage})
    return out


def err(status_type, param=None, code=None):
    return {"error": {"message": "m", "type": status_type, "param": param, "code": code}}


def stream_outcome(case, text, closed_early=False, status=200):
    chunks, done, problem = parse_sse(text)
    return classify_stream(case, status, chunks, done, closed_early, problem).outcome


class NonStreaming(unittest.TestCase):
    case = Case("chat", "/v1/chat/completions", b"{}", max_tokens=8)

    def test_completed(self):
        r = classify_json(self.case, 200, chat_body())
        self.assertEqual(r.outcome, "completed")
        self.assertTrue(r.ok)
        self.assertEqual((r.prompt_tokens, r.completion_tokens), (10, 8))

    def test_stop_before_max_tokens(self):
        u = {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}
        self.assertEqual(classify_json(self.case, 200, chat_body("stop", u)).outcome, "completed")

    def test_length_must_mean_max_tokens(self):
        u = {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}
        self.assertEqual(classify_json(self.case, 200, chat_body("length", u)).outcome, "incomplete")

    def test_usage_must_add_up(self):
        u = {"prompt_tokens": 10, "completion_tokens": 8, "total_tokens": 19}
        self.assertEqual(classify_json(self.case, 200, chat_body(usage=u)).outcome, "incomplete")
        self.assertEqual(classify_json(self.case, 200, chat_body(usage=None)).outcome, "incomplete")

    def test_too_many_tokens(self):
        u = {"prompt_tokens": 10, "completion_tokens": 9, "total_tokens": 19}
        self.assertEqual(classify_json(self.case, 200, chat_body("stop", u)).outcome, "incomplete")

    def test_cancelled_or_missing_finish_is_incomplete(self):
        self.assertEqual(classify_json(self.case, 200, chat_body("cancelled")).outcome, "incomplete")
        self.assertEqual(classify_json(self.case, 200, chat_body(None)).outcome, "incomplete")

    def test_n_samples(self):
        case = Case("completion", "/v1/completions", b"{}", max_tokens=8, n=2)
        u = {"prompt_tokens": 4, "completion_tokens": 11, "total_tokens": 15}
        self.assertEqual(classify_json(case, 200, chat_body("stop", u, n=2)).outcome, "completed")
        self.assertEqual(classify_json(case, 200, chat_body("stop", u, n=1)).outcome, "incomplete")

    def test_5xx_fails_whatever_the_body(self):
        for body in (err("server_error"), None, b"oops"):
            r = classify_json(self.case, 500, body)
            self.assertEqual(r.outcome, "server_error")
            self.assertFalse(r.ok)
        self.assertEqual(classify_json(self.case, 503, err("service_unavailable")).outcome, "server_error")

    def test_429_is_a_correct_answer_to_a_well_formed_request(self):
        self.assertEqual(classify_json(self.case, 429, err("rate_limit_error", code="queue_full")).outcome, "rejected_429")
        self.assertEqual(classify_json(self.case, 429, err("invalid_request_error")).outcome, "wrong_error_type")

    def test_400_to_a_well_formed_request_fails(self):
        self.assertFalse(classify_json(self.case, 400, err("invalid_request_error")).ok)

    def test_error_must_be_openai_shaped(self):
        self.assertEqual(classify_json(self.case, 429, {"detail": "busy"}).outcome, "error_not_openai_shaped")


class Hostile(unittest.TestCase):
    def test_expected_400_with_param(self):
        case = Case("wrong_type", "/v1/chat/completions", b"{}", expect_status=400, expect_param="temperature")
        self.assertEqual(classify_json(case, 400, err("invalid_request_error", "temperature")).outcome, "rejected_as_expected")
        self.assertEqual(classify_json(case, 400, err("invalid_request_error", "top_p")).outcome, "wrong_param")
        self.assertEqual(classify_json(case, 422, err("invalid_request_error", "temperature")).outcome, "unexpected_status")
        self.assertEqual(classify_json(case, 200, chat_body()).outcome, "hostile_accepted")

    def test_429_only_where_the_queue_is_checked_first(self):
        body = err("rate_limit_error")
        self.assertFalse(classify_json(Case("malformed_json", "/", b"", expect_status=400), 429, body).ok)
        self.assertTrue(classify_json(Case("too_long_kv", "/", b"", expect_status=400, may_429=True), 429, body).ok)

    def test_context_length_code(self):
        case = Case("too_long_context", "/", b"", expect_status=400, expect_param="prompt", expect_code="context_length_exceeded")
        self.assertTrue(classify_json(case, 400, err("invalid_request_error", "prompt", "context_length_exceeded")).ok)
        self.assertEqual(classify_json(case, 400, err("invalid_request_error", "prompt")).outcome, "wrong_code")

    def test_oversized(self):
        case = Case("oversized", "/", b"", expect_status=413)
        self.assertTrue(classify_json(case, 413, err("invalid_request_error")).ok)
        self.assertFalse(classify_json(case, 400, err("invalid_request_error")).ok)
        self.assertEqual(classify_transport(case, "ReadError: reset").outcome, "reset_instead_of_413")
        self.assertEqual(classify_transport(case, "Timeout after 300s").outcome, "timeout")

    def test_transport_errors_elsewhere_fail(self):
        case = Case("chat", "/", b"")
        self.assertEqual(classify_transport(case, "ReadError: reset").outcome, "transport_error")
        self.assertFalse(classify_transport(case, "Timeout after 300s").ok)


class Streaming(unittest.TestCase):
    case = Case("chat_stream", "/v1/chat/completions", b"{}", stream=True, max_tokens=8)

    def test_completed(self):
        u = {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}
        self.assertEqual(stream_outcome(self.case, sse(*chat_stream_chunks(usage=u))), "completed")

    def test_completion_chunks(self):
        case = Case("completion_stream", "/v1/completions", b"{}", stream=True, max_tokens=2)
        chunks = [
            {"choices": [{"index": 0, "text": " a", "finish_reason": None}]},
            {"choices": [{"index": 0, "text": "", "finish_reason": "length"}]},
            {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}},
        ]
        self.assertEqual(stream_outcome(case, sse(*chunks)), "completed")

    def test_no_done_is_incomplete(self):
        self.assertEqual(stream_outcome(self.case, sse(*chat_stream_chunks(), done=False)), "incomplete")

    def test_error_event_fails(self):
        chunks = chat_stream_chunks()[:2] + [err("server_error")]
        self.assertEqual(stream_outcome(self.case, sse(*chunks)), "stream_error_event")

    def test_missing_usage_or_finish(self):
        self.assertEqual(stream_outcome(self.case, sse(*chat_stream_chunks(usage=None))), "incomplete")
        no_finish = [c for c in chat_stream_chunks() if not any(ch.get("finish_reason") for ch in c["choices"])]
        self.assertEqual(stream_outcome(self.case, sse(*no_finish)), "incomplete")

    def test_more_text_chunks_than_tokens(self):
        u = {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11}
        self.assertEqual(stream_outcome(self.case, sse(*chat_stream_chunks(usage=u))), "incomplete")

    def test_text_after_finish_or_after_done(self):
        chunks = chat_stream_chunks(usage=None)
        chunks.append({"choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": None}]})
        self.assertEqual(stream_outcome(self.case, sse(*chunks)), "malformed_stream")
        self.assertEqual(stream_outcome(self.case, sse(*chat_stream_chunks()) + 'data: {"choices": []}\n\n'), "malformed_stream")

    def test_garbage_chunk(self):
        self.assertEqual(stream_outcome(self.case, "data: {not json\n\ndata: [DONE]\n\n"), "malformed_stream")

    def test_disconnect(self):
        case = Case("disconnect", "/v1/chat/completions", b"{}", stream=True, max_tokens=8, disconnect_after=2)
        partial = sse(*chat_stream_chunks()[:2], done=False)
        self.assertEqual(stream_outcome(case, partial, closed_early=True), "cancelled_by_client")
        # A stream that ended before the client's k-th chunk is judged as a completion.
        u = {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}
        self.assertEqual(stream_outcome(case, sse(*chat_stream_chunks(usage=u))), "completed")
        # Closing our end does not excuse an error the server sent before.
        self.assertEqual(stream_outcome(case, sse(err("server_error"), done=False), closed_early=True), "stream_error_event")


class Helpers(unittest.TestCase):
    def test_parse_metrics_and_5xx(self):
        text = (
            "# HELP memwall_requests_total x\n# TYPE memwall_requests_total counter\n"
            'memwall_requests_total{status="200"} 7\nmemwall_requests_total{status="503"} 2\n'
            'memwall_requests_total{status="500"} 1\nmemwall_kv_blocks_used 0\nmemwall_last_step_mbu 0.25\n'
        )
        m = soak.parse_metrics(text)
        self.assertEqual(m["memwall_kv_blocks_used"], 0)
        self.assertEqual(m["memwall_last_step_mbu"], 0.25)
        self.assertEqual(soak.server_5xx(m), 3)

    def test_durations(self):
        self.assertEqual(soak.parse_duration("60s"), 60)
        self.assertEqual(soak.parse_duration("10m"), 600)
        self.assertEqual(soak.parse_duration("90"), 90)
        with self.assertRaises(Exception):
            soak.parse_duration("ten minutes")

    def test_rss_within(self):
        self.assertTrue(soak.rss_within(100_000, 109_000, 0.10))
        self.assertTrue(soak.rss_within(100_000, 91_000, 0.10))
        self.assertFalse(soak.rss_within(100_000, 111_000, 0.10))
        self.assertFalse(soak.rss_within(0, 0, 0.10))

    def test_generated_cases_are_what_they_claim(self):
        cfg = Namespace(model="m", max_body_bytes=1000, context=64, kv_tokens=32)
        rng = random.Random(7)
        seen = set()
        for _ in range(2000):
            c = soak.make_case(rng, cfg)
            seen.add(c.category)
            body = b"".join(c.body) if isinstance(c.body, list) else c.body
            if c.category == "oversized":
                self.assertGreater(len(body), cfg.max_body_bytes)
            elif c.category in soak.WELL_FORMED or c.category == "disconnect":
                d = json.loads(body)
                self.assertLessEqual(d["max_tokens"], 48)
                self.assertEqual(d.get("stream", False), c.stream)
                self.assertEqual(c.category == "disconnect", c.disconnect_after > 0)
            elif c.category in ("too_long_context", "too_long_kv"):
                words = json.dumps(json.loads(body)).count("hello")
                self.assertGreater(words, cfg.context if c.category == "too_long_context" else cfg.kv_tokens)
        self.assertEqual(seen, set(soak.WEIGHTS))


if __name__ == "__main__":
    unittest.main(verbosity=1)
