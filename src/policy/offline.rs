//! Judging message files without SMTP or network, as `scan`, `check` and the tuning tools
//! do: the same policy as the gateway's end-of-data stage, minus what needs a session.
//!
//! The classifier reads the configured state store when it has learned something (only
//! reads: a running gateway may share the store), else the configured seed in memory.

use super::{ClientInfo, Context, Policy, PolicyError, Services, Stage, Verdict};
use crate::classify::{seed::Seed, Classifier, ClassifyError, Judged, Settings, Source};
use crate::config::{Config, ConfigError, StateBackendConfig};
use crate::metrics::Metrics;
use crate::state::{State, StateError};
use std::path::Path;
use std::sync::Arc;

/// Why an offline policy could not be built.
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    /// The configuration file is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The rules are broken.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The state store could not be opened.
    #[error("state: {0}")]
    State(#[from] StateError),
    /// The classifier's store or seed could not be read.
    #[error("classifier: {0}")]
    Classifier(#[from] ClassifyError),
    /// No runtime for the state backend's client.
    #[error("runtime: {0}")]
    Runtime(#[from] std::io::Error),
    /// The embedded store's path cannot be looked at (a user not allowed into the spool).
    #[error("state store {path}: {source}", path = .path.display())]
    Store {
        /// The store's path.
        path: std::path::PathBuf,
        /// Why it cannot be looked at.
        source: std::io::Error,
    },
}

/// One judged message.
#[derive(Debug, Clone)]
pub struct Judgement {
    /// Verdict.
    pub verdict: Verdict,
    /// Total score.
    pub score: f64,
    /// Symbols hit with their scores.
    pub hits: Vec<(String, f64)>,
    /// What the classifier said, when it was asked.
    pub classification: Option<Judged>,
}

impl Judgement {
    /// The names of the symbols hit, in order.
    pub fn rule_names(&self) -> impl Iterator<Item = &str> {
        self.hits.iter().map(|(name, _)| name.as_str())
    }
}

/// Where the offline classifier's counts came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClassifierSource {
    /// `[classifier] enabled = false`.
    Disabled,
    /// The state store (it has learned messages).
    Store,
    /// The seed file, in memory: the store was never used (the gateway seeds it), or did
    /// not answer (`unanswered` says why).
    Seed {
        /// Why the store was not read, when it did not answer.
        unanswered: Option<String>,
    },
    /// Neither a learned store nor a seed: no `BAYES_xx` symbols.
    None {
        /// Why the store was not read, when it did not answer.
        unanswered: Option<String>,
    },
}

/// An offline policy and what it needs to run: a runtime for the state client and the
/// checks' timers.
#[derive(Debug)]
pub struct Offline {
    policy: Policy,
    classifier: Option<Arc<Classifier>>,
    runtime: tokio::runtime::Runtime,
    source: ClassifierSource,
}

/// Builds the offline policy of a configuration file: recipient verification and DNS do
/// not apply to message files.
pub fn load(path: &Path) -> Result<Offline, OfflineError> {
    build(Config::load(path)?)
}

/// Builds the offline policy of a loaded configuration.
pub fn build(config: Config) -> Result<Offline, OfflineError> {
    let (classifier, runtime, source) = classifier(&config)?;
    // Without a store there was no runtime, and a check's timer (the attachment check's
    // wait for a turn at a big message) panicked outside one (review).
    let runtime = match runtime {
        Some(runtime) => runtime,
        None => offline_runtime()?,
    };
    let services = Services {
        classifier: classifier.clone(),
        ..Services::default()
    };
    let _guard = runtime.enter();
    let mut policy = Policy::build(Arc::new(config), &services)?;
    // Built (so `check` finds a broken shadow configuration) but never run offline: it
    // judged every scanned message twice, counted nowhere, and streamed each to the
    // shadow's clamd, which `scan` is documented not to reach (review).
    policy.shadow = None;
    Ok(Offline {
        policy,
        classifier,
        runtime,
        source,
    })
}

/// An offline classifier, the runtime its store needs (when it reads one) and where its
/// counts come from.
type OfflineClassifier = (
    Option<Arc<Classifier>>,
    Option<tokio::runtime::Runtime>,
    ClassifierSource,
);

/// The classifier `scan` uses: over the store when it has learned messages, else the seed.
fn classifier(config: &Config) -> Result<OfflineClassifier, OfflineError> {
    let c = &config.classifier;
    if !c.enabled {
        return Ok((None, None, ClassifierSource::Disabled));
    }
    let settings = Settings {
        node: format!("scan:{}", std::process::id()),
    };
    // Never create a store just to look into it. One that cannot be looked at (a user
    // not allowed into the spool) is an error: taken for missing, `scan` and `check`
    // judged with the seed and printed another fingerprint than the gateway's.
    let store_exists = match &config.state.backend {
        StateBackendConfig::Embedded { path } => {
            path.try_exists().map_err(|source| OfflineError::Store {
                path: path.clone(),
                source,
            })?
        }
        StateBackendConfig::Redis { .. } => true,
    };
    let mut unanswered = None;
    if store_exists {
        let runtime = offline_runtime()?;
        let state = runtime.block_on(State::open(&config.state, Arc::new(Metrics::new())))?;
        let classifier = Classifier::new(Source::State(state.clone()), settings.clone());
        let learned = runtime.block_on(async {
            if crate::classify::maintain::in_use(&state).await? {
                classifier.refresh().await?;
                return Ok::<_, ClassifyError>(true);
            }
            Ok(false)
        });
        match learned {
            Ok(true) => {
                return Ok((
                    Some(Arc::new(classifier)),
                    Some(runtime),
                    ClassifierSource::Store,
                ))
            }
            Ok(false) => {}
            // A store that does not answer (Redis down) leaves the seed: an error here
            // stopped `check`, the unit's `ExecStartPre`, and so the gateway's start. The
            // gateway itself scores `STATE_UNAVAILABLE` then; said where `check` and `scan`
            // show the source, since no log is shown offline.
            Err(e) => unanswered = Some(e.to_string()),
        }
    }
    match &c.seed {
        Some(path) => {
            let seed = Seed::read(path)?;
            let classifier = Classifier::from_seed(&seed, settings);
            Ok((
                Some(Arc::new(classifier)),
                None,
                ClassifierSource::Seed { unanswered },
            ))
        }
        None => Ok((None, None, ClassifierSource::None { unanswered })),
    }
}

/// A stored copy of a message this gateway (or a tier member) accepted, as the gateway
/// judged it: without its own `Received` hop and every field above it (the internal
/// server's and the mailbox's), which were added after the judgement; with the arrival
/// its hop dates. Review: the rules read that hop, so `scan` of a quarantined copy scored
/// the gateway's own record of the client's bare-IP greeting `RCVD_NUMERIC_HELO`, and a
/// webmail client's hop made `FORGED_WEBMAIL_RCVD` miss. Other messages are as they are.
fn as_judged_at_the_gateway(raw: &[u8]) -> (std::borrow::Cow<'_, [u8]>, Option<i64>) {
    use crate::mail::header_fields::{for_each_field, remove_fields};
    use crate::mail::trace::{arrival, is_gateway_hop};
    let is_ours = |name: &[u8], value: &[u8]| {
        name.eq_ignore_ascii_case(b"received") && is_gateway_hop(&String::from_utf8_lossy(value))
    };
    let mut hops: Vec<String> = Vec::new();
    for_each_field(raw, |field| {
        if let Some(colon) = memchr::memchr(b':', field) {
            if field[..colon]
                .trim_ascii()
                .eq_ignore_ascii_case(b"received")
            {
                hops.push(String::from_utf8_lossy(&field[colon + 1..]).into_owned());
            }
        }
    });
    let ours = hops.iter().any(|hop| is_gateway_hop(hop));
    if !ours {
        return (std::borrow::Cow::Borrowed(raw), None);
    }
    let hops: Vec<&str> = hops.iter().map(String::as_str).collect();
    let arrived = arrival(&hops);
    let mut above_or_ours = true;
    let judged = remove_fields(raw, |name, value| {
        let drop = above_or_ours;
        if above_or_ours && is_ours(name, value) {
            above_or_ours = false;
        }
        drop
    });
    (judged, arrived)
}

/// One worker: the offline judgements run on the callers' threads, and the runtime only
/// drives the state client's connections and the timers.
fn offline_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
}

impl Offline {
    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Where the classifier's counts come from.
    pub fn classifier_source(&self) -> &ClassifierSource {
        &self.source
    }

    /// The version of the classifier's logistic model, if it has one.
    pub fn model_version(&self) -> Option<String> {
        let model = self.classifier.as_ref()?.model()?;
        Some(model.version().to_string())
    }

    /// Judges raw message bytes exactly as the end-of-data stage would. Call it from a
    /// plain thread, not from inside an async runtime: it runs the checks to completion
    /// itself, and heavy work in them may hand a runtime's worker over.
    pub fn judge(&self, raw: &[u8]) -> Judgement {
        let _guard = self.runtime.enter();
        let mut ctx = Context::new(ClientInfo::new(std::net::IpAddr::from([127, 0, 0, 1])));
        let raw = crate::mail::line_endings::to_crlf(raw);
        let (judged, arrival) = as_judged_at_the_gateway(&raw);
        ctx.arrival = arrival;
        ctx.message = judged.into_owned().into();
        let policy = &self.policy;
        let decision = futures::executor::block_on(policy.evaluate(Stage::Data, &mut ctx));
        let (verdict, _) = policy.conclude(decision, &ctx);
        Judgement {
            verdict,
            score: ctx.score(),
            hits: ctx
                .symbols
                .iter()
                .map(|s| (s.name.clone(), s.score))
                .collect(),
            classification: ctx.classification.map(|c| c.judged),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (review): `scan` of a stored or quarantined copy read the gateway's own
    /// `Received` hop (and the internal server's above it), which the gateway added after
    /// its judgement: the rules scored what the gateway never saw.
    #[test]
    fn a_stored_copy_is_judged_as_the_gateway_judged_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("hops.cf"),
            "header OUR_HOP Received =~ /\\(mxguard\\)/\nscore OUR_HOP 3.0\n\
             header CLIENT_HOP Received =~ /from client\\.sender\\.test/\nscore CLIENT_HOP 1.0\n",
        )
        .unwrap();
        let text = format!(
            "[relay]\ndomains=[\"a.test\"]\ninternal=[\"127.0.0.1:2526\"]\n\
             [classifier]\nenabled = false\n[policy]\nrules_dir = {:?}\n",
            dir.path().display().to_string()
        );
        let offline = build(Config::from_toml(Path::new("t.toml"), &text).unwrap()).unwrap();
        let original = "Received: from client.sender.test ([192.0.2.9]) by mx.sender.test;\r\n\
                        \tMon, 1 Dec 2025 10:00:00 +0000\r\n\
                        Date: Mon, 1 Dec 2025 09:59:00 +0000\r\n\
                        From: a@sender.test\r\nSubject: hi\r\n\r\nhello\r\n";
        let stored = format!(
            "Received: from mx.a.test by mailbox.a.test; Mon, 1 Dec 2025 10:00:02 +0000\r\n\
             Received: from mx.sender.test ([192.0.2.10]) by mx.a.test (mxguard)\r\n\
             \twith ESMTP id ABC; Mon, 1 Dec 2025 10:00:01 +0000\r\n{original}"
        );
        let names = |j: &Judgement| j.hits.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        let as_sent = offline.judge(original.as_bytes());
        let as_stored = offline.judge(stored.as_bytes());
        assert_eq!(names(&as_stored), names(&as_sent));
        assert!(names(&as_sent).contains(&"CLIENT_HOP".to_string()));
        assert_eq!(as_stored.score, as_sent.score);
        let (judged, arrival) = as_judged_at_the_gateway(stored.as_bytes());
        assert_eq!(&*judged, original.as_bytes());
        assert_eq!(arrival, Some(1_764_583_201));
        // A message with no hop of ours is judged as it is.
        let (same, none) = as_judged_at_the_gateway(original.as_bytes());
        assert_eq!(&*same, original.as_bytes());
        assert_eq!(none, None);
    }

    /// Regression (review): the offline policy ran the shadow policy too, judging every
    /// message twice and streaming each to the shadow's clamd, which `scan` is documented
    /// never to reach.
    #[test]
    fn the_shadow_policy_is_checked_but_never_run_offline() {
        let dir = tempfile::tempdir().unwrap();
        let clamd = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        clamd.set_nonblocking(true).unwrap();
        let base = "[relay]\ndomains=[\"a.test\"]\ninternal=[\"127.0.0.1:2526\"]\n\
                    [classifier]\nenabled = false\n";
        let shadow = dir.path().join("shadow.toml");
        std::fs::write(
            &shadow,
            format!(
                "{base}[antivirus]\nclamd = \"tcp://{}\"\nscan = \"message\"\ntimeout = \"1s\"\n",
                clamd.local_addr().unwrap()
            ),
        )
        .unwrap();
        let text = format!(
            "{base}[policy]\nshadow = {:?}\n",
            shadow.display().to_string()
        );
        let offline = build(Config::from_toml(Path::new("t.toml"), &text).unwrap()).unwrap();
        offline.judge(b"From: a@b.test\r\nSubject: hi\r\n\r\nhello\r\n");
        assert!(
            clamd.accept().is_err(),
            "the shadow's clamd was reached offline"
        );
        // A shadow configuration that does not load still fails the build (`check`).
        std::fs::write(&shadow, "[relay\n").unwrap();
        assert!(build(Config::from_toml(Path::new("t.toml"), &text).unwrap()).is_err());
    }
}
