//! Reloads and model refreshes of a running gateway (`serve` + its `Gateway` handle): what
//! a refused reload leaves alone, and what a refresh may not bring in.

use super::*;
use std::path::{Path, PathBuf};

fn base_toml(dir: &Path, rules_dir: &str, extra: &str) -> String {
    format!(
        r#"
[server]
hostname = "mx.example.test"
listen = ["127.0.0.1:0"]
[relay]
domains = ["example.test"]
internal = ["127.0.0.1:9"]
[spool]
dir = "{spool}"
[metrics]
listen = "127.0.0.1:0"
[dns]
nameservers = ["127.0.0.1:9"]
timeout = "1s"
[policy]
rules_dir = "{rules}"
{extra}
"#,
        spool = dir.join("spool").display(),
        rules = dir.join(rules_dir).display(),
    )
}

/// Starts `serve` on its own thread and runtime; returns the reload handle.
fn start(config_path: &Path) -> (Gateway, CancellationToken, std::thread::JoinHandle<()>) {
    let config = Config::load(config_path).unwrap();
    let shutdown = CancellationToken::new();
    let (tx, rx) = std::sync::mpsc::channel();
    let stop = shutdown.clone();
    let handle = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            serve(config, vec![l], stop, move |gw| {
                let _ = tx.send(gw);
            })
            .await
            .unwrap();
        });
    });
    let gw = rx.recv_timeout(Duration::from_secs(60)).unwrap();
    (gw, shutdown, handle)
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn secret(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("tier.key");
    std::fs::write(&p, "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0\n").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

/// A rules directory `rules/` that compiles, with one rule no test message hits.
fn plain_rules(dir: &Path) {
    write(
        &dir.join("rules/a.cf"),
        "body OK_RULE /zz-ok-zz/\nscore OK_RULE 1\n",
    );
}

/// `[tier]` for member gw1 in `role`, its key in `key`.
fn tier_section(key: &Path, role: &str) -> String {
    format!(
        "[tier]\nname = \"gw1\"\nrole = \"{role}\"\nsecret_file = \"{}\"\n",
        key.display()
    )
}

/// Regression (review): a reload applied `[tier]` (and `[state]`, `[dns]`, `[antivirus]`)
/// before it built the policy, so a reload refused for a broken rules file left the
/// gateway heartbeating in its new role with the old policy in force.
#[test]
fn a_refused_reload_leaves_the_tier_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    plain_rules(d);
    write(
        &d.join("broken/a.cf"),
        "body BROKEN /unterminated\nscore BROKEN 1\n",
    );
    let key = secret(d);
    let tier = |role: &str| tier_section(&key, role);
    let cfg = d.join("mxguard.toml");
    write(&cfg, &base_toml(d, "rules", &tier("primary")));
    let (gw, stop, h) = start(&cfg);
    let before = gw.policy().fingerprint().to_owned();
    write(&cfg, &base_toml(d, "broken", &tier("backup")));
    let refused = gw.reload(&cfg).is_err();
    let fingerprint = gw.policy().fingerprint().to_owned();
    let role = gw
        .services()
        .services
        .tier
        .as_ref()
        .map(|t| t.config().role);
    stop.cancel();
    h.join().unwrap();
    assert!(refused, "a broken rules file must refuse the reload");
    assert_eq!(fingerprint, before, "the old policy stays in force");
    assert_eq!(
        role,
        Some(config::Role::Primary),
        "the refused reload changed the tier"
    );
}

/// Regression (review): a refresh read the configuration in force before it took the
/// services lock; one that ran while a reload was building put the older snapshot back
/// in force after the reload's, and the reload was silently lost.
#[test]
fn a_refresh_during_a_reload_does_not_undo_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The shipped rules: a policy build that takes long enough to overlap.
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let cfg = d.join("mxguard.toml");
    let with = |tag: f64| {
        base_toml(d, "rules", &format!("tag = {tag}\n")).replace(
            &d.join("rules").display().to_string(),
            &shipped.display().to_string(),
        )
    };
    write(&cfg, &with(5.0));
    let (gw, stop, h) = start(&cfg);
    write(&cfg, &with(4.0));
    let reloader = {
        let gw = gw.clone();
        let cfg = cfg.clone();
        std::thread::spawn(move || gw.reload(&cfg).unwrap())
    };
    std::thread::sleep(Duration::from_millis(30));
    gw.refresh().unwrap();
    reloader.join().unwrap();
    let tag = gw.policy().config().policy.thresholds.tag;
    let series = gw
        .metrics
        .render()
        .lines()
        .filter(|l| l.starts_with("mxguard_policy_info{"))
        .count();
    stop.cancel();
    h.join().unwrap();
    assert_eq!(tag, 4.0, "the reload (tag 4.0) was undone by the refresh");
    assert_eq!(series, 1, "mxguard_policy_info has {series} series");
}

/// Regression (review): a refresh (a newly published classifier model) built the policy
/// again from disk, so rules edited together with a configuration the reload refused
/// went live at the next model; and it counted as a successful reload.
#[test]
fn a_refresh_reads_nothing_from_disk_and_is_no_reload() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        &d.join("rules/a.cf"),
        "body LOCAL_T /zz-t-zz/\nscore LOCAL_T 1\n",
    );
    let cfg = d.join("mxguard.toml");
    write(&cfg, &base_toml(d, "rules", ""));
    let (gw, stop, h) = start(&cfg);
    let score = |gw: &Gateway| gw.policy().rules().and_then(|r| r.score("LOCAL_T"));
    let successes = |gw: &Gateway| {
        gw.metrics
            .policy_reloads_total
            .with_label_values(&["success"])
            .get()
    };
    let before = successes(&gw);
    write(
        &d.join("rules/a.cf"),
        "body LOCAL_T /zz-t-zz/\nscore LOCAL_T 20\n",
    );
    write(
        &cfg,
        &format!("{}\nbogus_key = 1\n", base_toml(d, "rules", "")),
    );
    let refused = gw.reload(&cfg).is_err();
    gw.refresh().unwrap();
    let after = score(&gw);
    let counted = successes(&gw) - before;
    stop.cancel();
    h.join().unwrap();
    assert!(refused, "the configuration with a typo must be refused");
    assert_eq!(
        after,
        Some(1.0),
        "the refused edit's rules came in with the refresh"
    );
    assert_eq!(counted, 0, "a model refresh counted as a policy reload");
}

/// Regression: a reload gave the policy's checks a new `state.key_prefix` while the
/// classifier and the tier kept the old one, and `mxguard learn` (which reads the file)
/// wrote under the new one: one gateway read its store under two prefixes. The prefix
/// now waits for a restart; the failure mode follows the reload. So does the timeout no
/// more (review): the tier's heartbeats, the classifier and the health watcher kept the
/// old one and fed the health tracker the checks share, which then called a backend
/// down that answered within the new timeout.
#[test]
fn a_reload_keeps_the_state_key_prefix_and_timeout_and_takes_the_failure_mode() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    plain_rules(d);
    let state = |prefix: &str, on_failure: &str, timeout: &str| {
        format!(
            "[state]\nkey_prefix = \"{prefix}\"\non_failure = \"{on_failure}\"\ntimeout = \"{timeout}\"\n"
        )
    };
    let cfg = d.join("mxguard.toml");
    write(
        &cfg,
        &base_toml(d, "rules", &state("one:", "open", "200ms")),
    );
    let (gw, stop, h) = start(&cfg);
    write(&cfg, &base_toml(d, "rules", &state("two:", "closed", "1s")));
    let reloaded = gw.reload(&cfg);
    let in_force = gw.services().services.state.clone();
    stop.cancel();
    h.join().unwrap();
    assert!(reloaded.is_ok(), "{reloaded:?}");
    let in_force = in_force.expect("the gateway's state");
    assert_eq!(
        in_force.prefix(),
        "one:",
        "the reload changed the key prefix"
    );
    assert_eq!(in_force.on_failure(), config::OnFailure::Closed);
    assert_eq!(in_force.timeout(), std::time::Duration::from_millis(200));
}

/// Regression (review): the reload kept the running key prefix but built the snapshot,
/// and its fingerprint, from the new one: tier members that no longer shared a memory
/// showed equal fingerprints, and members that still did showed a mismatch.
#[test]
fn the_snapshot_and_fingerprint_name_the_key_prefix_that_runs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    plain_rules(d);
    let key = secret(d);
    let with_prefix = |prefix: &str| {
        format!(
            "[state]\nkey_prefix = \"{prefix}\"\n{}",
            tier_section(&key, "primary")
        )
    };
    let cfg = d.join("mxguard.toml");
    write(&cfg, &base_toml(d, "rules", &with_prefix("one:")));
    let (gw, stop, h) = start(&cfg);
    let before = gw.policy().fingerprint().to_owned();
    write(&cfg, &base_toml(d, "rules", &with_prefix("two:")));
    let reloaded = gw.reload(&cfg);
    let policy = gw.policy();
    stop.cancel();
    h.join().unwrap();
    assert!(reloaded.is_ok(), "{reloaded:?}");
    assert_eq!(policy.config().state.key_prefix, "one:");
    assert_eq!(
        policy.fingerprint(),
        before,
        "the fingerprint names a prefix not in use"
    );
}

/// Regression (review): a reload that added or removed `[tier]` only warned that a
/// restart was needed, yet the new snapshot already stamped (or stopped stamping and
/// running the tier checks) while the running tier went on as before: half a member.
#[test]
fn joining_or_leaving_a_tier_waits_for_a_restart_whole() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    plain_rules(d);
    let key = secret(d);
    let tier = tier_section(&key, "primary");
    let cfg = d.join("mxguard.toml");
    write(&cfg, &base_toml(d, "rules", &tier));
    let (member, stop, h) = start(&cfg);
    write(&cfg, &base_toml(d, "rules", ""));
    let left = member.reload(&cfg);
    let kept = member.policy().config().tier.is_some();
    stop.cancel();
    h.join().unwrap();
    assert!(left.is_ok(), "{left:?}");
    assert!(
        kept,
        "removing [tier] took it out of the snapshot before a restart"
    );

    // A second gateway of its own (the first one's spool lock may outlive its thread).
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    plain_rules(d);
    let cfg = d.join("mxguard.toml");
    write(&cfg, &base_toml(d, "rules", ""));
    let (loner, stop, h) = start(&cfg);
    let before = loner.policy().fingerprint().to_owned();
    write(&cfg, &base_toml(d, "rules", &tier));
    let joined = loner.reload(&cfg);
    let policy = loner.policy();
    stop.cancel();
    h.join().unwrap();
    assert!(joined.is_ok(), "{joined:?}");
    assert!(
        policy.config().tier.is_none(),
        "adding [tier] took effect before a restart"
    );
    assert_eq!(policy.fingerprint(), before);
}

/// Regression (review of the configuration): a reload checked `relay.internal` against the
/// file's `server.listen`, which changes only at a restart: an edit that moved the listener
/// and pointed the relay at the old, still bound one passed, and every message looped.
/// The running listeners are what a reload is checked against, for `dsn_via` too.
#[test]
fn a_reload_that_relays_to_a_running_listener_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    plain_rules(d);
    let cfg = d.join("mxguard.toml");
    write(&cfg, &base_toml(d, "rules", ""));
    let (gw, stop, h) = start(&cfg);
    let own = gw.bound[0];
    let mut refusals = Vec::new();
    let internal = "internal = [\"127.0.0.1:9\"]";
    for relay_lines in [
        format!("internal = [\"{own}\"]"),
        format!("{internal}\ndsn_via = [\"{own}\"]"),
    ] {
        write(
            &cfg,
            &base_toml(d, "rules", "").replace(internal, &relay_lines),
        );
        refusals.push(gw.reload(&cfg).map_err(|e| e.to_string()));
    }
    stop.cancel();
    h.join().unwrap();
    for (key, refused) in ["relay.internal", "relay.dsn_via"].iter().zip(&refusals) {
        let Err(e) = refused else {
            panic!("{key} at our own listener {own} was taken: {refused:?}");
        };
        assert!(e.starts_with(key) && e.contains("would loop"), "{e}");
    }
}

/// Regression (review): turning `classifier.enabled` on by a reload (it needs a restart)
/// left `enabled = true` in the snapshot, so the fingerprint said `classifier=on`, the
/// fingerprint of a peer that classifies, while no classifier ran; the tier then trusted
/// this member's stamps on mail it never classified. The snapshot says what runs.
#[test]
fn a_reload_cannot_turn_the_classifier_on_in_the_fingerprint() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        &d.join("rules/a.cf"),
        "body LOCAL_T /zz-t-zz/\nscore LOCAL_T 1\n",
    );
    let cfg = d.join("mxguard.toml");
    write(
        &cfg,
        &base_toml(d, "rules", "[classifier]\nenabled = false\n"),
    );
    let (gw, stop, h) = start(&cfg);
    let before = gw.policy().fingerprint().to_owned();
    write(
        &cfg,
        &base_toml(d, "rules", "[classifier]\nenabled = true\n"),
    );
    let reloaded = gw.reload(&cfg);
    let enabled = gw.policy().config().classifier.enabled;
    let after = gw.policy().fingerprint().to_owned();
    stop.cancel();
    h.join().unwrap();
    assert!(reloaded.is_ok(), "{reloaded:?}");
    assert!(!enabled, "the snapshot says the classifier runs");
    assert_eq!(
        after, before,
        "the fingerprint changed with no classifier running"
    );
}

/// Regression (review): any change of the store a reload cannot apply was logged as
/// "state.backend changed", though only the Redis URL (a rotated password) had changed.
#[test]
fn the_restart_warning_names_the_state_key_that_changed() {
    use config::StateBackendConfig::{Embedded, Redis};
    let embedded = |p: &str| Embedded { path: p.into() };
    let redis = |u: &str, cluster| Redis {
        urls: vec![u.to_owned()],
        cluster,
    };
    let one = redis("redis://a/", false);
    assert_eq!(
        changed_state_key(&embedded("a"), &embedded("b")),
        "state.path"
    );
    assert_eq!(
        changed_state_key(&one, &redis("redis://:new@a/", false)),
        "state.redis"
    );
    assert_eq!(
        changed_state_key(&one, &redis("redis://a/", true)),
        "state.cluster"
    );
    assert_eq!(changed_state_key(&one, &embedded("a")), "state.backend");
}

/// Regression (review): only a probe of a DNS list writes its
/// `mxguard_dns_list_lists_everyone` series, so a list flagged as listing everyone, then
/// removed from the configuration as the alert asks, read 1 until a restart.
#[test]
fn a_reload_forgets_the_lists_it_no_longer_probes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    plain_rules(d);
    let list =
        |zone: &str| format!("[[policy.dnsbl]]\nzone = \"{zone}\"\nsymbol = \"RCVD_IN_X\"\n");
    let cfg = d.join("mxguard.toml");
    let both = format!("{}{}", list("kept.test"), list("gone.test"));
    write(&cfg, &base_toml(d, "rules", &both));
    let (gw, stop, h) = start(&cfg);
    let gauge = &gw.metrics.dns_list_lists_everyone;
    gauge.with_label_values(&["dnsbl", "kept.test"]).set(1);
    gauge.with_label_values(&["dnsbl", "gone.test"]).set(1);
    write(&cfg, &base_toml(d, "rules", &list("kept.test")));
    let reloaded = gw.reload(&cfg);
    let has = |zone: &str| {
        use prometheus::core::Collector;
        gauge.collect().iter().any(|f| {
            f.get_metric()
                .iter()
                .any(|m| m.get_label().iter().any(|l| l.value() == zone))
        })
    };
    let (kept, gone) = (has("kept.test"), has("gone.test"));
    stop.cancel();
    h.join().unwrap();
    assert!(reloaded.is_ok(), "{reloaded:?}");
    assert!(kept, "the list still probed lost its series");
    assert!(!gone, "the removed list's series stayed");
}

/// Regression (review): the services the fingerprint names as missing were worked out for
/// the configuration the services were built with; a reload that kept the resolver kept
/// that list, so switching the DNS checks off still named `dns,auth` as missing.
#[test]
fn the_missing_services_are_those_the_configuration_in_force_asks_for() {
    let dir = tempfile::tempdir().unwrap();
    plain_rules(dir.path());
    let asks = Config::from_toml(
        Path::new("t.toml"),
        &base_toml(dir.path(), "rules", "auth = true"),
    )
    .unwrap();
    assert_eq!(unavailable_for(&asks, false, false), ["dns", "auth"]);
    assert!(unavailable_for(&asks, true, true).is_empty());
    let quiet = "auth = false\nfcrdns = false\nsender_domain_check = false\nhelo_checks = false";
    let none =
        Config::from_toml(Path::new("t.toml"), &base_toml(dir.path(), "rules", quiet)).unwrap();
    assert!(unavailable_for(&none, false, false).is_empty());
}
