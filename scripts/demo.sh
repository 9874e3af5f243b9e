#!/usr/bin/env bash
# Set up (on a fresh Debian machine) and analyse the bundled sample capture.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh build
cargo build --release --locked -q
mkdir -p target/demo
./target/release/segwatch analyze configs/sample/office.pcap \
  --config configs/sample/segwatch.toml \
  --flows target/demo/flows.jsonl \
  --summary-json target/demo/summary.json "$@"
echo
echo "flow records: target/demo/flows.jsonl ($(wc -l < target/demo/flows.jsonl) flows), summary: target/demo/summary.json"
