#!/usr/bin/env bash
# Side-by-side serving benchmark: `memwall serve` and llama.cpp's `llama-server`
# on the same GGUF files, measured by `memwall bench-serve` in one run.
#
#   scripts/bench-serve-vs-llama-server.sh              # the full run (docs/BENCHMARKS.md, "Serving under load")
#   scripts/bench-serve-vs-llama-server.sh --quick      # development: small prompts, few requests
#   scripts/bench-serve-vs-llama-server.sh -c 1,4,16,64 --files q4_0
#
# Options (defaults in brackets):
#   -c LIST             concurrency levels [1,4,16]
#   --requests N        requests per level [4 x concurrency, at least 32]
#   --prompt-tokens N   prompt length in tokens [256]
#   --output-tokens N   output tokens per request, ignore_eos [128]
#   -t N                threads of both servers [2]
#   --kv-memory SIZE    memwall's KV cache; llama-server gets the same number of
#                       KV tokens (f16 both) as its total context [256MiB]
#   --files LIST        q4_0 (TinyLlama-1.1B-shaped, random weights), smollm2
#                       (the default model), or another synthetic type [q4_0,smollm2]
#   --seed S            prompts' seed, the same for both servers [0]
#   --quick             -c 1,4 --requests 8 --prompt-tokens 32 --output-tokens 16
#
# Environment: LLAMA_SERVER_ARGS adds arguments to llama-server's command line.
#
# Steps, all cached under .cache/ (git-ignored):
#  1. llama.cpp (llama-server included) built by scripts/bench-vs-llama-cpp.sh
#     --build-only from the llama-cpp-python 0.3.36 sdist, if not built yet;
#  2. cargo build --release of memwall, copied to .cache/bench/serve/memwall;
#  3. the files: .cache/bench/tinyllama-1.1b-q4_0.gguf written by `memwall bench
#     --synthetic tinyllama-1.1b:q4_0 --write-gguf` (shared with
#     bench-vs-llama-cpp.sh) and .cache/models/SmolLM2-135M-Instruct.Q4_1.gguf;
#  4. per file, one server at a time on a free loopback port: memwall serve
#     (-t T --kv-memory SIZE), then llama-server (-t T -tb T, -np = the highest
#     concurrency, continuous batching, one unified KV buffer of the same
#     token capacity memwall reported), each measured by
#     `memwall bench-serve -c LIST` with the same prompts (same seed), JSON and
#     an SVG plot per server -> .cache/bench/serve/<file>-<server>.{json,svg};
#  5. the comparison table -> .cache/bench/serve/table.md (printed) and all
#     levels -> .cache/bench/serve/results.json. Server logs are kept beside them.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${MEMWALL_CACHE:-$REPO/.cache}"
BENCH="$CACHE/bench"
OUT="$BENCH/serve"
LLAMA_SERVER="$CACHE/llama.cpp-build/bin/llama-server"
PY="${PYTHON:-python3}"

CONCURRENCY=1,4,16
REQUESTS=""
PROMPT_TOKENS=256
OUTPUT_TOKENS=128
THREADS=2
KV_MEMORY=256MiB
FILES=q4_0,smollm2
SEED=0

log() { printf '[bench-serve-vs-llama-server] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

ARGS=("$@")
for a in "${ARGS[@]}"; do
    if [[ "$a" == --quick ]]; then
        CONCURRENCY=1,4; REQUESTS=8; PROMPT_TOKENS=32; OUTPUT_TOKENS=16
    fi
done
while [[ $# -gt 0 ]]; do
    case "$1" in
        -c) CONCURRENCY="$2"; shift 2 ;;
        --requests) REQUESTS="$2"; shift 2 ;;
        --prompt-tokens) PROMPT_TOKENS="$2"; shift 2 ;;
        --output-tokens) OUTPUT_TOKENS="$2"; shift 2 ;;
        -t) THREADS="$2"; shift 2 ;;
        --kv-memory) KV_MEMORY="$2"; shift 2 ;;
        --files) FILES="$2"; shift 2 ;;
        --seed) SEED="$2"; shift 2 ;;
        --quick) shift ;;
        -h|--help) sed -n '2,37p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done
MAX_C="$(tr ',' '\n' <<< "$CONCURRENCY" | sort -n | tail -1)"

# 1. llama.cpp
"$REPO/scripts/bench-vs-llama-cpp.sh" --build-only
[[ -x "$LLAMA_SERVER" ]] || die "$LLAMA_SERVER is missing after the build"

# 2. memwall: a private copy, so other builds in the shared target directory
# cannot swap the binary in the middle of a run.
log "building memwall (release)"
(cd "$REPO" && cargo build --release -q -p memwall-cli)
mkdir -p "$OUT"
cp "$REPO/target/release/memwall" "$OUT/memwall"
MEMWALL="$OUT/memwall"

# 3. files
SHAPE=tinyllama-1.1b
file_of() { # NAME -> path
    case "$1" in
        smollm2)
            local p="$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf"
            [[ -s "$p" ]] || die "$p is missing: run scripts/fetch-test-data.sh first"
            echo "$p" ;;
        *)
            local p="$BENCH/$SHAPE-$1.gguf"
            if [[ ! -s "$p" ]]; then
                log "writing $p"
                "$MEMWALL" bench --synthetic "$SHAPE:$1" --write-gguf "$p.tmp" >&2
                mv "$p.tmp" "$p"
            fi
            echo "$p" ;;
    esac
}

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

SERVER_PID=""
stop_server() {
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
}
trap stop_server EXIT

wait_healthy() { # PORT LOG: until /health answers 200, or the server dies
    local i
    for i in $(seq 1 600); do
        kill -0 "$SERVER_PID" 2>/dev/null || { tail -20 "$2" >&2; die "the server exited while starting (log: $2)"; }
        if "$PY" - "$1" <<'EOF' 2>/dev/null; then return 0; fi
import sys, urllib.request
sys.exit(0 if urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=2).status == 200 else 1)
EOF
        sleep 0.5
    done
    die "the server did not become healthy in 300 s (log: $2)"
}

bench() { # PORT NAME: run bench-serve against the server on PORT
    local req=()
    [[ -n "$REQUESTS" ]] && req=(--requests "$REQUESTS")
    "$MEMWALL" bench-serve --url "http://127.0.0.1:$1" --concurrency "$CONCURRENCY" "${req[@]}" \
        --prompt-tokens "$PROMPT_TOKENS" --output-tokens "$OUTPUT_TOKENS" --seed "$SEED" \
        --json "$OUT/$2.json" --plot "$OUT/$2.svg"
}

log "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
runs=()
IFS=, read -ra wanted <<< "$FILES"
for f in "${wanted[@]}"; do
    path="$(file_of "$f")"

    # 4a. memwall serve
    port="$(free_port)"
    mlog="$OUT/$f-memwall.log"
    log "$f: memwall serve on :$port (-t $THREADS --kv-memory $KV_MEMORY)"
    "$MEMWALL" serve --model "$path" --port "$port" -t "$THREADS" --kv-memory "$KV_MEMORY" \
        --max-queue 4096 > "$mlog" 2>&1 &
    SERVER_PID=$!
    wait_healthy "$port" "$mlog"
    kv_tokens=""
    for _ in $(seq 1 50); do # the line follows readiness by a moment
        kv_tokens="$(sed -n 's/.*KV cache \([0-9]*\) tokens.*/\1/p' "$mlog" | head -1)"
        [[ -n "$kv_tokens" ]] && break
        sleep 0.2
    done
    [[ -n "$kv_tokens" ]] || die "no KV capacity in $mlog"
    log "$f: memwall's KV cache holds $kv_tokens tokens"
    bench "$port" "$f-memwall"
    stop_server

    # 4b. llama-server with the same threads and KV tokens
    port="$(free_port)"
    llog="$OUT/$f-llama-server.log"
    log "$f: llama-server on :$port (-t $THREADS -np $MAX_C -c $kv_tokens --kv-unified -cb)"
    # shellcheck disable=SC2086
    "$LLAMA_SERVER" -m "$path" --host 127.0.0.1 --port "$port" -t "$THREADS" -tb "$THREADS" \
        -np "$MAX_C" -c "$kv_tokens" --kv-unified -cb ${LLAMA_SERVER_ARGS:-} > "$llog" 2>&1 &
    SERVER_PID=$!
    wait_healthy "$port" "$llog"
    bench "$port" "$f-llama-server"
    stop_server
    runs+=("$f")
done

# 5. the comparison
"$PY" - "$OUT" "$KV_MEMORY" "$THREADS" "$PROMPT_TOKENS" "$OUTPUT_TOKENS" "${runs[@]}" <<'EOF'
import json, os, sys
out, kv, threads, p, n, *files = sys.argv[1:]
rows, raw = [], {}
def fails(r):
    if not r["failed"]:
        return "0"
    return f'{r["failed"]} (' + ", ".join(f"{v}×{k}" for k, v in sorted(r["failures"].items())) + ")"
for f in files:
    m = json.load(open(os.path.join(out, f"{f}-memwall.json")))
    l = json.load(open(os.path.join(out, f"{f}-llama-server.json")))
    raw[f] = {"memwall": m, "llama-server": l}
    for a, b in zip(m, l):
        ratio = a["output_tokens_per_s"] / b["output_tokens_per_s"] if b["output_tokens_per_s"] else float("nan")
        rows.append(
            f'| {f} | {a["concurrency"]} | {a["output_tokens_per_s"]:.1f} | {b["output_tokens_per_s"]:.1f} | **{ratio:.2f}×** '
            f'| {a["ttft_ms_p99"]:.0f} | {b["ttft_ms_p99"]:.0f} | {a["tpot_ms_p50"]:.1f} | {b["tpot_ms_p50"]:.1f} '
            f'| {fails(a)} | {fails(b)} |'
        )
table = "\n".join([
    f"prompt {p} tokens, output {n} tokens (ignore_eos), {threads} threads, KV {kv} (same tokens for both)",
    "",
    "| file | concurrency | memwall tok/s | llama-server tok/s | ratio | memwall TTFT p99 ms | llama-server TTFT p99 ms "
    "| memwall TPOT p50 ms | llama-server TPOT p50 ms | memwall failed | llama-server failed |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    *rows,
])
open(os.path.join(out, "table.md"), "w").write(table + "\n")
json.dump(raw, open(os.path.join(out, "results.json"), "w"), indent=1)
print(table)
EOF
log "table: $OUT/table.md; raw: $OUT/results.json; plots: $OUT/*.svg"
