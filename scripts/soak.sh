#!/usr/bin/env bash
# Long soak, by hand (root): the soak test's topology and traffic (HTTP,
# nmap scan, hping3 SYN flood, tcpreplay at rates rising every round) for
# DURATION, sampling segwatch's RSS and metrics every SAMPLE_SECS into a CSV.
# It runs the ignored `soak_long` test of tests/soak.rs, so the topology and
# the assertions are the CI soak's: it fails (exit non-zero) on a panic, a
# dead or silent process, RSS over the ceiling, a missing flow or event, or
# a slow or failed SIGTERM.
# Usage: scripts/soak.sh [DURATION]   (30m by default; 90s, 2h or seconds)
#        SAMPLE_SECS=10 SOAK_OUT=DIR scripts/soak.sh 8h
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-30m}
case "$duration" in
  *h) secs=$(( ${duration%h} * 3600 )) ;;
  *m) secs=$(( ${duration%m} * 60 )) ;;
  *s) secs=${duration%s} ;;
  *) secs=$duration ;;
esac
out=${SOAK_OUT:-target/soak/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
csv=$(realpath "$out")/samples.csv
scripts/install-deps.sh test
echo "soak: ${secs} s, samples every ${SAMPLE_SECS:-10} s into $csv; load average: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
export SEGWATCH_SOAK_SECS=$secs SEGWATCH_SOAK_CSV=$csv SEGWATCH_SOAK_SAMPLE_SECS=${SAMPLE_SECS:-10}
status=0
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --test soak --run-ignored only --no-capture soak_long 2>&1 | tee "$out/soak.log" || status=$?
else
  cargo test --locked --test soak -- --ignored --nocapture soak_long 2>&1 | tee "$out/soak.log" || status=$?
fi
if [ -s "$csv" ]; then
  # Columns: elapsed_s,step,rss_kib,hwm_kib,packets,dropped,evicted,flows_active,anomaly_events,violation_events,scrape_ms
  awk -F, 'NR > 1 { if ($3 > rss) rss = $3; if ($11 > ms) ms = $11; last = $0; n++ }
    END { split(last, f, ",");
      printf "samples %d over %.0f s; max RSS %.1f MiB; last sample: %d packets, %d dropped, %d evicted, %d anomaly events, %d violation events; slowest scrape %d ms\n",
        n, f[1], rss / 1024, f[5], f[6], f[7], f[9], f[10], ms }' "$csv"
fi
grep -E '^(round|soak:)' "$out/soak.log" | tail -n 4 || true
if [ "$status" -ne 0 ]; then
  echo "soak FAILED (see $out/soak.log)" >&2
fi
exit "$status"
