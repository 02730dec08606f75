#!/usr/bin/env bash
# Runs every cargo-fuzz target for a fixed time, one after another on one
# core, and prints the executions and crashes of each.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     (default: 300 seconds, every target)
#   FUZZ_NO_BUILD=1 scripts/fuzz.sh ...       (run the binaries already built)
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
# Each target starts from its committed seeds (fuzz/corpus/<target>/) and
# grows a git-ignored working corpus (fuzz/work/<target>/) that later runs
# reuse. A crash, timeout (a unit over 10 s) or out-of-memory (over 2 GiB)
# stops that target and leaves the input in fuzz/artifacts/<target>/; turn
# it into a regression test (see fuzz/README.md). Exits non-zero if any
# target crashed. Not part of scripts/test.sh: it is long by design.
#
# chat_template runs in libFuzzer's fork mode and keeps going past
# out-of-memory and timeout inputs (counted in the `oom/timeout` column):
# string growth inside a template is a known unbounded case (see
# docs/RELIABILITY.md), and one such input must not end the search for
# panics.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

secs=${1:-300}
shift || true
if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cd fuzz && cargo +nightly fuzz list)
fi

if [ -z "${FUZZ_NO_BUILD:-}" ]; then
    (cd fuzz && cargo +nightly fuzz build) >&2
fi
host=$(rustc +nightly -vV | sed -n 's/^host: //p')
bin_dir="$root/fuzz/target/$host/release"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_odr_violation=0}"

results=()
failed=0
for t in "${targets[@]}"; do
    work="$root/fuzz/work/$t"
    artifacts="$root/fuzz/artifacts/$t"
    log="$root/fuzz/work/$t.log"
    mkdir -p "$work" "$artifacts"
    before=$(find "$artifacts" -type f \( -name 'crash-*' -o -name 'leak-*' \) | wc -l)
    before_slow=$(find "$artifacts" -type f \( -name 'oom-*' -o -name 'timeout-*' \) | wc -l)
    extra=()
    if [ "$t" = chat_template ]; then
        extra=(-fork=1 -ignore_ooms=1 -ignore_timeouts=1 -malloc_limit_mb=512)
    fi
    printf '==> %s: %s s\n' "$t" "$secs" >&2
    set +e
    ("$bin_dir/$t" "$work" "$root/fuzz/corpus/$t" \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$artifacts/" "${extra[@]}") >"$log" 2>&1
    rc=$?
    set -e
    execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)
    if [ -z "$execs" ]; then  # fork mode: the last status line counts every job's runs
        execs=$(grep -o '^#[0-9]*:' "$log" | tail -1 | tr -d '#:' || true)
    fi
    after=$(find "$artifacts" -type f \( -name 'crash-*' -o -name 'leak-*' \) | wc -l)
    crashes=$((after - before))
    slow=$(($(find "$artifacts" -type f \( -name 'oom-*' -o -name 'timeout-*' \) | wc -l) - before_slow))
    if [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ] && [ "$slow" -eq 0 ]; then
        crashes="?"  # libFuzzer failed without writing an input: read the log
    fi
    if [ "$rc" -ne 0 ]; then
        failed=1
    fi
    corpus=$(find "$work" -type f | wc -l)
    results+=("$(printf '%-14s %8s %12s %8s %12s %8s  %s' "$t" "$secs" "${execs:-?}" "$crashes" "$slow" "$corpus" "$log")")
done

printf '\n%-14s %8s %12s %8s %12s %8s  %s\n' target seconds executions crashes oom/timeout corpus log
printf '%s\n' "${results[@]}"
exit "$failed"
