"""Shared pieces of the load scripts: ports, a local DNS server, the internal server, and
a gateway on a throwaway config and spool. Everything listens on 127.0.0.1 only."""
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "mxguard")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"port {port} never opened")


def require(tool, package):
    if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
        sys.exit(f"{tool} not found: apt-get install {package}")


@contextlib.contextmanager
def dnsmasq(*records):
    """A dnsmasq on a free loopback port serving `records` (dnsmasq options); yields the port."""
    require("dnsmasq", "dnsmasq-base")
    port = free_port()
    pidfile = tempfile.mktemp()
    subprocess.run(["dnsmasq", "--no-resolv", "--no-hosts", "--listen-address=127.0.0.1",
                    f"--port={port}", "--bind-interfaces", f"--pid-file={pidfile}", *records],
                   check=True)
    try:
        yield port
    finally:
        with open(pidfile) as f:
            os.kill(int(f.read().strip()), signal.SIGTERM)


@contextlib.contextmanager
def smtp_sink():
    """Postfix's smtp-sink as the internal server; yields its port."""
    require("smtp-sink", "postfix")
    port = free_port()
    sink = subprocess.Popen(["smtp-sink", "-u", "nobody", f"127.0.0.1:{port}", "1000"])
    try:
        wait_port(port)
        yield port
    finally:
        sink.terminate()


@contextlib.contextmanager
def gateway(sink_port, dns_port, extra=""):
    """The release binary relaying example.test to `sink_port`, resolving with `dns_port`,
    with the shipped rules plus `extra` TOML lines in `[policy]`; yields (port, work dir)."""
    work = tempfile.mkdtemp(prefix="mxguard-bench-")
    port = free_port()
    cfg = os.path.join(work, "mxguard.toml")
    with open(cfg, "w") as f:
        f.write(f"""
[server]
listen = ["127.0.0.1:{port}"]
hostname = "mx.example.test"
[relay]
domains = ["example.test"]
internal = ["127.0.0.1:{sink_port}"]
[spool]
dir = "{work}/spool"
[metrics]
listen = "127.0.0.1:{free_port()}"
[dns]
nameservers = ["127.0.0.1:{dns_port}"]
[log]
level = "warn"
[policy]
rules_dir = "{ROOT}/rules"
{extra}
""")
    gw = subprocess.Popen([BIN, "serve", "--config", cfg], stderr=open(os.path.join(work, "log"), "w"))
    try:
        wait_port(port)
        yield port, work
    finally:
        gw.send_signal(signal.SIGTERM)
        gw.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
