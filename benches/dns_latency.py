#!/usr/bin/env python3
"""Latency the DNS checks add to one message, answered by a local DNS server.

Usage: benches/dns_latency.py [--messages 200]

Starts dnsmasq (Debian package dnsmasq-base) on a loopback port serving a test zone
(the sender's MX, SPF and DMARC records, the HELO name, a DNSBL and a URIBL zone that
list nothing), then the release binary twice against Postfix's smtp-sink: once with every
DNS check on (two DNSBLs, FCrDNS, HELO, sender domain, SPF, DKIM, DMARC, ARC, URIBL) and
once with all of them off. It sends the same messages one at a time with Python's smtplib
and reports the mean and median time per message of each run and their difference.
Caches are warm after the first message, as on a busy gateway.
"""
import argparse
import smtplib
import statistics
import time

from benchlib import dnsmasq, gateway, smtp_sink


DNS_ON = """
[[policy.dnsbl]]
zone = "bl.bench.test"
weight = 3.0
symbol = "RCVD_IN_BENCH_BL"
[[policy.dnsbl]]
zone = "wl.bench.test"
weight = -3.0
symbol = "RCVD_IN_BENCH_WL"
[[policy.uribl]]
zone = "dbl.bench.test"
symbol = "URIBL_BENCH"
"""
DNS_OFF = """
fcrdns = false
helo_checks = false
sender_domain_check = false
auth = false
"""


def run(label, policy, dns_port, sink_port, n):
    times = []
    with gateway(sink_port, dns_port, extra=policy) as (port, _work):
        body = ("Subject: bench\r\nFrom: a@sender.bench.test\r\nTo: user@example.test\r\n\r\n"
                "see http://www.site.bench.test/x\r\n")
        for _ in range(n):
            t0 = time.perf_counter()
            s = smtplib.SMTP("127.0.0.1", port, local_hostname="client.bench.test")
            s.sendmail("a@sender.bench.test", ["user@example.test"], body)
            s.quit()
            times.append(time.perf_counter() - t0)
    times = times[1:]  # the first message fills the caches
    mean, median = statistics.mean(times) * 1000, statistics.median(times) * 1000
    print(f"{label}: mean {mean:.2f} ms, median {median:.2f} ms per message (session)")
    return mean, median


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=200)
    args = ap.parse_args()
    zone = dnsmasq(
        "--local=/bench.test/",
        "--mx-host=sender.bench.test,mx.sender.bench.test,10",
        "--host-record=mx.sender.bench.test,192.0.2.25",
        "--host-record=client.bench.test,127.0.0.1",
        "--host-record=www.site.bench.test,192.0.2.80",
        "--txt-record=sender.bench.test,v=spf1 ip4:127.0.0.1 -all",
        "--txt-record=client.bench.test,v=spf1 ip4:127.0.0.1 -all",
        "--txt-record=_dmarc.sender.bench.test,v=DMARC1; p=none",
    )
    with zone as dns_port, smtp_sink() as sink_port:
        off = run("DNS checks off", DNS_OFF, dns_port, sink_port, args.messages)
        on = run("DNS checks on ", DNS_ON, dns_port, sink_port, args.messages)
        print(f"added by the DNS checks: mean {on[0] - off[0]:.2f} ms, median {on[1] - off[1]:.2f} ms per message")


if __name__ == "__main__":
    main()
