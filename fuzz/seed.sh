#!/usr/bin/env bash
# Seed corpora for the fuzz targets, made from what segwatch generates and
# ships: frames of the generated sample and anomaly scenario captures, the
# shipped and generated configs, and a baseline learned from the scenario.
# Written to fuzz/corpus/<target>/ (git-ignored; regenerated, never committed).
# usage: fuzz/seed.sh [MAX_FRAME_SHAPES_PER_CAPTURE]   (default 100)
set -euo pipefail
cd "$(dirname "$0")/.."
per_capture=${1:-100}
corpus=fuzz/corpus
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cargo build --quiet --locked --bin segwatch
sw=target/debug/segwatch
$sw generate sample --out "$work/office.pcap" >/dev/null
$sw generate scenario --out "$work/scenario" >/dev/null
$sw generate policy --out "$work/policy.toml" --zones 12 --rules 20 >/dev/null
# A baseline learned from a few thousand frames: every part of the format,
# small enough to mutate quickly.
python3 - "$work/scenario/learn.pcap" "$work/learn-head.pcap" <<'PY'
import sys
data = open(sys.argv[1], "rb").read()
off, n = 24, 0
little = data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1")
while off + 16 <= len(data) and n < 6000:
    off += 16 + int.from_bytes(data[off + 8:off + 12], "little" if little else "big")
    n += 1
open(sys.argv[2], "wb").write(data[:off])
PY
RUST_LOG=error $sw learn "$work/learn-head.pcap" -c "$work/scenario/segwatch.toml" -o "$work/base.json" -q

mkdir -p "$corpus"/{decode_frame,config_parse,baseline_parse,pcap_file}
python3 fuzz/pcap_seeds.py "$corpus/decode_frame" "$corpus/pcap_file" "$per_capture" \
  "$work/office.pcap" "$work/scenario/"*.pcap
# pcapng versions of the small captures, when Wireshark's editcap is here.
if command -v editcap >/dev/null; then
  for f in "$corpus"/pcap_file/*.pcap; do
    editcap -F pcapng "$f" "${f%.pcap}.pcapng"
  done
fi
for f in configs/*.toml configs/*/*.toml "$work/scenario/segwatch.toml" "$work/policy.toml"; do
  cp "$f" "$corpus/config_parse/$(echo "${f#"$work/"}" | tr / _)"
done
cp "$work/base.json" "$corpus/baseline_parse/learned.json"
# The smallest valid baseline, so mutations reach every field quickly.
python3 - "$work/base.json" "$corpus/baseline_parse/small.json" <<'PY'
import json, sys
b = json.load(open(sys.argv[1]))
b["hosts"] = dict(list(b["hosts"].items())[:2])
b["zones"] = dict(list(b["zones"].items())[:1])
for z in b["zones"].values():
    z["hours"] = z["hours"][:2]
    z["external"] = z["external"][:2]
b["arp"] = dict(list(b["arp"].items())[:2])
b["beacons"] = b["beacons"][:1]
json.dump(b, open(sys.argv[2], "w"), indent=1)
PY
for t in decode_frame config_parse baseline_parse pcap_file; do
  echo "$t: $(ls "$corpus/$t" | wc -l) seeds, $(du -sh "$corpus/$t" | cut -f1)"
done
