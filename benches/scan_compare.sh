#!/usr/bin/env bash
# Offline scan rate: `mxguard scan --json` next to Rspamd's `rspamc -n 8` over the same
# message files, on the same machine, in one run.
#
# Usage: benches/scan_compare.sh DIR...      (e.g. the unpacked training corpus)
#        MXGUARD_CONFIG=PATH benches/scan_compare.sh DIR...   (another mxguard config, e.g.
#        one whose [state] store has learned the classifier, so it votes on every message)
#
# Rspamd (Debian package `rspamd`, 3.4) runs with its default configuration and no
# network: a local dnsmasq (on a free port) answers NXDOMAIN to every query at once (otherwise
# each DNS list lookup waits for a timeout), via /etc/rspamd/local.d/options.inc, which is
# put back as it was afterwards. It refuses to run beside an rspamd already running. No Redis, so no
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
# An rspamd already running would answer rspamc instead of ours, with its own config.
if rspamc stat >/dev/null 2>&1; then
    echo "an rspamd is already running on this machine: stop it first" >&2
    exit 1
fi
work=$(mktemp -d)
options=/etc/rspamd/local.d/options.inc
rspamd_pid=
replaced=
cleanup() {
    if [ -n "$rspamd_pid" ]; then kill "$rspamd_pid" 2>/dev/null || true; wait "$rspamd_pid" 2>/dev/null || true; fi
    pkill -F "$work/dnsmasq.pid" 2>/dev/null || true
    # The machine's own Rspamd settings come back as they were, once ours replaced them.
    if [ -n "$replaced" ]; then
        if [ -e "$work/options.inc.saved" ]; then mv "$work/options.inc.saved" "$options"; else rm -f "$options"; fi
    fi
    rm -rf "$work"
}
trap cleanup EXIT
dns_port=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
dnsmasq --no-resolv --no-hosts --listen-address=127.0.0.1 --port="$dns_port" --bind-interfaces \
    --pid-file="$work/dnsmasq.pid" --address=/#/
mkdir -p /etc/rspamd/local.d
if [ -e "$options" ]; then cp -p "$options" "$work/options.inc.saved"; fi
replaced=1
printf 'dns {\n  nameserver = ["127.0.0.1:%s"];\n  timeout = 0.5s;\n}\n' "$dns_port" > "$options"
rspamd -f -u _rspamd -g _rspamd >"$work/rspamd.log" 2>&1 &
rspamd_pid=$!
ready=
for _ in $(seq 1 60); do
    if rspamc stat >/dev/null 2>&1; then ready=1; break; fi
    sleep 0.5
done
if [ -z "$ready" ]; then
    echo "rspamd did not start; the end of its log:" >&2
    tail -5 "$work/rspamd.log" >&2
    exit 1
fi
# A warm-up pass (maps and regular expression databases compiled), as mxguard's scan
# starts warm from its compiled rules.
find "$@" -type f -print0 | head -z -n 200 | xargs -0 rspamc -n 8 >/dev/null 2>&1 || true
start=$(date +%s.%N)
rc=0
rspamc -n 8 "$@" >"$work/rspamc.out" 2>&1 || rc=$?
end=$(date +%s.%N)
if [ "$rc" -ne 0 ]; then
    echo "rspamc failed ($rc); the end of its output:" >&2
    tail -5 "$work/rspamc.out" >&2
    exit 1
fi
judged=$(grep -c '^Results for file' "$work/rspamc.out" || true)
if [ "$judged" -ne "$count" ]; then
    echo "rspamd judged $judged of $count messages; the end of its output:" >&2
    tail -5 "$work/rspamc.out" >&2
    exit 1
fi
echo "rspamd (rspamc -n 8): $(echo "$count / ($end - $start)" | bc -l | xargs printf '%.0f') msg/s"
