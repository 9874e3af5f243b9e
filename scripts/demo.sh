#!/usr/bin/env bash
# Set up (on a fresh Debian machine) and analyse the bundled sample capture
# with its segmentation policy: flow records, violation and anomaly events,
# the PCI scope evidence report and the run summary, all under target/demo/;
# then learn a baseline from the generated anomaly scenario and detect with it.
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

# Anomaly detection against a learned baseline: two days of the office to
# learn from, then a morning with one injected case of every detector's kind.
echo
echo "== anomaly scenario: learn two days, then detect on Wednesday morning"
./target/release/segwatch generate scenario --out target/demo/scenario >/dev/null
./target/release/segwatch learn target/demo/scenario/learn.pcap \
  --config target/demo/scenario/segwatch.toml \
  --out target/demo/scenario/baseline.json --quiet 2>/dev/null
./target/release/segwatch analyze target/demo/scenario/detect.pcap \
  --config target/demo/scenario/segwatch.toml \
  --baseline target/demo/scenario/baseline.json \
  --events target/demo/scenario/events.jsonl --quiet 2>/dev/null
grep '"kind":"anomaly"' target/demo/scenario/events.jsonl | python3 -c '
import json, sys
for line in sys.stdin:
    e = json.loads(line)
    print("%-7s %-13s %s" % (e["severity"], e["detector"], e["explanation"]))
'
echo
echo "flow records: target/demo/flows.jsonl ($(wc -l < target/demo/flows.jsonl) flows)"
echo "events:       target/demo/events.jsonl ($(grep -c segmentation_violation target/demo/events.jsonl) violations, $(grep -c '"kind":"anomaly"' target/demo/events.jsonl) anomalies)"
echo "PCI report:   target/demo/report/pci-report.html (and .json)"
echo "summary:      target/demo/summary.json"
echo "scenario:     target/demo/scenario/ (captures, baseline.json, events.jsonl)"
