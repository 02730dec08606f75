#!/usr/bin/env bash
# The official OpenAI Python client against `memwall serve` with the default
# model: chat and completions, streaming and not, logprobs, models list, error cases.
#
#   scripts/test-openai-client.sh
#
# Makes a venv in .cache/venv-openai (pip install openai from PyPI), builds
# memwall, starts `memwall serve` on a free loopback port with an API key,
# waits for /health, runs tests/openai_client/test_openai_client.py, and
# stops the server (SIGTERM, which must exit 0).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*" >&2; }

VENV=.cache/venv-openai
if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c 'import openai' 2>/dev/null; then
    step "making $VENV (pip install openai)"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check 'openai>=1.40,<3'
fi

step "building memwall (release)"
cargo build --release --locked -p memwall-cli
BIN="${CARGO_TARGET_DIR:-target}/release/memwall"

# The default model (no --model): look in the project cache that
# scripts/fetch-test-data.sh fills, unless MEMWALL_MODELS says otherwise.
export MEMWALL_MODELS="${MEMWALL_MODELS:-$PWD/.cache/models}"

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
KEY="sk-memwall-test-$RANDOM$RANDOM"
LOG=$(mktemp)
step "starting memwall serve on 127.0.0.1:$PORT (log: $LOG)"
"$BIN" serve --port "$PORT" --api-key "$KEY" --served-model-name smollm2 \
    --kv-memory 64MiB --shutdown-grace 5 >"$LOG" 2>&1 &
SERVER=$!
cleanup() {
    if kill -0 "$SERVER" 2>/dev/null; then kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; fi
}
trap cleanup EXIT

for _ in $(seq 1 600); do
    if curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1; then break; fi
    if ! kill -0 "$SERVER" 2>/dev/null; then cat "$LOG" >&2; echo "memwall serve exited early" >&2; exit 1; fi
    sleep 0.5
done
curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null || { cat "$LOG" >&2; echo "server never became ready" >&2; exit 1; }

step "running the openai client test"
MEMWALL_BASE_URL="http://127.0.0.1:$PORT/v1" MEMWALL_API_KEY="$KEY" MEMWALL_MODEL=smollm2 \
    "$VENV/bin/python" tests/openai_client/test_openai_client.py || { tail -n 50 "$LOG" >&2; exit 1; }

step "checking /metrics and graceful shutdown"
metrics=$(curl -fsS "http://127.0.0.1:$PORT/metrics")
grep -q '^memwall_time_to_first_token_seconds_count [1-9]' <<<"$metrics" || { echo "no TTFT in /metrics" >&2; exit 1; }
kill -TERM "$SERVER"
status=0
wait "$SERVER" || status=$?
trap - EXIT
if [[ $status -ne 0 ]]; then tail -n 50 "$LOG" >&2; echo "memwall serve exited with $status after SIGTERM" >&2; exit 1; fi
echo "openai client test passed; access log lines: $(grep -c 'memwall::access' "$LOG")"
rm -f "$LOG"
