#!/usr/bin/env python3
"""Connection floods against the release binary: does a real sender keep being served?

Usage: benches/flood.py slow   [--attackers 3000] [--addresses 100] [--interval 5] [--bin PATH]...
       benches/flood.py silent [--attackers 2000] [--addresses 100] [--probes 20] [--bin PATH]...
       benches/flood.py idle   [--attackers 10000] [--addresses 250] [--bin PATH]...
       (any scenario: --limits 'max_sessions = 500' adds a [server.limits] line)

Builds nothing: run `cargo build --release` first. smtp-sink is the internal server and
a private unbound the resolver, as in relay_load.py. Attackers connect from `--addresses`
loopback addresses, one per /24 (127.1.N.1, 127.2.N.1, ...), so a per-network limit alone
cannot stop them; a closed attacker connection reconnects a second later.

- slow: every attacker sends one byte of `EHLO x` / `NOOP` lines every `--interval`
  seconds. smtp-source (-s 20 -m 5000 -l 4096) runs once before the flood and once
  during it; prints both rates, their ratio and the gateway's RSS.
- silent: attackers connect and never send anything. A real sender (127.0.0.1) sends one
  message a second, `--probes` times, and we count 250s and refusals; also how many
  attacker connections the gateway still held at the end.
- idle: attackers connect, say EHLO, then stay silent; the gateway's RSS with all of them
  connected, minus its RSS before, gives the memory of one idle session. Use limits that
  admit them all (the default here: max_sessions = 20000, max_sessions_per_ip = 100).
"""
import argparse
import asyncio
import contextlib
import os
import smtplib
import subprocess
import sys
import time

from benchlib import (BIN, gateway, gateway_pid, proc_memory, raise_fd_limit, require,
                      resolver, smtp_sink)


def address(i):
    """The i-th attacker address: each in its own /24, none of them 127.0.0.1."""
    return f"127.{1 + i // 250}.{i % 250}.1"


class Flood:
    def __init__(self, port, n, addresses, mode, interval):
        self.port, self.n, self.addresses = port, n, addresses
        self.mode, self.interval = mode, interval
        self.open = 0          # connections currently established
        self.connects = 0      # successful connects so far
        self.refused = 0       # sessions that got a 421 instead of a banner
        self.stop = False

    async def one(self, i):
        src = address(i % self.addresses)
        payload = b"EHLO x\r\n" + b"NOOP\r\n" * 50
        while not self.stop:
            try:
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", self.port, local_addr=(src, 0))
            except OSError:
                await asyncio.sleep(1)
                continue
            self.connects += 1
            self.open += 1
            try:
                banner = await asyncio.wait_for(reader.readline(), 30)
                if banner.startswith(b"421"):
                    self.refused += 1
                    raise ConnectionError
                if self.mode == "idle":
                    writer.write(b"EHLO idle.example\r\n")
                    await writer.drain()
                k = 0
                while not self.stop:
                    if self.mode == "slow":
                        writer.write(payload[k % len(payload):k % len(payload) + 1])
                        k += 1
                        await writer.drain()
                        try:
                            # Swallow replies; notice a close.
                            data = await asyncio.wait_for(reader.read(4096), self.interval)
                            if not data:
                                break
                        except asyncio.TimeoutError:
                            pass
                    else:
                        data = await reader.read(4096)
                        if not data:
                            break
            except (OSError, ConnectionError, asyncio.TimeoutError):
                pass
            finally:
                self.open -= 1
                writer.close()
            await asyncio.sleep(1)

    async def start(self, rate=1000):
        self.tasks = []
        for i in range(self.n):
            self.tasks.append(asyncio.create_task(self.one(i)))
            if i % 100 == 99:
                await asyncio.sleep(100 / rate)

    async def finish(self):
        self.stop = True
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def smtp_source(port, args):
    t0 = time.time()
    proc = await asyncio.create_subprocess_exec(
        "smtp-source", "-s", "20", "-m", str(args.messages), "-l", "4096",
        "-f", "sender@load.example", "-t", "user@example.test", f"127.0.0.1:{port}",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    rate = args.messages / (time.time() - t0)
    errors = err.decode(errors="replace").strip()
    if errors:
        # smtp-source gives up at its first refusal: no rate to report.
        print(f"  smtp-source: {errors.splitlines()[-1]}")
        rate = 0.0
    return rate, len(errors.splitlines())


def probe(port):
    """One message from a real sender; returns the reply code (or the refusal)."""
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
            s.ehlo("real.sender.example")
            s.sendmail("real@sender.example", ["user@example.test"],
                       b"Subject: real\r\n\r\nhello\r\n")
            return 250
    except smtplib.SMTPConnectError as e:
        return e.smtp_code
    except smtplib.SMTPResponseException as e:
        return e.smtp_code
    except (OSError, smtplib.SMTPException) as e:
        return str(e)


async def scenario(args, port, pid):
    mode = args.scenario
    base = proc_memory(pid)["VmRSS"]
    flood = Flood(port, args.attackers, args.addresses, mode, args.interval)
    if mode == "slow":
        unloaded, err0 = await smtp_source(port, args)
        await flood.start()
        await asyncio.sleep(args.ramp)
        rss_flood = proc_memory(pid)["VmRSS"]
        loaded, err1 = await smtp_source(port, args)
        rss = proc_memory(pid)["VmRSS"]
        held = flood.open
        await flood.finish()
        print(f"  unloaded {unloaded:.0f} msg/s; with {args.attackers} slow clients "
              f"({held} connected) {loaded:.0f} msg/s = {100 * loaded / unloaded:.0f} %; "
              f"smtp-source error lines {err0}/{err1}; RSS {base // 1024} MB before, "
              f"{rss_flood // 1024} MB flooded, {rss // 1024} MB after the load")
    elif mode == "silent":
        await flood.start()
        await asyncio.sleep(args.ramp)
        codes = []
        for _ in range(args.probes):
            codes.append(await asyncio.get_running_loop().run_in_executor(None, probe, port))
            await asyncio.sleep(1)
        held = flood.open
        rss = proc_memory(pid)["VmRSS"]
        await flood.finish()
        served = sum(1 for c in codes if c == 250)
        print(f"  {args.attackers} silent clients: real sender served {served}/{len(codes)} "
              f"(replies {sorted(set(map(str, codes)))}); attacker connections open at the "
              f"end {held}, connects {flood.connects}, refused at banner {flood.refused}; "
              f"RSS {rss // 1024} MB")
    else:
        await flood.start(rate=2000)
        await asyncio.sleep(args.ramp)
        rss = proc_memory(pid)["VmRSS"]
        held = flood.open
        await flood.finish()
        per = (rss - base) / max(held, 1)
        print(f"  {held} idle sessions: RSS {base / 1024:.0f} MB before, {rss / 1024:.0f} MB "
              f"with them = {per:.1f} KiB per session")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario", choices=["slow", "silent", "idle"])
    ap.add_argument("--attackers", type=int)
    ap.add_argument("--addresses", type=int)
    ap.add_argument("--interval", type=float, default=5.0)
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--probes", type=int, default=20)
    ap.add_argument("--ramp", type=float, default=15.0, help="seconds the flood builds up")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--bin", action="append", default=[])
    ap.add_argument("--limits", action="append", default=[])
    args = ap.parse_args()
    defaults = {"slow": (3000, 100), "silent": (2000, 100), "idle": (10000, 250)}[args.scenario]
    args.attackers = args.attackers or defaults[0]
    args.addresses = args.addresses or defaults[1]
    if args.scenario == "idle" and not args.limits:
        args.limits = ["max_sessions = 20000", "max_sessions_per_ip = 100"]
    require("smtp-source", "postfix")
    raise_fd_limit()
    sections = "[server.limits]\n" + "\n".join(args.limits) + "\n" if args.limits else ""
    with contextlib.ExitStack() as stack:
        dns_port = stack.enter_context(resolver("unbound"))
        sink_port = stack.enter_context(smtp_sink())
        for binary in args.bin or [BIN]:
            for n in range(args.runs):
                print(f"{binary} run {n + 1} ({args.scenario}; {' '.join(args.limits) or 'default limits'}):")
                with gateway(sink_port, dns_port, binary=binary, sections=sections) as (port, work):
                    asyncio.run(scenario(args, port, gateway_pid(work)))
                sys.stdout.flush()


if __name__ == "__main__":
    main()
