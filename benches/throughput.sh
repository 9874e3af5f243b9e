#!/usr/bin/env bash
# End-to-end throughput of `segwatch analyze` against plain reads of the same
# file in the same run: a minimal libpcap loop with the same pcap crate
# (benches/pcap_read.rs) and `tcpdump -r FILE -w /dev/null`; the same
# minimal loop over segwatch's own file reader (what reading costs segwatch); and segwatch
# again with a segmentation policy of 1,000 zones and 1,000 rules loaded
# (judging every flow, writing the events); segwatch serving Prometheus
# metrics while scraped every 100 ms; and segwatch with every anomaly
# detector on, with and without a baseline learned from the same file
# (20,000 hosts, the default cap), against the pipeline alone (--no-detect).
# Prints packets/s and the ratios; each tool runs ROUNDS times, interleaved, best time kept
# (shared machines are noisy; ratios matter more than absolute figures).
#
# Usage: benches/throughput.sh [FILE]      (default: generate bench-data/bench.pcap,
#        2,000,000 packets in 200,000 flows)
#        ROUNDS=5 WORKERS=1 benches/throughput.sh FILE
#        CLIENTS=2000 benches/throughput.sh bench-data/office.pcap   (2,000 client
#        hosts instead of a new one per flow: an office-shaped network)
#        CLIENTS=2000 FLOW_GAP_US=3000 benches/throughput.sh bench-data/office-10min.pcap
#        (the same flows over 10 minutes: they end while the capture goes on)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
scripts/install-deps.sh test >/dev/null
cargo build --release --locked -q
cargo bench --locked --bench pcap_read --no-run -q 2>/dev/null
SEGWATCH=./target/release/segwatch
FILE=${1:-bench-data/bench.pcap}
if [ ! -f "$FILE" ]; then
  mkdir -p "$(dirname "$FILE")"
  $SEGWATCH generate bench --out "$FILE" ${CLIENTS:+--clients "$CLIENTS"} ${FLOW_GAP_US:+--flow-gap-us "$FLOW_GAP_US"}
fi
mkdir -p bench-data
POLICY=bench-data/policy-1000.toml
[ -f "$POLICY" ] || $SEGWATCH generate policy --zones 1000 --rules 1000 --out "$POLICY" >/dev/null
BASELINE=bench-data/$(basename "$FILE" .pcap)-baseline.json
[ -f "$BASELINE" ] || $SEGWATCH learn "$FILE" --out "$BASELINE" --quiet
READER=$(ls -t target/release/deps/pcap_read-* | grep -v '\.d$' | head -1)
cat "$FILE" > /dev/null   # warm the page cache for every contender alike

now() { date +%s.%N; }
best_segwatch=999999 best_pcap=999999 best_tcpdump=999999 best_policy=999999 best_metrics=999999
best_alone=999999 best_baseline=999999 best_own=999999
policy_ratios=() metrics_ratios=() detect_ratios=() baseline_ratios=() read_ratios=() alone_read_ratios=()
# segwatch serving metrics while a scraper fetches /metrics every 100 ms
# (ten times Prometheus's usual rate).
start_scraper() {
  # One long-lived scraper process, as Prometheus is (spawning curl ten
  # times a second would cost more CPU than the scrapes themselves); it is
  # started, and has imported its modules, before the timed run.
  python3 -c '
import time, urllib.request
while True:
    try:
        urllib.request.urlopen("http://127.0.0.1:19947/metrics", timeout=1).read()
    except Exception:
        pass
    time.sleep(0.1)
' &
  scraper=$!
  sleep 0.5
}
stop_scraper() { kill "$scraper"; wait "$scraper" 2>/dev/null || true; }
for r in $(seq "$ROUNDS"); do
  # An untimed run first, which also writes the summary read at the end:
  # the timed runs below write nothing that the others do not.
  $SEGWATCH analyze "$FILE" --quiet --no-detect ${WORKERS:+--workers "$WORKERS"} --summary-json bench-data/summary.json
  # The pipeline alone: the reference for the ratios below, each measured
  # right after it so that both share the machine's mood.
  t0=$(now); $SEGWATCH analyze "$FILE" --quiet --no-detect ${WORKERS:+--workers "$WORKERS"}; t1=$(now)
  a=$(echo "$t1 - $t0" | bc -l)
  t0=$(now); $SEGWATCH analyze "$FILE" --quiet ${WORKERS:+--workers "$WORKERS"}; t1=$(now)
  s=$(echo "$t1 - $t0" | bc -l)
  detect_ratios+=("$(echo "$a / $s" | bc -l)")
  t0=$(now); $SEGWATCH analyze "$FILE" --quiet ${WORKERS:+--workers "$WORKERS"} --baseline "$BASELINE" --events bench-data/anomalies.jsonl; t1=$(now)
  b=$(echo "$t1 - $t0" | bc -l)
  baseline_ratios+=("$(echo "$a / $b" | bc -l)")
  t0=$(now); $SEGWATCH analyze "$FILE" --quiet --no-detect ${WORKERS:+--workers "$WORKERS"} --config "$POLICY" --events bench-data/events.jsonl; t1=$(now)
  y=$(echo "$t1 - $t0" | bc -l)
  start_scraper
  t0=$(now); $SEGWATCH analyze "$FILE" --quiet --no-detect ${WORKERS:+--workers "$WORKERS"} --metrics-listen 127.0.0.1:19947 2>/dev/null; t1=$(now)
  stop_scraper
  m=$(echo "$t1 - $t0" | bc -l)
  best_metrics=$(echo "if ($m < $best_metrics) $m else $best_metrics" | bc -l)
  metrics_ratios+=("$(echo "$a / $m" | bc -l)")
  best_alone=$(echo "if ($a < $best_alone) $a else $best_alone" | bc -l)
  best_baseline=$(echo "if ($b < $best_baseline) $b else $best_baseline" | bc -l)
  t0=$(now); "$READER" "$FILE" > bench-data/pcap_read.out; t1=$(now)
  p=$(echo "$t1 - $t0" | bc -l)
  read_ratios+=("$(echo "$p / $s" | bc -l)")
  alone_read_ratios+=("$(echo "$p / $a" | bc -l)")
  t0=$(now); "$READER" "$FILE" --segwatch-reader > /dev/null; t1=$(now)
  o=$(echo "$t1 - $t0" | bc -l)
  best_own=$(echo "if ($o < $best_own) $o else $best_own" | bc -l)
  t0=$(now); tcpdump -q -r "$FILE" -w /dev/null 2>/dev/null; t1=$(now)
  d=$(echo "$t1 - $t0" | bc -l)
  best_segwatch=$(echo "if ($s < $best_segwatch) $s else $best_segwatch" | bc -l)
  best_policy=$(echo "if ($y < $best_policy) $y else $best_policy" | bc -l)
  policy_ratios+=("$(echo "$a / $y" | bc -l)")
  best_pcap=$(echo "if ($p < $best_pcap) $p else $best_pcap" | bc -l)
  best_tcpdump=$(echo "if ($d < $best_tcpdump) $d else $best_tcpdump" | bc -l)
  printf 'round %d: segwatch %.3fs  alone %.3fs  +baseline %.3fs  pcap_read %.3fs  own reader %.3fs  tcpdump %.3fs  +policy %.3fs  +metrics %.3fs\n' "$r" "$s" "$a" "$b" "$p" "$o" "$d" "$y" "$m"
done
frames=$(sed -n 's/.*frames=\([0-9]*\).*/\1/p' bench-data/pcap_read.out)
flows=$(python3 -c 'import json,sys; print(json.load(open("bench-data/summary.json"))["flows"])')
workers=$(python3 -c 'import json,sys; print(json.load(open("bench-data/summary.json"))["workers"])')
rss=$( { /usr/bin/time -f '%M' $SEGWATCH analyze "$FILE" --quiet ${WORKERS:+--workers "$WORKERS"} ; } 2>&1 | tail -1)
echo
echo "file: $FILE ($frames packets, $flows flows), segwatch workers: $workers, best of $ROUNDS"
printf '%-22s %10s %14s\n' "" "seconds" "packets/s"
for row in "segwatch analyze:$best_segwatch" "pipeline alone:$best_alone" "with a baseline:$best_baseline" "pcap crate read:$best_pcap" "segwatch reader alone:$best_own" "tcpdump -w /dev/null:$best_tcpdump" "segwatch + policy:$best_policy" "segwatch + metrics:$best_metrics"; do
  name=${row%%:*}; t=${row##*:}
  printf '%-22s %10.3f %14.0f\n' "$name" "$t" "$(echo "$frames / $t" | bc -l)"
done
printf 'ratio segwatch / pcap crate read: %.2f\n' "$(echo "$best_pcap / $best_segwatch" | bc -l)"
printf 'ratio segwatch reader alone / pcap crate read: %.2f\n' "$(echo "$best_pcap / $best_own" | bc -l)"
printf 'ratio segwatch / tcpdump:         %.2f\n' "$(echo "$best_tcpdump / $best_segwatch" | bc -l)"
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {printf "%.2f", a[int((NR+1)/2)]}'; }
printf 'ratio segwatch / pcap crate read, median of the rounds: %s\n' "$(median "${read_ratios[@]}")"
printf 'ratio pipeline alone / pcap read: %.2f best, %s median of the rounds\n' "$(echo "$best_pcap / $best_alone" | bc -l)" "$(median "${alone_read_ratios[@]}")"
printf 'ratio detectors, no baseline / pipeline alone: %.2f best of %d, %s median of the rounds\n' \
  "$(echo "$best_alone / $best_segwatch" | bc -l)" "$ROUNDS" "$(median "${detect_ratios[@]}")"
printf 'ratio all detectors + baseline / pipeline alone: %.2f best of %d, %s median of the rounds (%s anomaly events)\n' \
  "$(echo "$best_alone / $best_baseline" | bc -l)" "$ROUNDS" "$(median "${baseline_ratios[@]}")" "$(grep -c anomaly bench-data/anomalies.jsonl || true)"
printf 'ratio with policy / pipeline alone: %.2f best of %d, %s median of the rounds (1,000 zones, 1,000 rules; %s events)\n' \
  "$(echo "$best_alone / $best_policy" | bc -l)" "$ROUNDS" \
  "$(printf '%s\n' "${policy_ratios[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%.2f", a[int((NR+1)/2)]}')" \
  "$(wc -l < bench-data/events.jsonl)"
printf 'ratio scraped every 100 ms / not: %.2f best of %d, %s median of the rounds\n' \
  "$(echo "$best_alone / $best_metrics" | bc -l)" "$ROUNDS" \
  "$(printf '%s\n' "${metrics_ratios[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%.2f", a[int((NR+1)/2)]}')"
rss_base=$( { /usr/bin/time -f '%M' $SEGWATCH analyze "$FILE" --quiet ${WORKERS:+--workers "$WORKERS"} --baseline "$BASELINE" ; } 2>&1 | tail -1)
rss_alone=$( { /usr/bin/time -f '%M' $SEGWATCH analyze "$FILE" --quiet --no-detect ${WORKERS:+--workers "$WORKERS"} ; } 2>&1 | tail -1)
echo "segwatch peak RSS: $((rss / 1024)) MiB (pipeline alone $((rss_alone / 1024)) MiB, with the baseline $((rss_base / 1024)) MiB)"
