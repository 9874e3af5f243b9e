#!/usr/bin/env bash
# Install what segwatch needs on Debian, only when missing:
#   build: libpcap-dev (and pkg-config, gcc)
#   tests: tshark (cross-check), tcpdump, bc and time (benchmarks), iproute2,
#          python3 and nftables (live tests), chromium (report rendering test),
#          prometheus and promtool (metrics test), openssl (TLS certificates
#          for the metrics TLS tests), tcpreplay, hping3 and nmap (traffic
#          for the soak test and benches/zero_loss.sh), systemd (systemd-analyze
#          checks the shipped unit; it need not be the running init)
# Usage: scripts/install-deps.sh [build|test]
set -euo pipefail
want=(libpcap-dev pkg-config gcc)
if [ "${1:-build}" = test ]; then
  want+=(tshark tcpdump iproute2 python3 bc time curl chromium nftables prometheus openssl tcpreplay hping3 nmap systemd)
fi
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null; then
  echo "cargo not found: install Rust from https://rustup.rs (or Debian's cargo package)" >&2
  exit 1
fi
