#!/usr/bin/env python3
"""Memory under big messages: N clients send one big message each at the same time.

Usage: benches/memory_load.py [--clients 20] [--size 20000000] [--runs 2] [--bin PATH]...
                              [--kind attachment|text]
                              [--limits 'message_memory_total_bytes = 33554432']

Builds nothing: run `cargo build --release` first. Starts smtp-sink as the internal
server, a private unbound, and the gateway (the release binary, or each `--bin`) with
`message_size_bytes` raised to fit; then `--clients` concurrent sessions each send one
MIME message of `--size` bytes (a short text part and a base64 attachment of random
bytes, so content checks and the DKIM/ARC parse see a realistic shape), or with
`--kind text` one long text/plain body (every byte text the rules could scan). The gateway's
RSS is read from /proc while the load runs (peak: `VmHWM`, which includes start-up, and
the largest sample) and again once the spool queue is empty (everything delivered to
the internal server) and a few seconds have passed ("kept").
"""
import argparse
import base64
import contextlib
import os
import socket
import sys
import threading
import time

from benchlib import BIN, gateway, gateway_pid, proc_memory, require, resolver, smtp_sink


def big_text(size):
    """A plain-text message of about `size` bytes: the worst case for content scanning
    (every byte is text the rules could read)."""
    head = (
        "From: <sender@load.example>\r\n"
        "To: <user@example.test>\r\n"
        "Subject: a very long log report\r\n"
        "Message-ID: <big-text@load.example>\r\n"
        "Date: Mon, 30 Nov 2026 12:00:00 +0000\r\n"
        "\r\n"
    ).encode()
    line = b"2026-11-30T12:00:00 host app[123]: request served in 12 ms, status 200 OK\r\n"
    return head + line * max(1, (size - len(head)) // len(line)) + b".\r\n"


def big_message(size):
    """A MIME message of about `size` bytes, CRLF line endings, dot-stuffed, ending with
    the end-of-data line (ready for the socket after DATA's 354)."""
    head = (
        "From: <sender@load.example>\r\n"
        "To: <user@example.test>\r\n"
        "Subject: quarterly report with attachment\r\n"
        "Message-ID: <big@load.example>\r\n"
        "Date: Mon, 30 Nov 2026 12:00:00 +0000\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b1"\r\n'
        "\r\n"
        "--b1\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        "Please find the report attached.\r\n"
        "\r\n"
        "--b1\r\n"
        "Content-Type: application/octet-stream; name=report.bin\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        'Content-Disposition: attachment; filename="report.bin"\r\n'
        "\r\n"
    ).encode()
    tail = b"--b1--\r\n"
    # 76 base64 characters per line encode 57 bytes.
    lines = max(1, (size - len(head) - len(tail)) // 78)
    raw = os.urandom(57 * lines)
    encoded = base64.encodebytes(raw).replace(b"\n", b"\r\n")
    body = head + encoded + tail
    # Base64 never starts a line with a dot: nothing to stuff.
    return body + b".\r\n"


def read_reply(f):
    lines = []
    while True:
        line = f.readline()
        if not line:
            raise ConnectionError("connection closed")
        lines.append(line)
        if len(line) < 4 or line[3:4] != b"-":
            return int(line[:3]), b"".join(lines)


def send_one(port, payload, results, i):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=600) as s:
            f = s.makefile("rb")
            read_reply(f)
            for cmd in (b"EHLO load.example", b"MAIL FROM:<sender@load.example>",
                        b"RCPT TO:<user@example.test>", b"DATA"):
                s.sendall(cmd + b"\r\n")
                code, text = read_reply(f)
                if code >= 400:
                    results[i] = f"{cmd.split()[0].decode()}: {text!r}"
                    return
            s.sendall(payload)
            code, text = read_reply(f)
            results[i] = code if code == 250 else text
            s.sendall(b"QUIT\r\n")
    except OSError as e:
        results[i] = f"error: {e}"


def queued(work):
    try:
        return sum(1 for n in os.listdir(os.path.join(work, "spool", "queue"))
                   if not n.endswith(".state"))
    except FileNotFoundError:
        return 0


def run(args, sink_port, dns_port, binary, payload):
    limits = f"message_size_bytes = {max(args.size * 2, 26214400)}\n" + "\n".join(args.limits)
    sections = f"[server.limits]\n{limits}\n"
    with gateway(sink_port, dns_port, binary=binary, sections=sections) as (port, work):
        pid = gateway_pid(work)
        time.sleep(1)
        base = proc_memory(pid)
        results = [None] * args.clients
        threads = [threading.Thread(target=send_one, args=(port, payload, results, i))
                   for i in range(args.clients)]
        peak = 0
        t0 = time.time()
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads) or queued(work) > 0:
            peak = max(peak, proc_memory(pid)["VmRSS"])
            time.sleep(0.05)
        elapsed = time.time() - t0
        mem = proc_memory(pid)
        time.sleep(5)
        kept = proc_memory(pid)
        ok = sum(1 for r in results if r == 250)
        failures = [r for r in results if r != 250]
        return {
            "base": base["VmRSS"], "peak_sampled": max(peak, mem["VmRSS"]),
            "hwm": mem["VmHWM"], "kept": kept["VmRSS"], "kept_anon": kept.get("RssAnon", 0),
            "accepted": ok, "failures": failures[:3], "seconds": elapsed,
        }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--size", type=int, default=20_000_000)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--kind", choices=["attachment", "text"], default="attachment",
                    help="a base64 attachment (default) or one long text/plain body")
    ap.add_argument("--bin", action="append", default=[], help="mxguard binary (repeatable)")
    ap.add_argument("--limits", action="append", default=[],
                    help="extra [server.limits] TOML line (repeatable)")
    args = ap.parse_args()
    require("smtp-sink", "postfix")
    payload = big_message(args.size) if args.kind == "attachment" else big_text(args.size)
    print(f"{args.clients} concurrent messages of {len(payload) / 1e6:.1f} MB")
    with contextlib.ExitStack() as stack:
        dns_port = stack.enter_context(resolver("unbound"))
        sink_port = stack.enter_context(smtp_sink())
        for binary in args.bin or [BIN]:
            for n in range(args.runs):
                r = run(args, sink_port, dns_port, binary, payload)
                mb = lambda kb: f"{kb / 1024:.0f} MB"
                print(f"{binary} run {n + 1}: accepted {r['accepted']}/{args.clients} in "
                      f"{r['seconds']:.1f} s; RSS before {mb(r['base'])}, peak {mb(r['peak_sampled'])} "
                      f"(VmHWM {mb(r['hwm'])}), kept after drain {mb(r['kept'])} "
                      f"(anon {mb(r['kept_anon'])})"
                      + (f"; failures: {r['failures']}" if r["failures"] else ""))
                sys.stdout.flush()


if __name__ == "__main__":
    main()
