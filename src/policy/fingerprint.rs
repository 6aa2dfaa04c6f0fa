//! The policy fingerprint: SHA-256 over everything that decides a verdict (relay domains,
//! recipient lists, thresholds, rule actions, content limits, the canonical rule set, the
//! classifier's settings and the version of its logistic model).
//! Two gateways with equal fingerprints judge every message alike, whatever the order,
//! comments or whitespace of their files; listeners, paths and timeouts do not count.

use crate::config::Config;
use crate::rules::CompiledRules;
use sha2::{Digest, Sha256};
use std::fmt::Write as _;

/// The canonical text of a policy, one fact per line. `unavailable` names the services
/// whose checks the configuration asks for but that this gateway could not set up (`dns`,
/// `auth`): its checks do not run, and the fingerprint must not say they do (review: a
/// member without a resolver claimed its healthy peers' fingerprint, and they trusted
/// its stamps on mail no DNS list, SPF or DMARC had judged).
pub fn canonical(
    config: &Config,
    rules: Option<&CompiledRules>,
    model: Option<&str>,
    unavailable: &[&str],
) -> String {
    let mut out = String::new();
    if !unavailable.is_empty() {
        let _ = writeln!(out, "unavailable={}", unavailable.join(","));
    }
    let mut domains = config.relay.domains.clone();
    domains.sort();
    domains.dedup();
    let _ = writeln!(out, "relay.domains={}", domains.join(","));
    // The domain a bare `postmaster` is qualified with is the first listed (review: two
    // members listing the same domains in another order delivered it to different
    // domains, under different thresholds, with equal fingerprints).
    let postmaster = crate::policy::checks::relay_control::postmaster_domain(config);
    let _ = writeln!(out, "postmaster_domain={}", postmaster.unwrap_or_default());
    let r = &config.relay.recipients;
    let _ = writeln!(out, "recipients.callout={}", r.callout);
    for (domain, list) in &r.lists {
        let _ = writeln!(
            out,
            "recipients.list.{domain}={}",
            list.canonical().replace('\n', ",")
        );
    }
    let s = &config.server;
    let _ = writeln!(out, "bare_line_ending={:?}", s.bare_line_ending);
    // Only a greeting delay lets a client talk too early (`EARLY_TALKER`); its length is
    // timing, like the timeouts.
    let _ = writeln!(out, "pregreet_test={}", !s.greet_delay.is_zero());
    let _ = writeln!(out, "message_size_bytes={}", s.limits.message_size_bytes);
    let _ = writeln!(out, "text_line_bytes={}", s.limits.text_line_bytes);
    let _ = writeln!(
        out,
        "recipients_per_message={}",
        s.limits.recipients_per_message
    );
    // What the content checks scan of a message decides verdicts too.
    let l = &s.limits;
    let _ = writeln!(
        out,
        "scan={}/{}/{}/{} memory={} header={}/{}/{}",
        l.scan_part_bytes,
        l.scan_raw_part_bytes,
        l.scan_nesting_depth,
        l.scan_mime_parts,
        l.message_memory_bytes,
        l.message_header_bytes,
        l.message_header_fields,
        l.received_fields
    );
    let p = &config.policy;
    let _ = writeln!(out, "gtube={}", p.gtube);
    let t = p.thresholds;
    let _ = writeln!(out, "thresholds={}/{}/{}", t.tag, t.quarantine, t.reject);
    for (domain, t) in &p.domain_thresholds {
        let _ = writeln!(
            out,
            "thresholds.{domain}={}/{}/{}",
            t.tag, t.quarantine, t.reject
        );
    }
    for (rule, action) in &p.actions {
        let _ = writeln!(out, "action.{rule}={}", action.as_str());
    }
    checks(&mut out, config);
    let c = &config.classifier;
    if c.enabled {
        let _ = writeln!(
            out,
            "classifier=on min_learned={} model={}",
            c.min_learned,
            model.unwrap_or("none")
        );
    } else {
        out.push_str("classifier=off\n");
    }
    match rules {
        Some(rules) => out.push_str(&rules.canonical_text()),
        None => out.push_str("rules=none\n"),
    }
    out
}

/// The checks that decide verdicts beyond rules and thresholds: which DNS and
/// authentication checks run, DNS lists, network lists, greylisting and rate limits.
fn checks(out: &mut String, config: &Config) {
    let p = &config.policy;
    let _ = writeln!(
        out,
        "checks=fcrdns:{},auth:{},dmarc_reject:{},dmarc_quarantine:{},helo:{},sender_domain:{}",
        p.fcrdns, p.auth, p.dmarc_reject, p.dmarc_quarantine, p.helo_checks, p.sender_domain_check
    );
    let mut tempfail = p.dns_tempfail.clone();
    tempfail.sort();
    let _ = writeln!(out, "dns_tempfail={}", tempfail.join(","));
    let _ = writeln!(out, "dnsbl_threshold={:?}", p.dnsbl_threshold);
    // Lists are asked together and their weights add up: their order in the file judges
    // nothing, so it must not tell two members apart.
    for (section, lists) in [("dnsbl", &p.dnsbl), ("uribl", &p.uribl)] {
        let mut lines: Vec<String> = lists
            .iter()
            .map(|l| {
                let codes: Vec<String> = l
                    .codes
                    .iter()
                    .map(|e| match e.weight {
                        None => format!("{:?}={}", e.matches, e.symbol),
                        Some(w) => format!("{:?}={}*{w}", e.matches, e.symbol),
                    })
                    .collect();
                // Whether a list that lists everyone is set aside changes its verdicts too.
                // What a URIBL is asked about is written only when it is not the domains,
                // so the fingerprints of tiers that never set it stay as they were.
                let lookup = match l.lookup {
                    crate::config::UriLookup::Domains => String::new(),
                    other => format!(" lookup={other:?}"),
                };
                format!(
                    "{section}={}*{} {} [{}] sanity_probe={}{lookup}\n",
                    l.zone,
                    l.weight,
                    l.symbol,
                    codes.join(","),
                    l.sanity_probe
                )
            })
            .collect();
        lines.sort();
        lines.iter().for_each(|line| out.push_str(line));
    }
    let _ = writeln!(out, "uribl_max_domains={}", p.uribl_max_domains);
    let _ = writeln!(out, "backtrack_budget={:?}", p.backtrack_budget);
    for (name, list) in [
        ("trusted_networks", &p.trusted_networks),
        ("allow_networks", &p.allow_networks),
        ("deny_networks", &p.deny_networks),
    ] {
        let _ = writeln!(out, "{name}={}", merged(list.networks()));
    }
    let a = &config.attachments;
    if a.enabled {
        let _ = writeln!(
            out,
            "attachments=ext:{} types:{} depth:{} entries:{} bytes:{}",
            a.blocked_extensions.join(","),
            a.blocked_types.join(","),
            a.max_archive_depth,
            a.max_archive_entries,
            a.max_expanded_bytes
        );
    } else {
        out.push_str("attachments=off\n");
    }
    let av = &config.antivirus;
    if av.clamd.is_some() {
        let _ = writeln!(
            out,
            "antivirus=on_failure:{:?} scan:{:?} max_stream_bytes:{}",
            av.on_failure, av.scan, av.max_stream_bytes
        );
    } else {
        out.push_str("antivirus=off\n");
    }
    let g = &config.greylist;
    if g.enabled {
        let exempt = merged(g.exempt.networks());
        let _ = writeln!(
            out,
            "greylist={:?} delay={:?} window={:?} pass_ttl={:?} prefixes={}/{} auto_allow_after={} min_score={} exempt={}",
            g.stage,
            g.delay,
            g.window,
            g.pass_ttl,
            g.ipv4_prefix,
            g.ipv6_prefix,
            g.auto_allow_after,
            g.min_score,
            exempt
        );
    } else {
        out.push_str("greylist=off\n");
        // The prefixes also key `client_net` rate limits, whether or not greylisting is on.
        if config
            .ratelimits
            .iter()
            .any(|r| r.key == crate::config::RateKey::ClientNet)
        {
            let _ = writeln!(out, "prefixes={}/{}", g.ipv4_prefix, g.ipv6_prefix);
        }
    }
    for r in &config.ratelimits {
        let _ = writeln!(
            out,
            "ratelimit.{}={} {}/{:?} burst {} at {:?} {:?} {}",
            r.name,
            r.key.as_str(),
            r.limit,
            r.per,
            r.burst,
            r.stage,
            r.action,
            r.symbol
        );
    }
    let _ = writeln!(out, "state.on_failure={:?}", config.state.on_failure);
    if let Some(t) = &config.tier {
        // What decides the tier's symbols, alike on every member: not its name, role or
        // peers' addresses, which differ from one member to the next. The key prefix
        // decides whether members share one memory of clients at all.
        // Nor without a shared store: a member on the embedded one scores no bypass
        // symbol and greylists and limits only its own clients, and showed its Redis
        // peers' fingerprint (review). Not the store's address, which members may write
        // differently (a local proxy each).
        let primaries = t.primaries();
        let shared = match config.state.backend {
            crate::config::StateBackendConfig::Redis { .. } => "shared",
            crate::config::StateBackendConfig::Embedded { .. } => "local",
        };
        let _ = writeln!(
            out,
            "tier=bypass:{:?} memory:{:?} fanout:{:?} stamp_max_age:{:?} primaries:{primaries} prefix:{:?} state:{shared}",
            t.bypass_action, t.connection_memory, t.fanout_window, t.stamp_max_age, config.state.key_prefix
        );
    }
}

/// Networks as the set of addresses they cover, however written (`192.0.2.0/25` and
/// `192.0.2.128/25` read as `192.0.2.0/24`, duplicates once), in order.
fn merged(networks: &[ipnet::IpNet]) -> String {
    let nets: Vec<String> = ipnet::IpNet::aggregate(&networks.to_vec())
        .iter()
        .map(|n| n.to_string())
        .collect();
    nets.join(",")
}

/// SHA-256 of [`canonical`], 64 lower-case hex digits.
pub fn compute(
    config: &Config,
    rules: Option<&CompiledRules>,
    model: Option<&str>,
    unavailable: &[&str],
) -> String {
    let digest = Sha256::digest(canonical(config, rules, model, unavailable).as_bytes());
    digest.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::RuleSet;
    use std::path::Path;

    fn config(extra: &str) -> Config {
        let text = format!(
            "[relay]\ndomains=[\"b.test\",\"a.test\"]\ninternal=[\"127.0.0.1:2526\"]\n{extra}"
        );
        Config::from_toml(Path::new("t.toml"), &text).unwrap()
    }

    #[test]
    fn listeners_and_order_do_not_matter_but_thresholds_do() {
        let base = compute(&config(""), None, None, &[]);
        let other_listener = compute(
            &config("[server]\nlisten=[\"127.0.0.1:9999\"]\n"),
            None,
            None,
            &[],
        );
        assert_eq!(base, other_listener);
        let domains = |list: &str| {
            let text = format!("[relay]\ndomains=[{list}]\ninternal=[\"127.0.0.1:1\"]\n");
            compute(
                &Config::from_toml(Path::new("t.toml"), &text).unwrap(),
                None,
                None,
                &[],
            )
        };
        assert_eq!(
            domains("\"b.test\",\".c.test\",\"a.test\""),
            domains("\"b.test\",\"a.test\",\".c.test\"")
        );
        // Regression (review): the first domain is where a bare `postmaster` goes.
        assert_ne!(
            domains("\"b.test\",\"a.test\""),
            domains("\"a.test\",\"b.test\"")
        );
        // A gateway that could not set up its resolver runs no DNS check (review).
        assert_ne!(base, compute(&config(""), None, None, &["dns"]));
        assert_ne!(
            base,
            compute(&config("[policy]\nreject=12.0\n"), None, None, &[])
        );
    }

    /// Regression (review): DNS lists were hashed in file order and networks as written,
    /// so members that judge alike (two lists swapped, a /24 written as two /25s) showed
    /// different fingerprints: a serious `fingerprint_mismatch` and a mismatch alert.
    #[test]
    fn list_order_and_how_networks_are_written_do_not_matter() {
        let symbol = |zone: &str| zone.replace('.', "_").to_ascii_uppercase();
        let lists = |a: &str, b: &str| {
            let (sa, sb) = (symbol(a), symbol(b));
            compute(
                &config(&format!(
                    "[[policy.dnsbl]]\nzone=\"{a}\"\nsymbol=\"{sa}\"\n[[policy.dnsbl]]\nzone=\"{b}\"\nsymbol=\"{sb}\"\n"
                )),
                None,
                None,
                &[],
            )
        };
        assert_eq!(
            lists("a.bl.test", "b.bl.test"),
            lists("b.bl.test", "a.bl.test")
        );
        // Regression (review): a member that does not set aside a list listing everyone
        // judged unlike its peers under the same fingerprint.
        let probed = |on: bool| {
            let list = format!(
                "[[policy.dnsbl]]\nzone=\"a.bl.test\"\nsymbol=\"A_BL\"\nsanity_probe={on}\n"
            );
            compute(&config(&list), None, None, &[])
        };
        assert_ne!(probed(true), probed(false));
        // What a URIBL is asked about changes its verdicts; the default adds no line.
        let asked = |lookup: &str| {
            let list = format!("[[policy.uribl]]\nzone=\"multi.test\"\nsymbol=\"M\"\n{lookup}");
            compute(&config(&list), None, None, &[])
        };
        assert_eq!(asked(""), asked("lookup=\"domains\"\n"));
        assert_ne!(asked(""), asked("lookup=\"both\"\n"));
        assert_ne!(asked("lookup=\"ips\"\n"), asked("lookup=\"both\"\n"));
        assert_ne!(
            lists("a.bl.test", "b.bl.test"),
            lists("a.bl.test", "c.bl.test")
        );
        let nets = |list: &str| {
            compute(
                &config(&format!("[policy]\ntrusted_networks=[{list}]\n")),
                None,
                None,
                &[],
            )
        };
        assert_eq!(
            nets("\"192.0.2.0/25\",\"192.0.2.128/25\""),
            nets("\"192.0.2.0/24\",\"192.0.2.7/32\"")
        );
        assert_ne!(nets("\"192.0.2.0/25\""), nets("\"192.0.2.0/24\""));
    }

    #[test]
    fn a_score_change_changes_the_fingerprint() {
        let c = config("");
        let a = RuleSet::parse_text(Path::new("a.cf"), "body X /x/\nscore X 1\n").compile();
        let b = RuleSet::parse_text(Path::new("a.cf"), "# comment\nbody  X  /x/\nscore X 1\n")
            .compile();
        let c2 = RuleSet::parse_text(Path::new("a.cf"), "body X /x/\nscore X 2\n").compile();
        assert_eq!(
            compute(&c, Some(&a), None, &[]),
            compute(&c, Some(&b), None, &[])
        );
        assert_ne!(
            compute(&c, Some(&a), None, &[]),
            compute(&c, Some(&c2), None, &[])
        );
    }

    #[test]
    fn greylisting_rate_limits_and_networks_are_part_of_the_policy() {
        let base = compute(&config(""), None, None, &[]);
        for extra in [
            "[greylist]\nenabled=true\n",
            "[[ratelimit]]\nname=\"conn\"\nkey=\"client_ip\"\nlimit=10\nper=\"1m\"\n",
            "[policy]\ndeny_networks=[\"203.0.113.0/24\"]\n",
            "[policy]\nfcrdns=false\n",
            "[state]\non_failure=\"closed\"\n",
            "[server]\ngreet_delay=\"2s\"\n",
        ] {
            assert_ne!(base, compute(&config(extra), None, None, &[]), "{extra}");
        }
        // Regression (review): the network prefixes key `client_net` rate limits too, but
        // counted only with greylisting on: members counting per /24 and per /16 matched.
        let by_net = |prefix: u8| {
            config(&format!(
                "[greylist]\nipv4_prefix={prefix}\n[[ratelimit]]\nname=\"n\"\nkey=\"client_net\"\nlimit=10\nper=\"1m\"\n"
            ))
        };
        assert_ne!(
            compute(&by_net(24), None, None, &[]),
            compute(&by_net(16), None, None, &[])
        );
        // The classifier's model version is part of the policy.
        let c = config("");
        assert_ne!(
            compute(&c, None, Some("aaaa"), &[]),
            compute(&c, None, Some("bbbb"), &[])
        );
        assert_ne!(
            base,
            compute(&config("[classifier]\nenabled=false\n"), None, None, &[])
        );
        // Regression (review): the tier settings that decide its symbols did not count, so
        // members with other fan-out windows or bypass actions showed one fingerprint.
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("tier.key");
        std::fs::write(&key, "a-tier-key-long-enough").unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let tier = |name: &str, role: &str, extra: &str, peer_role: &str| {
            config(&format!(
                "[tier]\nname={name:?}\nrole={role:?}\nsecret_file={:?}\n{extra}\
                 [[tier.peers]]\nname=\"other\"\nsmtp=\"127.0.0.2:25\"\nrole={peer_role:?}\n",
                key.display().to_string()
            ))
        };
        let gw1 = compute(&tier("gw1", "primary", "", "backup"), None, None, &[]);
        // Each member names itself and its peers: the same tier seen from the other side.
        let bk1 = compute(&tier("bk1", "backup", "", "primary"), None, None, &[]);
        assert_eq!(gw1, bk1);
        for extra in [
            "fanout_window=\"10m\"\n",
            "connection_memory=\"1h\"\n",
            "bypass_action=\"tempfail\"\n",
        ] {
            assert_ne!(
                gw1,
                compute(&tier("gw1", "primary", extra, "backup"), None, None, &[]),
                "{extra}"
            );
        }
        let two_primaries = compute(&tier("gw1", "primary", "", "primary"), None, None, &[]);
        assert_ne!(gw1, two_primaries);
        // Where the state lives does not change a verdict of a gateway alone.
        let redis = "[state]\nbackend=\"redis\"\nredis=\"redis://127.0.0.1:6379/\"\n";
        assert_eq!(base, compute(&config(redis), None, None, &[]));
        // Regression (review): in a tier it does: a member on the embedded store scores
        // no bypass symbol, and it showed its Redis peers' fingerprint.
        let on_redis = |name: &str, role: &str, peer_role: &str, url: &str| {
            let c = config(&format!(
                "[tier]\nname={name:?}\nrole={role:?}\nsecret_file={:?}\n\
                 [[tier.peers]]\nname=\"other\"\nsmtp=\"127.0.0.2:25\"\nrole={peer_role:?}\n\
                 [state]\nbackend=\"redis\"\nredis={url:?}\n",
                key.display().to_string()
            ));
            compute(&c, None, None, &[])
        };
        let gw1_redis = on_redis("gw1", "primary", "backup", "redis://10.0.0.5:6379/");
        assert_ne!(gw1, gw1_redis);
        assert_eq!(
            gw1_redis,
            on_redis("bk1", "backup", "primary", "redis://127.0.0.1:6380/"),
            "one store, reached at another address"
        );
    }
}
