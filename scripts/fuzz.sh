#!/usr/bin/env bash
# Fuzz each target for a fixed number of executions with libFuzzer
# (cargo-fuzz), from seeds made by fuzz/seed.sh. Fails on any crash,
# panic, timeout, or allocation over the limits; the input that did it is kept
# in fuzz/artifacts/<target>/. Not part of scripts/test.sh (CI time budget):
# tests/properties.rs is the in-suite part.
#
# usage: scripts/fuzz.sh [RUNS]
#   RUNS: executions per target (default: 1,000,000 for decode_frame,
#   200,000 for config_parse and baseline_parse, 100,000 for pcap_file).
#   FUZZ_TARGETS="decode_frame pcap_file" limits the targets run.
set -euo pipefail
cd "$(dirname "$0")/.."
targets=${FUZZ_TARGETS:-decode_frame config_parse baseline_parse pcap_file}

# cargo-fuzz passes nightly-only flags (-Zsanitizer=address). Without a
# nightly toolchain (none can be fetched on this project's machines), the
# default stable one accepts them with RUSTC_BOOTSTRAP=1.
if rustup run nightly rustc --version >/dev/null 2>&1; then
  toolchain=(+nightly)
else
  toolchain=()
  export RUSTC_BOOTSTRAP=1
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
[ -d fuzz/corpus/decode_frame ] || fuzz/seed.sh
(cd fuzz && cargo "${toolchain[@]}" fuzz build)

failed=()
for t in $targets; do
  case $t in
    decode_frame) runs=${1:-1000000} max_len=2048 ;;
    pcap_file) runs=${1:-100000} max_len=8192 ;;
    *) runs=${1:-200000} max_len=65536 ;;
  esac
  start=$(date +%s)
  # One job; -rss_limit_mb bounds the process, -malloc_limit_mb any single
  # allocation: a length taken from the input and allocated is a failure.
  if (cd fuzz && cargo "${toolchain[@]}" fuzz run "$t" "corpus/$t" -- \
    -runs="$runs" -max_len="$max_len" -timeout=10 \
    -rss_limit_mb=2048 -malloc_limit_mb=256 -print_final_stats=1) \
    >"fuzz/$t.log" 2>&1; then
    verdict=ok
  else
    verdict=FAILED
    failed+=("$t")
  fi
  echo "$t: $verdict, $(grep -o 'Done [0-9]* runs in [0-9]* second(s)' "fuzz/$t.log" || echo "no final stats") (wall $(($(date +%s) - start)) s, log fuzz/$t.log)"
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: failed: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
