#!/usr/bin/env bash
# Side-by-side benchmark of memwall and llama.cpp on the same GGUF files.
#
#   scripts/bench-vs-llama-cpp.sh                 # the full run behind docs/BENCHMARKS.md
#   scripts/bench-vs-llama-cpp.sh --quick         # development: -p 64 -n 16 -r 2, Q4_0 + SmolLM2 only
#   MEMWALL_BENCH_QUICK=1 scripts/bench-vs-llama-cpp.sh    # same as --quick
#   scripts/bench-vs-llama-cpp.sh -r 3 -t 2 --files q4_0,q8_0
#
# Options (defaults in brackets):
#   -p N            prompt tokens of the pp test [512]
#   -n N            decode steps of the tg test [128]
#   -r N            repetitions per test, median reported [5]
#   -t LIST         thread counts [1,2]
#   --files LIST    which files, in order [q4_0,q8_0,smollm2,f16,q4_k_m]
#   --quick         -p 64 -n 16 -r 2 --files q4_0,smollm2
#   --build-only    only build llama.cpp (if needed) and exit
#
# Steps, all cached under .cache/ (git-ignored):
#  1. build llama.cpp from .cache/llama.cpp-src (the vendor/llama.cpp of the
#     PyPI sdist of llama-cpp-python 0.3.36, unpacked by
#     scripts/fetch-test-data.sh) with the pip-installed cmake + ninja in
#     .cache/pip/build-tools: CPU only, Release, -DGGML_NATIVE=ON, targets
#     llama-bench, llama-quantize, llama-server -> .cache/llama.cpp-build/
#     (only if a binary is missing);
#  2. cargo build --release of memwall;
#  3. the files, in .cache/bench/: TinyLlama-1.1B-shaped random weights in
#     F16, Q8_0 and Q4_0 written by `memwall bench --synthetic ... --write-gguf`,
#     Q4_K_M made from the F16 file by llama-quantize, plus the real
#     SmolLM2-135M-Instruct Q4_1 default model;
#  4. memwall's probe (bandwidth, peak FLOP/s) -> .cache/bench/probe.json;
#  5. tools/bench_vs_llama_cpp.py: for each file, thread count and test,
#     llama-bench (default, then --repack 0) and memwall bench, back to
#     back, the ratio against llama.cpp's faster one; prints the markdown table
#     and writes raw results to .cache/bench/results.json (and the table so
#     far to .cache/bench/table.md after every row).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${MEMWALL_CACHE:-$REPO/.cache}"
SRC="$CACHE/llama.cpp-src"
BUILD="$CACHE/llama.cpp-build"
TOOLS="$CACHE/pip/build-tools"
OUT="$CACHE/bench"
PY="${PYTHON:-python3}"

N_PROMPT=512
N_GEN=128
REPS=5
THREADS=1,2
FILES=q4_0,q8_0,smollm2,f16,q4_k_m
QUICK="${MEMWALL_BENCH_QUICK:-0}"
BUILD_ONLY=0

log() { printf '[bench-vs-llama-cpp] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

ARGS=("$@")
for a in "${ARGS[@]}"; do [[ "$a" == --quick ]] && QUICK=1; done
if [[ "$QUICK" == 1 ]]; then
    N_PROMPT=64; N_GEN=16; REPS=2; FILES=q4_0,smollm2
fi
while [[ $# -gt 0 ]]; do
    case "$1" in
        -p) N_PROMPT="$2"; shift 2 ;;
        -n) N_GEN="$2"; shift 2 ;;
        -r) REPS="$2"; shift 2 ;;
        -t) THREADS="$2"; shift 2 ;;
        --files) FILES="$2"; shift 2 ;;
        --quick) shift ;;
        --build-only) BUILD_ONLY=1; shift ;;
        -h|--help) sed -n '2,34p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done

# 1. llama.cpp
# ggml's AMX kernels (compiled in by -march=native on CPUs that report AMX)
# crash with SIGSEGV in ggml_backend_amx_mul_mat on this project's VMs, whose
# hypervisor does not give guests usable AMX tile state; they are switched
# off with -mno-amx-* (everything else -march=native enables stays on).
LLAMA_BENCH="$BUILD/bin/llama-bench"
LLAMA_QUANTIZE="$BUILD/bin/llama-quantize"
CPU_FLAGS=""
if grep -qw amx_tile /proc/cpuinfo 2>/dev/null; then
    CPU_FLAGS="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
fi
CMAKE_ARGS=(-DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=OFF
    -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF
    -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF -DGGML_OPENMP=ON
    "-DCMAKE_C_FLAGS=$CPU_FLAGS" "-DCMAKE_CXX_FLAGS=$CPU_FLAGS")
STAMP="$BUILD/.memwall-cmake-args"
if [[ ! -x "$LLAMA_BENCH" || ! -x "$LLAMA_QUANTIZE" || ! -x "$BUILD/bin/llama-server" \
      || "$(cat "$STAMP" 2>/dev/null)" != "${CMAKE_ARGS[*]}" ]]; then
    [[ -f "$SRC/CMakeLists.txt" ]] || die "$SRC is missing: run scripts/fetch-test-data.sh first"
    [[ -x "$TOOLS/bin/cmake" ]] || die "$TOOLS/bin/cmake is missing: run scripts/fetch-test-data.sh first"
    log "building llama.cpp in $BUILD (CPU only, native; 10+ minutes on 2 cores)"
    export PYTHONPATH="$TOOLS${PYTHONPATH:+:$PYTHONPATH}"
    "$TOOLS/bin/cmake" -S "$SRC" -B "$BUILD" -G Ninja -DCMAKE_MAKE_PROGRAM="$TOOLS/bin/ninja" "${CMAKE_ARGS[@]}" >&2
    "$TOOLS/bin/cmake" --build "$BUILD" -j "$(nproc)" --target llama-bench llama-quantize llama-server >&2
    echo "${CMAKE_ARGS[*]}" > "$STAMP"
fi
[[ "$BUILD_ONLY" == 1 ]] && { log "llama.cpp is built in $BUILD"; exit 0; }

# 2. memwall
log "building memwall (release)"
(cd "$REPO" && cargo build --release -q -p memwall-cli)
# A private copy: other builds in the shared target directory cannot swap
# the binary in the middle of a run.
mkdir -p "$OUT"
cp "$REPO/target/release/memwall" "$OUT/memwall"
MEMWALL="$OUT/memwall"

# 3. files
mkdir -p "$OUT"
SHAPE=tinyllama-1.1b
synthetic() { # TYPE -> path, written once
    local path="$OUT/$SHAPE-$1.gguf"
    if [[ ! -s "$path" ]]; then
        log "writing $path"
        "$MEMWALL" bench --synthetic "$SHAPE:$1" --write-gguf "$path.tmp" >&2
        mv "$path.tmp" "$path"
    fi
    echo "$path"
}
paths=()
IFS=, read -ra wanted <<< "$FILES"
for f in "${wanted[@]}"; do
    case "$f" in
        f16|q8_0|q4_0|q4_1|q5_0|q5_1|bf16|f32) paths+=("$(synthetic "$f")") ;;
        q4_k_m)
            path="$OUT/$SHAPE-q4_k_m.gguf"
            if [[ ! -s "$path" ]]; then
                f16="$(synthetic f16)"
                log "llama-quantize $f16 -> $path (Q4_K_M)"
                "$LLAMA_QUANTIZE" "$f16" "$path.tmp" Q4_K_M >&2
                mv "$path.tmp" "$path"
            fi
            paths+=("$path") ;;
        smollm2)
            path="$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf"
            [[ -s "$path" ]] || die "$path is missing: run scripts/fetch-test-data.sh first"
            paths+=("$path") ;;
        *) die "unknown file '$f' (f16, q8_0, q4_0, q4_k_m, smollm2, or another synthetic type)" ;;
    esac
done

# 4. probe, fresh for every run (the machine's state is part of the result)
log "probe -> $OUT/probe.json"
"$MEMWALL" bench --probe -t "$THREADS" --probe-file "$OUT/probe.json" >&2

# 5. side by side
log "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$PY" "$REPO/tools/bench_vs_llama_cpp.py" \
    --llama-bench "$LLAMA_BENCH" --memwall "$MEMWALL" --probe "$OUT/probe.json" \
    -p "$N_PROMPT" -n "$N_GEN" -t "$THREADS" -r "$REPS" \
    --raw "$OUT/results.json" --table "$OUT/table.md" "${paths[@]}"
