#!/usr/bin/env python3
"""Relay throughput and stage latency when DNS is in trouble.

Usage: benches/dns_trouble.py [--runs 2] [--messages 5000] [--cap 60] [--rows healthy,lossy,dead,refused]
                              [--bin PATH]...

Builds nothing: run `cargo build --release` first (`--bin` measures other builds, e.g. the
one before a change, in the same run). The shipped rules and DNS checks (FCrDNS, HELO,
sender domain, SPF/DKIM/DMARC/ARC) relay `smtp-source -s 20 -l 4096` load to Postfix's
smtp-sink, with four resolvers behind `[dns] nameservers`:

  healthy  a private unbound answering NXDOMAIN with an SOA (negative answers cacheable)
  lossy    dnsmasq answering NXDOMAIN without SOA (nothing negatively cached), behind a
           UDP proxy that drops 1 query in 40 (what this machine's own upstream does)
  dead     the same proxy dropping every query
  refused  a loopback port nobody listens on

Each row reports accepted msg/s (messages the gateway judged, from its metrics, over the
time smtp-source ran, capped at --cap seconds for slow rows) on a freshly started gateway,
and, on another fresh gateway, the time one session's first message spends at each stage
(banner, EHLO, MAIL, RCPT, end of data), measured by a small SMTP client. Nothing leaves
127.0.0.1.
"""
import argparse
import os
import re
import select
import socket
import subprocess
import sys
import threading
import time
import urllib.request

from benchlib import BIN, dnsmasq, free_port, gateway, require, smtp_sink, unbound


class DropProxy:
    """A UDP forwarder on a loopback port in front of `upstream`: drops every `every`-th
    query (1: all of them, 0: none), rewrites query ids so concurrent clients never collide."""

    def __init__(self, upstream, every):
        self.upstream = ("127.0.0.1", upstream)
        self.every = every
        self.front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.front.bind(("127.0.0.1", 0))
        self.port = self.front.getsockname()[1]
        self.back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.back.bind(("127.0.0.1", 0))
        self.pending = {}
        self.next_id = 0
        self.received = 0
        self.dropped = 0
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop:
            ready, _, _ = select.select([self.front, self.back], [], [], 0.2)
            for sock in ready:
                data, peer = sock.recvfrom(65535)
                if len(data) < 12:
                    continue
                if sock is self.front:
                    self.received += 1
                    if self.every and self.received % self.every == 0:
                        self.dropped += 1
                        continue
                    self.next_id = (self.next_id + 1) % 65536
                    self.pending[self.next_id] = (peer, data[:2])
                    self.back.sendto(self.next_id.to_bytes(2, "big") + data[2:], self.upstream)
                else:
                    entry = self.pending.pop(int.from_bytes(data[:2], "big"), None)
                    if entry:
                        client, original_id = entry
                        self.front.sendto(original_id + data[2:], client)

    def close(self):
        self.stop = True
        self.thread.join()
        self.front.close()
        self.back.close()


def metrics_port(work):
    text = open(os.path.join(work, "mxguard.toml")).read()
    return int(re.search(r'\[metrics\]\s*listen = "127\.0\.0\.1:(\d+)"', text).group(1))


def accepted(port):
    """Messages the gateway accepted at end of data (`accept` and `tag` verdicts: a
    refusal or a deferral is no throughput; review)."""
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    series = re.findall(r'^mxguard_messages_total\{([^}]*)\} (\S+)$', body, re.M)
    return sum(float(v) for labels, v in series
               if 'verdict="accept"' in labels or 'verdict="tag"' in labels)


def throughput(binary, sink_port, dns_port, args):
    """Accepted msg/s of one load run on a fresh gateway."""
    with gateway(sink_port, dns_port, binary=binary) as (port, work):
        t0 = time.time()
        source = subprocess.Popen(
            ["smtp-source", "-s", "20", "-m", str(args.messages), "-l", "4096",
             "-f", "sender@load.example", "-t", "user@example.test", f"127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            _, errors = source.communicate(timeout=args.cap)
            if source.returncode != 0:
                # smtp-source stops at the first refusal: the run is shorter than it looks.
                last = (errors.strip().splitlines() or ["(no message)"])[-1]
                print(f"note: smtp-source stopped early: {last}", file=sys.stderr)
        except subprocess.TimeoutExpired:
            source.kill()
            source.communicate()
        elapsed = time.time() - t0
        return accepted(metrics_port(work)) / elapsed


def read_reply(f):
    while True:
        line = f.readline()
        if not line:
            raise EOFError("connection closed")
        if line[3:4] != b"-":
            return line


def stages(binary, sink_port, dns_port):
    """Seconds one session's first message spends at each stage, on a fresh gateway."""
    with gateway(sink_port, dns_port, binary=binary) as (port, _work):
        out = {}
        t = time.time()
        s = socket.create_connection(("127.0.0.1", port), timeout=300)
        f = s.makefile("rb")

        def step(name, line=None):
            nonlocal t
            if line is not None:
                s.sendall(line)
            read_reply(f)
            now = time.time()
            out[name] = now - t
            t = now

        step("banner")
        step("ehlo", b"EHLO client.bench.example\r\n")
        step("mail", b"MAIL FROM:<sender@load.example>\r\n")
        step("rcpt", b"RCPT TO:<user@example.test>\r\n")
        s.sendall(b"DATA\r\n")
        read_reply(f)
        t = time.time()
        step("data", b"Subject: bench\r\nFrom: sender@load.example\r\n\r\n" + b"x" * 4000 + b"\r\n.\r\n")
        s.sendall(b"QUIT\r\n")
        s.close()
        return out


def resolvers(row, upstream_lossy):
    """(dns port, cleanup) of a row's resolver."""
    if row == "lossy":
        proxy = DropProxy(upstream_lossy, 40)
        return proxy.port, proxy.close
    if row == "dead":
        proxy = DropProxy(upstream_lossy, 1)
        return proxy.port, proxy.close
    if row == "refused":
        return free_port(), lambda: None
    raise ValueError(row)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--cap", type=float, default=60, help="seconds a load run may take")
    ap.add_argument("--rows", default="healthy,lossy,dead,refused")
    ap.add_argument("--bin", action="append", default=[], help="mxguard binary (repeatable)")
    args = ap.parse_args()
    require("smtp-source", "postfix")
    bins = args.bin or [BIN]
    rows = args.rows.split(",")
    results = {}
    with smtp_sink() as sink_port, unbound() as healthy_port, dnsmasq("--address=/#/") as nosoa_port:
        for run in range(args.runs):
            for row in rows:
                for binary in bins:
                    if row == "healthy":
                        port, cleanup = healthy_port, (lambda: None)
                    else:
                        port, cleanup = resolvers(row, nosoa_port)
                    try:
                        rate = throughput(binary, sink_port, port, args)
                        lat = stages(binary, sink_port, port)
                    finally:
                        cleanup()
                    results.setdefault((row, binary), []).append((rate, lat))
                    steps = " ".join(f"{k} {v:.3f}s" for k, v in lat.items())
                    print(f"run {run + 1} {row:8} {os.path.basename(binary):16} "
                          f"{rate:8.0f} msg/s   first session: {steps}", flush=True)
    print()
    print("| resolver | binary | msg/s (range) | first session: banner / EHLO / MAIL / RCPT / end of data |")
    print("|---|---|---|---|")
    for (row, binary), runs in results.items():
        rates = [r for r, _ in runs]
        worst = max(runs, key=lambda r: sum(r[1].values()))[1]
        steps = " / ".join(f"{worst[k]:.2f}" for k in ("banner", "ehlo", "mail", "rcpt", "data"))
        print(f"| {row} | {os.path.basename(binary)} | {min(rates):,.0f}–{max(rates):,.0f} | {steps} s |")


if __name__ == "__main__":
    main()
