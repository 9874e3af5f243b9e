#!/usr/bin/env bash
# Set up (on a fresh Debian machine) and run the whole test suite:
# formatting, lints, unit and integration tests (including the live-capture
# test in network namespaces when run as root, and the tshark cross-check on
# ../shared/pcaps when present).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh test
cargo fmt --all -- --check
cargo clippy --locked --all-targets -q -- -D warnings
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --no-fail-fast
else
  cargo test --locked --no-fail-fast
fi
