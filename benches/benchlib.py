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
def unbound(*local_data):
    """A private unbound on a free loopback port, as GUIDE §6 recommends for benchmarks: it
    answers every name it does not know NXDOMAIN with an SOA (so answers are negatively
    cached, as behind a deployed gateway's caching resolver); `local_data` are unbound
    `local-data:` records. Yields the port."""
    require("unbound", "unbound")
    port = free_port()
    work = tempfile.mkdtemp(prefix="unbound-bench-")
    conf = os.path.join(work, "unbound.conf")
    # The root SOA is what makes unbound put an SOA into every NXDOMAIN it answers, so
    # resolvers downstream cache the negative answer (RFC 2308).
    soa = ". 3600 IN SOA localhost. nobody.invalid. 1 3600 1200 604800 300"
    records = "".join(f'  local-data: "{r}"\n' for r in (soa, *local_data))
    with open(conf, "w") as f:
        f.write(f"""server:
  interface: 127.0.0.1
  port: {port}
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "{work}"
  use-syslog: no
  logfile: ""
  pidfile: ""
  access-control: 127.0.0.0/8 allow
  module-config: "iterator"
  local-zone: "." static
{records}remote-control:
  control-enable: no
""")
    proc = subprocess.Popen(["unbound", "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_dns(port)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


def wait_dns(port, timeout=20):
    """Waits until a UDP DNS server on `port` answers a query."""
    query = bytes.fromhex("12340100000100000000000007696e76616c69640000010001")  # invalid. A
    end = time.time() + timeout
    while time.time() < end:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.2)
            try:
                s.sendto(query, ("127.0.0.1", port))
                s.recvfrom(512)
                return
            except OSError:
                time.sleep(0.05)
    sys.exit(f"DNS server on port {port} never answered")


@contextlib.contextmanager
def resolver(kind):
    """The benchmark's DNS: `unbound` (default; negative answers cached, like a deployed
    gateway's local resolver) or `dnsmasq` (NXDOMAIN without SOA: nothing cached)."""
    if kind == "dnsmasq":
        with dnsmasq("--address=/#/") as port:
            yield port
    else:
        with unbound() as port:
            yield port


@contextlib.contextmanager
def redis_server():
    """A private redis-server on a free loopback port (nothing persisted); yields the port."""
    require("redis-server", "redis-server")
    port = free_port()
    work = tempfile.mkdtemp(prefix="redis-bench-")
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", work],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


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
def gateway(sink_port, dns_port, extra="", binary=BIN, sections=""):
    """`binary` (the release build by default) relaying example.test to `sink_port`,
    resolving with `dns_port`, with the shipped rules plus `extra` TOML lines in
    `[policy]` and `sections` (whole TOML sections) at the end; yields (port, work dir)."""
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
{sections}
""")
    gw = subprocess.Popen([binary, "serve", "--config", cfg], stderr=open(os.path.join(work, "log"), "w"))
    try:
        wait_port(port)
        yield port, work
    finally:
        gw.send_signal(signal.SIGTERM)
        try:
            gw.wait(timeout=30)
        except subprocess.TimeoutExpired:
            # A gateway that does not stop must not outlive the run, nor keep its files.
            gw.kill()
            gw.wait()
        shutil.rmtree(work, ignore_errors=True)


def gateway_pid(work):
    """The pid of the gateway `gateway()` started in `work` (found by its config path)."""
    cfg = os.path.join(work, "mxguard.toml").encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if cfg in f.read().split(b"\0"):
                    return int(entry)
        except OSError:
            continue
    sys.exit(f"no gateway process for {work}")


def proc_memory(pid):
    """VmRSS, VmHWM (peak RSS), RssAnon and RssFile of `pid` in KiB, from /proc."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[key] = int(value.split()[0])
    return out


def raise_fd_limit():
    """Raises this process's open-files soft limit to the hard limit (flood scripts hold
    thousands of sockets; gateways started afterwards inherit the limit)."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard
