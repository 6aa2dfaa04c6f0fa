//! The shared resolver against the in-process test DNS server: typed outcomes, timeouts,
//! SERVFAIL, stage deadlines, caching, metrics and DNSBL lookups. Nothing here leaves
//! loopback: every resolver is pointed at a test server.

use mxguard::dns::dnsbl::{self, Listing};
use mxguard::dns::testing::TestDns;
use mxguard::dns::{all_within, within, Dns, Mx, Outcome};
use mxguard::metrics::Metrics;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

fn v4(s: &str) -> Ipv4Addr {
    s.parse().expect("test IPv4 address")
}

fn v6(s: &str) -> Ipv6Addr {
    s.parse().expect("test IPv6 address")
}

async fn zone() -> TestDns {
    TestDns::builder()
        .a("mx1.example.test", v4("127.0.0.11"))
        .aaaa("mx1.example.test", v6("fd00::11"))
        .mx("example.test", 20, "bk1.example.test")
        .mx("example.test", 10, "mx1.example.test")
        .txt("example.test", "v=spf1 ip4:127.0.0.0/8 -all")
        .ptr(IpAddr::V4(v4("192.0.2.11")), "mx1.example.test")
        .a("2.0.0.127.bl.test", v4("127.0.0.2"))
        .a("2.0.0.127.bl.test", v4("127.0.0.4"))
        .a("spam.example.dbl.test", v4("127.0.1.2"))
        .start()
        .await
        .expect("test DNS server")
}

fn resolver(server: &TestDns) -> (Dns, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let dns = Dns::new(&TestDns::dns_config(server.addr()), metrics.clone()).expect("resolver");
    (dns, metrics)
}

fn lookups(metrics: &Metrics, check: &str, result: &str) -> u64 {
    metrics
        .dns_lookups_total
        .with_label_values(&[check, result])
        .get()
}

#[tokio::test]
async fn records_of_every_type_are_found() {
    let server = zone().await;
    let (dns, _) = resolver(&server);
    assert_eq!(
        dns.lookup_a("test", "mx1.example.test").await,
        Outcome::Found(vec![v4("127.0.0.11")])
    );
    assert_eq!(
        dns.lookup_aaaa("test", "mx1.example.test").await,
        Outcome::Found(vec![v6("fd00::11")])
    );
    let mut ips = dns
        .lookup_ip("test", "mx1.example.test")
        .await
        .found()
        .expect("addresses");
    ips.sort();
    assert_eq!(
        ips,
        vec![IpAddr::V4(v4("127.0.0.11")), IpAddr::V6(v6("fd00::11"))]
    );
    assert_eq!(
        dns.lookup_ptr("test", IpAddr::V4(v4("192.0.2.11"))).await,
        Outcome::Found(vec!["mx1.example.test".to_owned()])
    );
    assert_eq!(
        dns.lookup_txt("test", "example.test").await,
        Outcome::Found(vec!["v=spf1 ip4:127.0.0.0/8 -all".to_owned()])
    );
    assert_eq!(
        dns.lookup_mx("test", "example.test").await,
        Outcome::Found(vec![
            Mx {
                preference: 10,
                exchange: "mx1.example.test".into()
            },
            Mx {
                preference: 20,
                exchange: "bk1.example.test".into()
            },
        ])
    );
}

#[tokio::test]
async fn nxdomain_and_nodata_are_not_found() {
    let server = zone().await;
    let (dns, metrics) = resolver(&server);
    assert_eq!(
        dns.lookup_a("fcrdns", "nothing.example.test").await,
        Outcome::NotFound
    );
    // The name exists, but has no TXT record.
    assert_eq!(
        dns.lookup_txt("fcrdns", "mx1.example.test").await,
        Outcome::NotFound
    );
    assert_eq!(
        dns.lookup_ptr("fcrdns", IpAddr::V4(v4("192.0.2.1"))).await,
        Outcome::NotFound
    );
    assert_eq!(lookups(&metrics, "fcrdns", "nxdomain"), 3);
    assert_eq!(lookups(&metrics, "fcrdns", "ok"), 0);
}

#[tokio::test]
async fn a_silent_server_times_out() {
    let server = TestDns::silent().await.expect("silent server");
    let (dns, metrics) = resolver(&server);
    // Bounded by timeout × attempts; the test only asserts that it returns.
    assert_eq!(
        dns.lookup_a("dnsbl", "2.0.0.127.bl.test").await,
        Outcome::Timeout
    );
    assert!(server.queries() >= 1);
    assert_eq!(lookups(&metrics, "dnsbl", "timeout"), 1);
    let histogram = metrics
        .dns_lookup_duration_seconds
        .with_label_values(&["dnsbl"]);
    assert_eq!(histogram.get_sample_count(), 1);
}

#[tokio::test]
async fn servfail_is_its_own_outcome() {
    let server = TestDns::servfail().await.expect("servfail server");
    let (dns, metrics) = resolver(&server);
    assert_eq!(
        dns.lookup_mx("sender_domain", "example.test").await,
        Outcome::ServFail
    );
    assert_eq!(lookups(&metrics, "sender_domain", "servfail"), 1);
}

#[tokio::test]
async fn the_stage_deadline_cuts_a_silent_server_short() {
    let server = TestDns::silent().await.expect("silent server");
    let mut config = TestDns::dns_config(server.addr());
    config.timeout = Duration::from_secs(30);
    let metrics = Arc::new(Metrics::new());
    let dns = Dns::new(&config, metrics.clone()).expect("resolver");
    let deadline = Instant::now() + Duration::from_millis(200);
    let outcome = within(deadline, dns.lookup_a("dnsbl", "2.0.0.127.bl.test")).await;
    assert_eq!(outcome, Outcome::Timeout);
    // The dropped lookup still counted itself.
    assert_eq!(lookups(&metrics, "dnsbl", "timeout"), 1);
}

#[tokio::test]
async fn a_stage_runs_its_lookups_together_under_one_deadline() {
    let server = zone().await;
    let (dns, _) = resolver(&server);
    let deadline = dns.stage_deadline();
    let results = all_within(
        deadline,
        vec![
            dns.lookup_a("stage", "mx1.example.test"),
            dns.lookup_a("stage", "missing.example.test"),
        ],
    )
    .await;
    assert_eq!(
        results,
        vec![Outcome::Found(vec![v4("127.0.0.11")]), Outcome::NotFound]
    );
}

#[tokio::test]
async fn answers_and_nxdomain_are_cached() {
    let server = zone().await;
    let (dns, metrics) = resolver(&server);
    let first = dns.lookup_a("cache", "mx1.example.test").await;
    let asked = server.queries();
    assert_eq!(dns.lookup_a("cache", "mx1.example.test").await, first);
    assert_eq!(server.queries(), asked, "positive answer served from cache");

    assert_eq!(
        dns.lookup_a("cache", "absent.example.test").await,
        Outcome::NotFound
    );
    let asked = server.queries();
    assert_eq!(
        dns.lookup_a("cache", "absent.example.test").await,
        Outcome::NotFound
    );
    assert_eq!(server.queries(), asked, "NXDOMAIN served from cache");
    assert_eq!(lookups(&metrics, "cache", "ok"), 2);
    assert_eq!(lookups(&metrics, "cache", "nxdomain"), 2);

    // Clones share the cache.
    let clone = dns.clone();
    assert_eq!(clone.lookup_a("cache", "mx1.example.test").await, first);
    assert_eq!(server.queries(), asked);
}

#[tokio::test]
async fn dnsbl_lookups_interpret_return_codes() {
    let server = zone().await;
    let (dns, metrics) = resolver(&server);
    // A list with no code map: the general reading of return codes.
    let list = mxguard::config::DnsListConfig {
        zone: "bl.test".into(),
        weight: 1.0,
        symbol: "RCVD_IN_BL".into(),
        codes: Vec::new(),
        reply_name: "bl.test".into(),
        sanity_probe: true,
        lookup: Default::default(),
    };
    let listed = dnsbl::ip_query(IpAddr::V4(v4("127.0.0.2")), "bl.test");
    assert_eq!(listed, "2.0.0.127.bl.test.");
    assert_eq!(
        dnsbl::lookup(&dns, "dnsbl", &listed, &list).await,
        Outcome::Found(Listing::Listed(vec![v4("127.0.0.2"), v4("127.0.0.4")]))
    );
    let clean = dnsbl::ip_query(IpAddr::V4(v4("127.0.0.3")), "bl.test");
    assert_eq!(
        dnsbl::lookup(&dns, "dnsbl", &clean, &list).await,
        Outcome::NotFound
    );
    let v6_name = dnsbl::ip_query(IpAddr::V6(v6("2001:db8::1")), "bl.test");
    assert!(v6_name.starts_with("1.0.0.0.0.0.0.0"));
    assert_eq!(
        dnsbl::lookup(&dns, "dnsbl", &v6_name, &list).await,
        Outcome::NotFound
    );
    let uribl = dnsbl::domain_query("Spam.Example", "dbl.test").expect("a plain domain");
    assert_eq!(
        dnsbl::lookup(&dns, "uribl", &uribl, &list).await,
        Outcome::Found(Listing::Listed(vec![v4("127.0.1.2")]))
    );
    assert_eq!(lookups(&metrics, "dnsbl", "ok"), 1);
    assert_eq!(lookups(&metrics, "dnsbl", "nxdomain"), 2);
    assert_eq!(lookups(&metrics, "uribl", "ok"), 1);
}

#[tokio::test]
async fn zones_can_be_given_as_text() {
    let server = TestDns::builder()
        .zone(
            "; a DNSBL entry and a sender domain\n\
             2.0.0.127.bl.test A 127.0.0.2\n\
             example.test MX 10 mx.example.test\n\
             example.test TXT \"v=spf1 -all\"\n\
             192.0.2.9 PTR host.example.test\n",
        )
        .expect("zone text")
        .start()
        .await
        .expect("server");
    let (dns, _) = resolver(&server);
    assert_eq!(
        dns.lookup_a("t", "2.0.0.127.bl.test").await,
        Outcome::Found(vec![v4("127.0.0.2")])
    );
    assert_eq!(
        dns.lookup_txt("t", "example.test").await,
        Outcome::Found(vec!["v=spf1 -all".to_owned()])
    );
    assert_eq!(
        dns.lookup_ptr("t", IpAddr::V4(v4("192.0.2.9"))).await,
        Outcome::Found(vec!["host.example.test".to_owned()])
    );
    assert!(TestDns::builder().zone("x.test BOGUS 1").is_err());
}

#[tokio::test]
async fn metrics_render_with_check_and_result_labels() {
    let server = zone().await;
    let (dns, metrics) = resolver(&server);
    let _ = dns.lookup_a("helo", "mx1.example.test").await;
    let text = metrics.render();
    assert!(
        text.contains(r#"mxguard_dns_lookups_total{check="helo",result="ok"} 1"#),
        "{text}"
    );
    assert!(text.contains(r#"mxguard_dns_lookup_duration_seconds_count{check="helo"} 1"#));
}
