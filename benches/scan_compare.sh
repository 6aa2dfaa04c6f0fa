#!/usr/bin/env bash
# Offline scan rate: `mxguard scan --json` next to Rspamd's `rspamc -n 8` over the same
# message files, on the same machine, in one run.
#
# Usage: benches/scan_compare.sh DIR...      (e.g. the unpacked training corpus)
#        MXGUARD_CONFIG=PATH benches/scan_compare.sh DIR...   (another mxguard config, e.g.
#        one whose [state] store has learned the classifier, so it votes on every message)
#
# Rspamd (Debian package `rspamd`, 3.4) runs with its default configuration and no
# network: a local dnsmasq answers NXDOMAIN to every query at once (otherwise each DNS
# list lookup waits for a timeout), via /etc/rspamd/local.d/options.inc. No Redis, so no
# Bayes. Requires root for the Rspamd part; the mxguard part needs only
# `cargo build --release`.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || { echo "usage: $0 DIR..." >&2; exit 2; }

count=$(find "$@" -type f | wc -l)
echo "messages: $count"

start=$(date +%s.%N)
./target/release/mxguard scan --config "${MXGUARD_CONFIG:-config/mxguard.toml}" --json "$@" >/dev/null
end=$(date +%s.%N)
echo "mxguard scan: $(echo "$count / ($end - $start)" | bc -l | xargs printf '%.0f') msg/s"

if ! command -v rspamd >/dev/null || ! command -v dnsmasq >/dev/null; then
    echo "SKIP: rspamd or dnsmasq not installed (apt-get install rspamd dnsmasq-base)"
    exit 0
fi
work=$(mktemp -d)
trap 'pkill -F "$work/dnsmasq.pid" 2>/dev/null || true; pkill -x rspamd 2>/dev/null || true; rm -rf "$work"' EXIT
dnsmasq --no-resolv --no-hosts --listen-address=127.0.0.1 --port=5399 --bind-interfaces \
    --pid-file="$work/dnsmasq.pid" --address=/#/
mkdir -p /etc/rspamd/local.d
cat > /etc/rspamd/local.d/options.inc <<'EOF'
dns {
  nameserver = ["127.0.0.1:5399"];
  timeout = 0.5s;
}
EOF
rspamd -f -u _rspamd -g _rspamd >"$work/rspamd.log" 2>&1 &
for _ in $(seq 1 60); do
    rspamc stat >/dev/null 2>&1 && break
    sleep 0.5
done
start=$(date +%s.%N)
rspamc -n 8 "$@" >"$work/rspamc.out" 2>&1
end=$(date +%s.%N)
echo "rspamd (rspamc -n 8): $(echo "$count / ($end - $start)" | bc -l | xargs printf '%.0f') msg/s"
