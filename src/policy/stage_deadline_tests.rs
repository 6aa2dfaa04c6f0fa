//! One deadline per stage: every check of a stage sees the same `ctx.deadline`, fixed when
//! the stage's evaluation starts, so DNS checks, SPF and DKIM together never take longer than
//! `dns.stage_deadline` (each computing its own would add up).

use super::*;
use std::path::Path;
use std::sync::Mutex;
use tokio::time::Instant;

/// Records the deadline it was run with.
#[derive(Debug)]
struct SeesDeadline {
    stage: Stage,
    seen: Arc<Mutex<Vec<Option<Instant>>>>,
}

#[async_trait::async_trait]
impl Check for SeesDeadline {
    fn name(&self) -> &'static str {
        "sees_deadline"
    }

    fn stage(&self) -> Stage {
        self.stage
    }

    async fn run(&self, ctx: &mut Context) -> Decision {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(ctx.deadline);
        // Later checks must not get a fresh deadline after this one spent time.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        Decision::Continue
    }
}

#[tokio::test]
async fn every_check_of_a_stage_shares_one_deadline_and_the_next_stage_gets_a_new_one() {
    let text = "[relay]\ndomains=[\"a.test\"]\ninternal=[\"127.0.0.1:2526\"]\n[dns]\nstage_deadline=\"7s\"\n";
    let config = Arc::new(Config::from_toml(Path::new("t.toml"), text).unwrap());
    let mut policy = Policy::build(config, &Services::default()).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    for stage in [Stage::Mail, Stage::Mail, Stage::Mail, Stage::Data] {
        policy.checks.push(Box::new(SeesDeadline {
            stage,
            seen: seen.clone(),
        }));
    }
    let mut ctx = Context::new(ClientInfo::new("192.0.2.1".parse().unwrap()));
    let before = Instant::now();
    policy.evaluate(Stage::Mail, &mut ctx).await;
    policy.evaluate(Stage::Data, &mut ctx).await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 4);
    let mail = seen[0].expect("the stage fixed a deadline");
    assert!(seen[1..3].iter().all(|d| *d == Some(mail)), "{seen:?}");
    assert!(mail >= before + std::time::Duration::from_secs(7));
    assert!(seen[3].is_some_and(|data| data > mail), "{seen:?}");
}

/// Regression (review): message authentication ran before URIBL under the same stage
/// deadline, so DKIM keys on a sender's slow name servers left URIBL no time at all and
/// the message's links went unlooked-up. URIBL, whose list servers a sender cannot slow,
/// runs first.
#[tokio::test]
async fn uribl_runs_before_message_authentication() {
    let server = crate::dns::testing::TestDns::builder()
        .start()
        .await
        .unwrap();
    let dns = server.resolver().unwrap();
    let text = "[relay]\ndomains=[\"a.test\"]\ninternal=[\"127.0.0.1:2526\"]\n\
                [[policy.uribl]]\nzone = \"dbl.test\"\nsymbol = \"URIBL_DBL_TEST\"\n";
    let config = Arc::new(Config::from_toml(Path::new("t.toml"), text).unwrap());
    let services = Services {
        auth: Some(crate::auth::Authenticator::new(&dns).unwrap()),
        dns: Some(dns),
        ..Services::default()
    };
    let policy = Policy::build(config, &services).unwrap();
    let names: Vec<&str> = policy.checks.iter().map(|c| c.name()).collect();
    let at = |name: &str| names.iter().position(|n| *n == name);
    let (uribl, auth) = (at("uribl"), at("dkim_dmarc_arc"));
    assert!(uribl.is_some() && auth.is_some(), "{names:?}");
    assert!(uribl < auth, "{names:?}");
}
