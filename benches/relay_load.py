#!/usr/bin/env python3
"""End-to-end relay throughput: smtp-source -> mxguard -> smtp-sink.

Usage: benches/relay_load.py [--sessions 20] [--messages 5000] [--size 4096] [--postfix]
                             [--resolver unbound|dnsmasq] [--bin PATH]... [--greylist-redis]
                             [--no-seed]

Builds nothing: run `cargo build --release` first. Starts Postfix's smtp-sink as the
internal server and the release binary on a private config and spool, sends the load with
smtp-source, and reports accepted msgs/s (until smtp-source returns) and end-to-end msgs/s
(until the spool is empty). A run counts only when every message was accepted and got the
internal server's 250 (mxguard's /metrics: verdicts and delivered relay attempts; Postfix's
log: `status=sent`); else it stops with the counts. smtp-source stops at the first refusal.

With --postfix the same load goes through a private Postfix instance (plain relay, no
filtering) to smtp-sink, measured the same way (until Postfix's queue is empty), so both
figures come from the same machine and run.

DNS goes to a private unbound that answers NXDOMAIN with an SOA (as a deployed gateway's
local caching resolver does); `--resolver dnsmasq` answers NXDOMAIN without SOA, so
nothing is negatively cached. `--bin` (repeatable) measures other builds of mxguard in
the same run, e.g. before and after a change. `--greylist-redis` adds a private
redis-server as the state backend with greylisting on, and lets the load's one triplet
(sender@load.example → user@example.test from 127.0.0.1) pass greylisting before the
load starts, so every message pays for a greylisting look-up in Redis. The gateway imports
the shipped classifier seed, as the shipped config does, so every message is classified;
`--no-seed` leaves the classifier without a model (it then does not vote).
"""
import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import smtplib

from benchlib import BIN, ROOT, free_port, gateway, redis_server, require, resolver, smtp_sink, wait_port


DRAIN_LIMIT = 600  # seconds: a queue that has not drained by then is a failed run


def admin_of(work):
    cfg = open(os.path.join(work, "mxguard.toml")).read()
    return re.search(r'\[metrics\]\s*listen = "([^"]+)"', cfg).group(1)


def metric_sum(text, name, label, values):
    """The sum of `name`'s series whose `label` is one of `values`."""
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf'{name}\{{([^}}]*)\}} (\S+)$', line)
        if m and any(f'{label}="{v}"' in m.group(1) for v in values):
            total += float(m.group(2))
    return total


def check_mxguard_delivered(work, expected):
    """Every message of the load was accepted (or tagged) and reached the internal server:
    an empty queue alone would also count a message quarantined, discarded or bounced."""
    with urllib.request.urlopen(f"http://{admin_of(work)}/metrics", timeout=10) as r:
        text = r.read().decode()
    accepted = metric_sum(text, "mxguard_messages_total", "verdict", ["accept", "tag"])
    delivered = metric_sum(text, "mxguard_relay_attempts_total", "result", ["delivered"])
    if accepted != expected or delivered != expected:
        sys.exit(f"mxguard: {expected} messages sent, {accepted:.0f} accepted, "
                 f"{delivered:.0f} delivered to the internal server")


def check_postfix_delivered(work, expected):
    """Every message left Postfix with the internal server's 250 (`status=sent`)."""
    deadline = time.time() + 10  # the log may trail the queue by a moment
    sent = 0
    while time.time() < deadline:
        with open(os.path.join(work, "maillog"), errors="replace") as f:
            sent = sum(1 for line in f if "status=sent" in line)
        if sent >= expected:
            return
        time.sleep(0.2)
    sys.exit(f"postfix: {expected} messages sent, {sent} delivered to the internal server")


def count_files(path):
    try:
        return sum(1 for n in os.listdir(path) if not n.endswith(".state"))
    except FileNotFoundError:
        return 0


def run_source(args, port):
    t0 = time.time()
    subprocess.run(
        ["smtp-source", "-s", str(args.sessions), "-m", str(args.messages), "-l", str(args.size),
         "-f", "sender@load.example", "-t", "user@example.test", f"127.0.0.1:{port}"],
        check=True,
    )
    return t0, time.time()


GREYLIST = """
[state]
backend = "redis"
redis = "redis://127.0.0.1:{port}/"
[greylist]
enabled = true
delay = "1s"
window = "1h"
"""


def pass_greylisting(port):
    """Sends the load's triplet until greylisting lets it through."""
    for _ in range(20):
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
            s.ehlo("warmup.load.example")
            s.mail("sender@load.example")
            code, _ = s.rcpt("user@example.test")
            if code == 250:
                return
        time.sleep(0.5)
    sys.exit("the load's triplet never passed greylisting")


SEED = """
[classifier]
seed = "{root}/config/classifier-seed.bin"
"""


def wait_seeded(work, timeout=60):
    """Waits until the gateway has imported the seed: the classifier's model joins the
    policy fingerprint, so /policy shows a new fingerprint. A deployed gateway is measured
    in its steady state, not while it fills its store."""
    admin = admin_of(work)
    first = None
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://{admin}/policy", timeout=5) as r:
                fingerprint = json.load(r)["fingerprint"]
        except OSError:
            fingerprint = None
        if first is None:
            first = fingerprint
        elif fingerprint and fingerprint != first:
            return
        time.sleep(0.2)
    # The import may have finished before the first look: go on, saying so.
    print("note: no fingerprint change seen; the seed was imported before the first look "
          "or is still being imported", file=sys.stderr)


def bench_mxguard(args, sink_port, binary=BIN):
    """The full shipped pipeline: DNS checks, SPF/DKIM/DMARC, every rule in rules/ and the
    classifier voting with the shipped seed (unless --no-seed)."""
    sections = GREYLIST.format(port=args.redis_port) if args.redis_port else ""
    if not args.no_seed:
        sections += SEED.format(root=ROOT)
    with gateway(sink_port, args.dns_port, extra=args.policy, binary=binary,
                 sections=sections) as (port, work):
        if not args.no_seed:
            wait_seeded(work)
        if args.redis_port:
            pass_greylisting(port)
        t0, t_accepted = run_source(args, port)
        queue = os.path.join(work, "spool", "queue")
        while count_files(queue) > 0:
            if time.time() - t0 > DRAIN_LIMIT:
                sys.exit(f"mxguard: the queue did not drain within {DRAIN_LIMIT} s")
            time.sleep(0.01)
        t_done = time.time()
        check_mxguard_delivered(work, args.messages)
        return t0, t_accepted, t_done


def bench_postfix(args, sink_port):
    """A private Postfix (own config and queue directories) relaying to smtp-sink."""
    work = tempfile.mkdtemp(prefix="postfix-bench-")
    port = free_port()
    conf = os.path.join(work, "etc")
    queue = os.path.join(work, "spool")
    data = os.path.join(work, "lib")
    os.makedirs(conf)
    os.makedirs(queue)
    os.makedirs(data)
    os.chmod(work, 0o755)
    shutil.chown(data, user="postfix")
    shutil.copy("/etc/postfix/master.cf", conf)
    # No chroot, smtpd on our port only.
    lines = []
    for line in open(os.path.join(conf, "master.cf")):
        if line.startswith("smtp      inet"):
            line = f"127.0.0.1:{port} inet n - n - - smtpd\n"
        fields = line.split()
        if len(fields) >= 8 and not line.startswith("#") and not line[0].isspace() and fields[4] == "y":
            fields[4] = "n"
            line = " ".join(fields) + "\n"
        lines.append(line)
    if not any(l.startswith("postlog") for l in lines):
        lines.append("postlog   unix-dgram n  -       n       -       1       postlogd\n")
    open(os.path.join(conf, "master.cf"), "w").writelines(lines)
    with open(os.path.join(conf, "main.cf"), "w") as f:
        f.write(f"""
compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
myhostname = bench.example.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains = example.test
relay_transport = smtp:[127.0.0.1]:{sink_port}
relay_recipient_maps =
alias_maps =
local_recipient_maps =
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination
smtp_dns_support_level = disabled
maillog_file_prefixes = {work}
maillog_file = {work}/maillog
default_process_limit = 100
""")
    env = dict(os.environ)
    subprocess.run(["postfix", "-c", conf, "check"], check=False, env=env)
    started = subprocess.run(["postfix", "-c", conf, "start"], env=env, capture_output=True, text=True)
    if started.returncode != 0:
        sys.exit(f"postfix start failed: {started.stdout}{started.stderr}; see {work}/maillog")
    try:
        wait_port(port)
        t0, t_accepted = run_source(args, port)
        while True:
            out = subprocess.run(["postqueue", "-c", conf, "-j"], capture_output=True, text=True).stdout
            if not out.strip():
                break
            if time.time() - t0 > DRAIN_LIMIT:
                sys.exit(f"postfix: the queue did not drain within {DRAIN_LIMIT} s")
            time.sleep(0.05)
        t_done = time.time()
        check_postfix_delivered(work, args.messages)
    finally:
        subprocess.run(["postfix", "-c", conf, "stop"], check=False)
        time.sleep(1)
        shutil.rmtree(work, ignore_errors=True)
    return t0, t_accepted, t_done


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--postfix", action="store_true")
    ap.add_argument("--policy", default="", help="extra [policy] TOML lines, e.g. 'auth = false'")
    ap.add_argument("--resolver", choices=["unbound", "dnsmasq"], default="unbound")
    ap.add_argument("--bin", action="append", default=[], help="mxguard binary (repeatable)")
    ap.add_argument("--greylist-redis", action="store_true",
                    help="greylisting on, state in a private redis-server, the triplet passed")
    ap.add_argument("--no-seed", action="store_true",
                    help="no classifier seed: the classifier has learned nothing and does not vote")
    args = ap.parse_args()
    require("smtp-source", "postfix")
    # Every DNS check runs against a local resolver: the benchmark never asks a resolver
    # outside the machine.
    with contextlib.ExitStack() as stack:
        dns_port = stack.enter_context(resolver(args.resolver))
        sink_port = stack.enter_context(smtp_sink())
        args.redis_port = stack.enter_context(redis_server()) if args.greylist_redis else None
        args.dns_port = dns_port
        bins = args.bin or [BIN]
        runs = [
            (f"mxguard ({b})" if len(bins) > 1 else "mxguard",
             lambda a, p, b=b: bench_mxguard(a, p, b))
            for b in bins
        ]
        if args.postfix:
            runs.append(("postfix", bench_postfix))
        for name, fn in runs:
            t0, t_acc, t_done = fn(args, sink_port)
            print(f"{name}: {args.messages} msgs of {args.size} B over {args.sessions} sessions: "
                  f"accepted {args.messages / (t_acc - t0):.0f} msg/s, "
                  f"end to end {args.messages / (t_done - t0):.0f} msg/s")


if __name__ == "__main__":
    main()
