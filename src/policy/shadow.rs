//! The shadow policy (`policy.shadow`): every message is judged a second time by another
//! configuration that never acts, so a new rule set can be proven on live traffic before
//! it is switched on. Disagreements are counted, logged, and the last ones kept in a
//! [`ShadowLog`] that outlives reloads (the tier console lists them).

use super::{Context, Decision, Policy, Stage, SymbolHit, Verdict};
use futures::FutureExt;
use std::collections::{BTreeSet, VecDeque};
use std::net::IpAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Mutex;
use std::time::SystemTime;

/// Disagreements kept for the console.
const KEEP: usize = 100;

/// One message the two policies judged differently.
#[derive(Debug, Clone, PartialEq)]
pub struct Disagreement {
    /// When it was judged.
    pub at: SystemTime,
    /// The client.
    pub client: IpAddr,
    /// The envelope sender (empty for `<>`).
    pub from: String,
    /// The `Subject` header, decoded.
    pub subject: String,
    /// The verdict acted on.
    pub live: Verdict,
    /// Its score.
    pub live_score: f64,
    /// The shadow policy's verdict.
    pub shadow: Verdict,
    /// Its score.
    pub shadow_score: f64,
    /// Symbols only the live policy hit.
    pub only_live: Vec<String>,
    /// Symbols only the shadow policy hit.
    pub only_shadow: Vec<String>,
}

/// The last disagreements, newest last; shared by every policy snapshot of a gateway.
#[derive(Debug, Default)]
pub struct ShadowLog {
    recent: Mutex<VecDeque<Disagreement>>,
}

impl ShadowLog {
    /// Records one disagreement (the oldest beyond the kept number is dropped).
    pub fn record(&self, d: Disagreement) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() >= KEEP {
            recent.pop_front();
        }
        recent.push_back(d);
    }

    /// The kept disagreements, oldest first.
    pub fn recent(&self) -> Vec<Disagreement> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.iter().cloned().collect()
    }
}

impl Policy {
    /// Judges the message of `ctx` again with the shadow policy (its end-of-data checks on
    /// the symbols the earlier stages found, `before_data`) and records a different
    /// verdict. The live context is not touched.
    pub(super) async fn judge_in_shadow(
        &self,
        shadow: &Policy,
        ctx: &Context,
        before_data: Vec<SymbolHit>,
        live: &Decision,
    ) {
        // A live tempfail (greylisting, a rate limit, a DNS or state failure) stopped the
        // checks before the message was judged: there is no verdict to compare.
        if matches!(live, Decision::Tempfail(_)) {
            return;
        }
        let (live_verdict, _) = self.conclude(live.clone(), ctx);
        let mut sctx = ctx.fork();
        // Its own stage deadline: what the live checks left of theirs was often nothing,
        // and a check only the shadow has (a new DNS list) never hit (review).
        sctx.deadline = Some(tokio::time::Instant::now() + shadow.config.dns.stage_deadline);
        // What the live state checks found at this stage the shadow cannot find again (it
        // keeps no state): without them every greylisting pass or rate-limit hit read as
        // the candidate disagreeing.
        let earlier: BTreeSet<&str> = before_data.iter().map(|s| s.name.as_str()).collect();
        let found_by_state: Vec<_> = ctx
            .symbols
            .iter()
            .filter(|s| !earlier.contains(s.name.as_str()) && self.is_state_symbol(&s.name))
            .cloned()
            .collect();
        sctx.symbols = before_data;
        sctx.symbols.extend(found_by_state);
        // A check or rule set that panics in the shadow must not cost the live verdict (the
        // session's own guard would answer 451 for a policy that never acts).
        let judged = AssertUnwindSafe(shadow.run_checks(Stage::Data, &mut sctx))
            .catch_unwind()
            .await;
        let Ok(decision) = judged else {
            tracing::error!(client = %ctx.client.ip, "shadow policy panicked; message not compared");
            if let Some(m) = &self.shadow_disagreements {
                m.with_label_values(&[live_verdict.as_str(), "panic"]).inc();
            }
            return;
        };
        // One the shadow defers (a clamd of its own that fails, no attachment turn free) is
        // counted as `tempfail`: a candidate that would defer mail must show it (a review
        // of a fix that left such messages out).
        let (shadow_verdict, _) = shadow.conclude(decision, &sctx);
        if shadow_verdict == live_verdict {
            return;
        }
        let names = |c: &Context| -> BTreeSet<String> {
            c.symbols.iter().map(|s| s.name.clone()).collect()
        };
        let (a, b) = (names(ctx), names(&sctx));
        let d = Disagreement {
            at: SystemTime::now(),
            client: ctx.client.ip,
            from: ctx
                .mail_from
                .as_ref()
                .map(|a| a.to_string())
                .unwrap_or_default(),
            subject: sctx
                .view()
                .fields("subject")
                .next()
                .map(|h| h.decoded.chars().take(200).collect())
                .unwrap_or_default(),
            live: live_verdict,
            live_score: ctx.score(),
            shadow: shadow_verdict,
            shadow_score: sctx.score(),
            only_live: a.difference(&b).cloned().collect(),
            only_shadow: b.difference(&a).cloned().collect(),
        };
        tracing::info!(
            client = %d.client,
            from = d.from.as_str(),
            live = live_verdict.as_str(),
            live_score = d.live_score,
            shadow = shadow_verdict.as_str(),
            shadow_score = d.shadow_score,
            only_live = ?d.only_live,
            only_shadow = ?d.only_shadow,
            "shadow policy disagrees"
        );
        if let Some(m) = &self.shadow_disagreements {
            m.with_label_values(&[live_verdict.as_str(), shadow_verdict.as_str()])
                .inc();
        }
        if let Some(log) = &self.shadow_log {
            log.record(d);
        }
    }
    /// Whether `name` is a symbol of the state checks (greylisting, rate limits, the
    /// state backend's failure marker).
    fn is_state_symbol(&self, name: &str) -> bool {
        name == "GREYLIST"
            || name == "STATE_UNAVAILABLE"
            || self.config.ratelimits.iter().any(|r| r.symbol == name)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ClientInfo, Services};
    use super::*;
    use crate::config::Config;
    use crate::policy::check::Check;
    use std::path::Path;
    use std::sync::Arc;

    /// A shadow-only check with a defect.
    #[derive(Debug)]
    struct Panics;

    #[async_trait::async_trait]
    impl Check for Panics {
        fn name(&self) -> &'static str {
            "panics"
        }

        fn stage(&self) -> Stage {
            Stage::Data
        }

        async fn run(&self, _ctx: &mut Context) -> Decision {
            panic!("a defect in a check only the shadow runs");
        }
    }

    /// Regression (review): the shadow ran inside the live evaluation, so a panic in a
    /// check only the shadow policy has threw the live decision away and the session
    /// answered 451, though the shadow never acts.
    #[tokio::test]
    async fn a_panic_in_the_shadow_leaves_the_live_verdict_alone() {
        let text = "[relay]\ndomains=[\"a.test\"]\ninternal=[\"127.0.0.1:2526\"]\n";
        let config = Arc::new(Config::from_toml(Path::new("t.toml"), text).unwrap());
        let metrics = crate::metrics::Metrics::new();
        let mut live = Policy::build(config.clone(), &Services::default()).unwrap();
        live.shadow_disagreements = Some(metrics.shadow_disagreements_total.clone());
        let mut shadow = Policy::build(config, &Services::default()).unwrap();
        shadow.checks.push(Box::new(Panics));
        live.shadow = Some(Arc::new(shadow));

        let mut ctx = Context::new(ClientInfo::new("192.0.2.1".parse().unwrap()));
        ctx.message = b"Subject: hi\r\n\r\nhello\r\n".to_vec().into();
        let decision = live.evaluate(Stage::Data, &mut ctx).await;
        assert!(matches!(decision, Decision::Continue), "{decision:?}");
        let counted = metrics
            .shadow_disagreements_total
            .with_label_values(&["accept", "panic"])
            .get();
        assert_eq!(counted, 1);
    }

    /// A live policy with `live_rules` and a shadow with `shadow_rules` (rules files), with
    /// the disagreement counter.
    fn live_and_shadow(
        live_rules: &str,
        shadow_rules: &str,
    ) -> (Policy, crate::metrics::Metrics, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let build = |name: &str, rules: &str| {
            let rules_dir = dir.path().join(name);
            std::fs::create_dir(&rules_dir).unwrap();
            std::fs::write(rules_dir.join("local.cf"), rules).unwrap();
            let text = format!(
                "[relay]\ndomains=[\"a.test\"]\ninternal=[\"127.0.0.1:2526\"]\n\
                 [policy]\nrules_dir = \"{}\"\n",
                rules_dir.display()
            );
            let config = Arc::new(Config::from_toml(Path::new("t.toml"), &text).unwrap());
            Policy::build(config, &Services::default()).unwrap()
        };
        let metrics = crate::metrics::Metrics::new();
        let mut live = build("live", live_rules);
        live.shadow_disagreements = Some(metrics.shadow_disagreements_total.clone());
        live.shadow = Some(Arc::new(build("shadow", shadow_rules)));
        (live, metrics, dir)
    }

    /// The disagreements counted after judging a message with `Subject: hello` from a
    /// client whose connection earned `RDNS_NONE`.
    async fn disagreements_over_a_connect_symbol(
        live: &Policy,
        metrics: &crate::metrics::Metrics,
    ) -> u64 {
        let mut ctx = Context::new(ClientInfo::new("192.0.2.1".parse().unwrap()));
        ctx.hit("RDNS_NONE", 0.0);
        ctx.message = b"Subject: hello\r\n\r\nhello\r\n".to_vec().into();
        let _ = live.evaluate(Stage::Data, &mut ctx).await;
        ["accept", "tag", "quarantine", "reject"]
            .iter()
            .flat_map(|a| ["accept", "tag", "quarantine", "reject"].map(|b| (*a, b)))
            .map(|(a, b)| {
                metrics
                    .shadow_disagreements_total
                    .with_label_values(&[a, b])
                    .get()
            })
            .sum()
    }

    /// Regression (review): the shadow took the first N live symbols as those of the
    /// earlier stages, but the rules check sorts them by name: an identical shadow lost
    /// `RDNS_NONE` (found at connect, sorting after the data rule) and disagreed.
    #[tokio::test]
    async fn an_identical_shadow_keeps_the_earlier_stages_symbols() {
        let rules = "header AAA_HELLO Subject =~ /hello/\nscore AAA_HELLO 1\nscore RDNS_NONE 6\n";
        let (live, metrics, _dir) = live_and_shadow(rules, rules);
        assert_eq!(
            disagreements_over_a_connect_symbol(&live, &metrics).await,
            0
        );
    }

    /// The same mistake hid a rule the candidate drops: the live hit carried over into the
    /// shadow with the live score.
    #[tokio::test]
    async fn a_rule_the_shadow_drops_counts_as_a_disagreement() {
        let live_rules =
            "header AAA_HELLO Subject =~ /hello/\nscore AAA_HELLO 6\nscore RDNS_NONE 0.5\n";
        let (live, metrics, _dir) = live_and_shadow(live_rules, "score RDNS_NONE 0.5\n");
        assert_eq!(
            disagreements_over_a_connect_symbol(&live, &metrics).await,
            1
        );
    }

    /// Regression (review): the shadow judged a big message on a copy of its sample, which
    /// holds no attachment bytes: every archive read as empty, `ARCHIVE_UNREADABLE` (2
    /// points), and an identical shadow disagreed. It now reads what the live judgement
    /// reads, and reuses the live attachment findings where its `[attachments]` is the same.
    #[tokio::test]
    async fn an_identical_shadow_agrees_on_a_big_message_with_an_archive() {
        let rules = "header BIG_SUBJECT Subject =~ /big/\nscore BIG_SUBJECT 3.5\n";
        let (live, metrics, _dir) = live_and_shadow(rules, rules);
        let zip =
            "UEsDBBQAAAAAAIZ4hV3miEFVEgAAABIAAAAKAAAAcmVwb3J0LnR4dHF1YXJ0ZXJseSBmaWd1cmVzClBL\r\n\
AQIUAxQAAAAAAIZ4hV3miEFVEgAAABIAAAAKAAAAAAAAAAAAAACAAQAAAAByZXBvcnQudHh0UEsFBgAA\r\n\
AAABAAEAOAAAADoAAAAAAA==\r\n";
        let filler =
            "figures for the quarter, as discussed on the call last week.\r\n".repeat(20_000);
        let message = format!(
            "From: a@b.test\r\nSubject: big report\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n\
{filler}--b\r\nContent-Type: application/zip; name=\"report.zip\"\r\n\
Content-Disposition: attachment; filename=\"report.zip\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
{zip}--b--\r\n"
        );
        assert!(
            message.len() > 1024 * 1024,
            "bigger than message_memory_bytes"
        );
        let mut ctx = Context::new(ClientInfo::new("192.0.2.1".parse().unwrap()));
        ctx.message = message.into_bytes().into();
        let decision = live.evaluate(Stage::Data, &mut ctx).await;
        assert_eq!(decision, Decision::Continue);
        assert!(ctx.message.is_sampled());
        let names: Vec<&str> = ctx.symbols.iter().map(|s| s.name.as_str()).collect();
        assert!(!names.contains(&"ARCHIVE_UNREADABLE"), "{names:?}");
        let counted: u64 = ["accept", "tag", "quarantine", "reject", "tempfail"]
            .iter()
            .map(|b| {
                metrics
                    .shadow_disagreements_total
                    .with_label_values(&["accept", b])
                    .get()
            })
            .sum();
        assert_eq!(counted, 0);
    }

    /// Regression (review): the shadow was built on the live gateway's clamd client, so
    /// whether it scanned, and which clamd it asked, followed the live configuration: a
    /// candidate dropping (or adding) clamd could not be proven on live traffic.
    #[test]
    fn the_shadow_scans_as_its_own_antivirus_section_says() {
        let dir = tempfile::tempdir().unwrap();
        let base = "[relay]\ndomains=[\"a.test\"]\ninternal=[\"127.0.0.1:2526\"]\n";
        let with_clamd = format!("{base}[antivirus]\nclamd = \"tcp://127.0.0.1:3310\"\n");
        let shadow_of = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let scans = |policy: &Policy| policy.check_names().contains(&"antivirus");
        for (live_text, shadow_text) in [(&with_clamd, base), (&base.to_string(), &with_clamd)] {
            let shadow = shadow_of("shadow.toml", shadow_text);
            let text = format!(
                "{live_text}[policy]\nshadow = {:?}\n",
                shadow.display().to_string()
            );
            let config = Arc::new(Config::from_toml(Path::new("t.toml"), &text).unwrap());
            let services = Services {
                antivirus: crate::classify::clamd::Clamd::from_config(&config.antivirus),
                ..Services::default()
            };
            let live = Policy::build(config.clone(), &services).unwrap();
            let shadow = live.shadow.as_ref().unwrap();
            assert_eq!(scans(&live), config.antivirus.clamd.is_some());
            assert_eq!(
                scans(shadow),
                shadow_text.contains("clamd"),
                "the shadow follows its own [antivirus]"
            );
        }
    }
}
