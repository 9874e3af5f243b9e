#!/usr/bin/env bash
# Set up (on a fresh Debian machine) and analyse the bundled sample capture
# with its segmentation policy: flow records, violation events, the PCI scope
# evidence report and the run summary, all under target/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh build
cargo build --release --locked -q
mkdir -p target/demo
./target/release/segwatch analyze configs/sample/office.pcap \
  --config configs/sample/segwatch.toml \
  --flows target/demo/flows.jsonl \
  --events target/demo/events.jsonl \
  --report target/demo/report \
  --summary-json target/demo/summary.json "$@"
echo
echo "flow records: target/demo/flows.jsonl ($(wc -l < target/demo/flows.jsonl) flows)"
echo "violations:   target/demo/events.jsonl ($(wc -l < target/demo/events.jsonl) events)"
echo "PCI report:   target/demo/report/pci-report.html (and .json)"
echo "summary:      target/demo/summary.json"
