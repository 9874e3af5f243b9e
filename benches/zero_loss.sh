#!/usr/bin/env bash
# Zero-loss capture rate on a mirror port (root): the soak test's topology
# (client -> router -> server, the router's traffic mirrored by tc to a
# monitor namespace). A generated capture (`segwatch generate bench`, 20,000
# flows, clients rewritten into 198.19.0.0/16) is replayed with tcpreplay
# from the client at each rate in RATES for SECS seconds, while the release
# segwatch (`run` with flows, events and metrics, as deployed), then
# `tcpdump -w /dev/null`, captures on the monitor port. A rate is lossless
# when the tool captured every packet tcpreplay sent and reported no drop.
# Prints each run's table and the median, over RUNS runs, of the highest
# lossless rate of each, of their ratio and of the lowest rate that lost,
# with the load average.
# It runs the ignored `zero_loss` test of tests/soak.rs (one topology).
# Usage: [RUNS=3] [RATES=10000,20000,...] [SECS=5] [SEGWATCH_ARGS=...]
#        [ZERO_LOSS_CONFIG=segwatch.toml] benches/zero_loss.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh test
runs=${RUNS:-3}
export ZERO_LOSS_RATES=${RATES:-10000,20000,50000,100000,150000,200000,300000}
export ZERO_LOSS_SECS=${SECS:-5}
cargo build --release --locked -q
export SEGWATCH_BIN=$PWD/target/release/segwatch
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for i in $(seq 1 "$runs"); do
  echo "== run $i of $runs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
  if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --locked --test soak --run-ignored only --no-capture zero_loss 2>&1
  else
    cargo test --locked --test soak -- --ignored --nocapture zero_loss 2>&1
  fi | grep -E '^( *pps asked| *[0-9]+ \||load average|ZERO_LOSS|SKIPPED)' | tee -a "$log"
done
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
field() { grep '^ZERO_LOSS' "$log" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
if grep -q '^ZERO_LOSS' "$log"; then
  echo "median of $(grep -c '^ZERO_LOSS' "$log") runs: highest lossless rate segwatch $(field segwatch | median) pps, tcpdump $(field tcpdump | median) pps, ratio $(field ratio | median); lowest rate with loss segwatch $(field segwatch_first_loss | median), tcpdump $(field tcpdump_first_loss | median) (0: none); load average (1 min, at the end of each run) $(field load1 | tr '\n' ' ')"
fi
