//! The learning classifier as checks: at end of data, before the rules, its probability
//! becomes a `BAYES_xx` symbol (scored in the rules files, so metas can combine it); after
//! the rules, clear verdicts may be learned (autolearn).

use crate::classify::ftrl::LrModel;
use crate::classify::ledger::{Entry, Outcome};
use crate::classify::{
    Class, Classifier, ClassifyError, Counts, Judged, AUTOLEARNS_AT_ONCE, BANDS,
};
use crate::config::{ClassifierConfig, OnFailure, RuleAction};
use crate::mail::trace::Reading;
use crate::mail::Reply;
use crate::policy::{Check, Classification, Context, Decision, Stage};
use crate::state::Unavailable;
use async_trait::async_trait;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Strongest tokens kept with a verdict (`scan --explain` lists them).
const EXPLAIN_TOKENS: usize = 10;

/// Classifies the message and adds its band's symbol.
#[derive(Debug)]
pub struct Classify {
    classifier: Arc<Classifier>,
    /// The logistic model this policy snapshot was built with (its version is in the
    /// fingerprint); a newly published model comes with the next snapshot.
    model: Option<Arc<LrModel>>,
    min_learned: u32,
    /// What makes two classifications of one message alike: the same classifier (so the
    /// same store), model and vote threshold. Fixed for the snapshot, so made once.
    key: Arc<str>,
    /// `state.on_failure` of this snapshot: the classifier keeps the state it started
    /// with, whose failure mode a reload does not change.
    on_failure: OnFailure,
}

impl Classify {
    /// Classifies with `classifier` and `model` (the one the policy's fingerprint names:
    /// read once, so a model published in between cannot make them differ); no vote below
    /// `min_learned` learned messages of a class; a store that does not answer is met as
    /// `on_failure` says.
    pub fn new(
        classifier: Arc<Classifier>,
        model: Option<Arc<LrModel>>,
        min_learned: u32,
        on_failure: OnFailure,
    ) -> Classify {
        let key = format!(
            "{:p} {} {}",
            Arc::as_ptr(&classifier),
            model.as_deref().map_or("none", LrModel::version),
            min_learned
        );
        Classify {
            classifier,
            model,
            min_learned,
            key: key.into(),
            on_failure,
        }
    }
}

#[async_trait]
impl Check for Classify {
    fn name(&self) -> &'static str {
        "classifier"
    }

    fn stage(&self) -> Stage {
        Stage::Data
    }

    async fn run(&self, ctx: &mut Context) -> Decision {
        let judged = match ctx.classification.as_ref().filter(|c| c.by == self.key) {
            // Classified already, alike (the live policy, before a shadow sharing its
            // classifier): the same bytes get the same answer.
            Some(c) => Ok(c.judged.clone()),
            None => {
                let message = ctx.message.bounded();
                self.classifier
                    .classify(
                        &message,
                        ctx.reading(),
                        self.model.as_deref(),
                        self.min_learned,
                        EXPLAIN_TOKENS,
                    )
                    .await
            }
        };
        match judged {
            Ok(j) => {
                if let Judged::Verdict(v) = &j {
                    // Scored by the rules files (`rules/23-bayes.cf`).
                    ctx.hit(v.band.symbol, 0.0);
                }
                ctx.classification = Some(Classification {
                    by: self.key.clone(),
                    judged: j,
                });
                Decision::Continue
            }
            Err(ClassifyError::Unavailable(Unavailable(_))) => match self.on_failure {
                OnFailure::Closed => Decision::Tempfail(Reply::new(
                    451,
                    "4.3.0",
                    "Temporary local problem, try again later",
                )),
                OnFailure::Open => {
                    ctx.hit_once("STATE_UNAVAILABLE", 0.0);
                    Decision::Continue
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "classifier failed; message judged without it");
                Decision::Continue
            }
        }
    }
}

/// Learns messages whose score, without the classifier's own symbol, is clearly spam or
/// clearly ham, keeping the classes balanced. Runs after the rules; the learn happens in
/// the background and never delays the reply.
#[derive(Debug)]
pub struct Autolearn {
    classifier: Arc<Classifier>,
    config: ClassifierConfig,
    /// Symbols with a `policy.actions` entry: such a message is refused, quarantined or
    /// dropped whatever its score, so it is never learned as ham.
    acted_on: BTreeSet<String>,
    /// Symbols whose score autolearn leaves out: the bands, [`NOT_ABOUT_THE_WORDS`], the
    /// rules marked `tflags noautolearn`, and the metas that read any of them.
    not_counted: BTreeSet<String>,
    /// The classifier's own voice: the bands and the metas that read them.
    voice: BTreeSet<String>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

/// Symbols that say who sent a message or what it was meant to test, not what its words
/// are (SpamAssassin marks both `noautolearn`): with GTUBE's 1,000 points in an `X-` header,
/// any text was learned as spam, the company's own words included.
const NOT_ABOUT_THE_WORDS: &[&str] = &["GTUBE", "CLIENT_ALLOWLISTED"];

/// Most distinct tokens of a message autolearn takes (the seed's messages have 165 on
/// average, 99 % of them fewer than 900). Each becomes a counter in the state backend
/// and a hash in the ledger entry: 5,000 random words a message, autolearned by the
/// thousand, grew the store by gigabytes and held its writer for half a second a batch.
const AUTOLEARN_MAX_TOKENS: usize = 1_000;

/// Classifier probability from which a message is never autolearned as ham (`BAYES_80`
/// and up).
const AUTOLEARN_HAM_BELOW: f64 = 0.8;
/// Classifier probability up to which a message is never autolearned as spam (`BAYES_20`
/// and below).
const AUTOLEARN_SPAM_ABOVE: f64 = 0.2;

impl Autolearn {
    /// Autolearning with the thresholds of `config`; `actions` are the policy's rule
    /// actions, `noautolearn` the rules marked so (see
    /// [`crate::rules::CompiledRules::not_for_autolearn`]).
    pub fn new(
        classifier: Arc<Classifier>,
        config: ClassifierConfig,
        actions: &BTreeMap<String, RuleAction>,
        noautolearn: &BTreeSet<String>,
        metrics: Option<Arc<crate::metrics::Metrics>>,
    ) -> Autolearn {
        let voice: BTreeSet<String> = BANDS.iter().map(|b| b.symbol.to_string()).collect();
        let mut not_counted = noautolearn.clone();
        not_counted.extend(NOT_ABOUT_THE_WORDS.iter().map(|s| s.to_string()));
        not_counted.extend(voice.iter().cloned());
        Autolearn {
            classifier,
            config,
            acted_on: actions.keys().cloned().collect(),
            not_counted,
            voice,
            metrics,
        }
    }

    /// Leaves out, besides, every meta of `rules` that reads a symbol left out (a band
    /// among them), directly or through another meta (review: `meta X (BAYES_99 &&
    /// URIBL_X)` scored 6 carried the classifier's own vote into what it learns, and
    /// `BAYES_00 && !__ANY` scored -2 taught ham the same way).
    pub fn with_metas_of(mut self, rules: &crate::rules::CompiledRules) -> Autolearn {
        self.not_counted = rules.with_metas_reading(&self.not_counted);
        self.voice = rules.with_metas_reading(&self.voice);
        self
    }

    /// Whether a hit rule has a `policy.actions` entry: the verdict is then the action's
    /// (reject, tempfail, quarantine, discard), not the score's.
    fn refused_by_an_action(&self, ctx: &Context) -> bool {
        ctx.symbols.iter().any(|s| self.acted_on.contains(&s.name))
    }

    /// The class to learn a message with this judgement as, if any.
    fn class(&self, ctx: &Context) -> Option<Class> {
        let (learned, probability) = match &ctx.classification.as_ref()?.judged {
            Judged::Verdict(v) => (v.learned, Some(v.probability)),
            Judged::NotReady(totals) => (*totals, None),
        };
        let score = ctx.score_of(|s| !self.not_counted.contains(&s.name));
        // The symbols left out may not carry a message across either: GTUBE's test message
        // is not ham for scoring 0 without it, nor an allowlisted client's spam ham for
        // its -5.
        let whole = ctx.score_of(|s| !self.voice.contains(&s.name));
        let (spam, ham) = (self.config.autolearn_spam, self.config.autolearn_ham);
        let class = if score >= spam && whole >= spam {
            Class::Spam
        } else if score <= ham && whole <= ham {
            Class::Ham
        } else {
            return None;
        };
        if class == Class::Ham && self.refused_by_an_action(ctx) {
            return None;
        }
        // Nor mail a floor tags or quarantines whatever its score (a DMARC failure asking
        // for quarantine, a peer's stale stamp): a spoofed reply from a `p=quarantine`
        // domain scoring -0.8 was tagged and learned as ham (review).
        if class == Class::Ham
            && matches!(
                ctx.floor,
                Some(crate::policy::Verdict::Tag | crate::policy::Verdict::Quarantine)
            )
        {
            return None;
        }
        // A low score with a lookup unanswered may be spam the lists would have caught
        // (review: during a resolver outage, spam that only DNS lists catch was learned
        // as ham).
        if class == Class::Ham && ctx.checks_unanswered() {
            return None;
        }
        // Never against a confident classifier: mail no rule hits, with the classifier
        // saying spam, is what a sender poisoning the model sends (60 such messages turned
        // BAYES_99 into BAYES_00 for their words), and mail a rule scores as spam but the
        // classifier as ham teaches it nothing it should learn unsupervised.
        let disagrees = probability.is_some_and(|p| match class {
            Class::Ham => p >= AUTOLEARN_HAM_BELOW,
            Class::Spam => p <= AUTOLEARN_SPAM_ABOVE,
        });
        if disagrees {
            return None;
        }
        within_balance(&self.config, class, learned).then_some(class)
    }
}

/// Whether a class with `learned` may take one more autolearned message: a class may
/// outgrow the other only while both are still small (and both may start when
/// `min_learned` is 0).
fn within_balance(config: &ClassifierConfig, class: Class, learned: Counts) -> bool {
    let (this, other) = match class {
        Class::Spam => (learned.spam, learned.ham),
        Class::Ham => (learned.ham, learned.spam),
    };
    let floor = other.max(config.min_learned).max(1);
    f64::from(this) < config.autolearn_balance * f64::from(floor)
}

#[async_trait]
impl Check for Autolearn {
    fn name(&self) -> &'static str {
        "autolearn"
    }

    fn stage(&self) -> Stage {
        Stage::Data
    }

    async fn run(&self, ctx: &mut Context) -> Decision {
        let Some(class) = self.class(ctx) else {
            return Decision::Continue;
        };
        if !self.classifier.seed_settled() {
            // One message learned into an empty store makes it look in use, and the seed
            // (waiting for a store that did not answer at start) would never be imported.
            tracing::debug!(
                class = class.as_str(),
                "autolearn waits for the store to be seeded"
            );
            return Decision::Continue;
        }
        let Some(turn) = self.classifier.autolearn_turn() else {
            tracing::debug!(
                class = class.as_str(),
                "autolearn skipped: {AUTOLEARNS_AT_ONCE} under way"
            );
            return Decision::Continue;
        };
        // Of the whole body, as `mxguard learn` reads the delivered or quarantined file:
        // what the classifier reads of a message on disk is a sample no file has.
        let digest = match ctx.message.body_digest().await {
            Ok(digest) => digest,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the message to autolearn it");
                return Decision::Continue;
            }
        };
        let classifier = self.classifier.clone();
        let metrics = self.metrics.clone();
        let autolearn_max = self.config.autolearn_max;
        let config = self.config.clone();
        let raw = ctx.message.bounded().into_owned();
        tokio::spawn(async move {
            let _turn = turn;
            // The balance again, from the totals now: the counts the verdict read are as
            // old as the message's checks, and a burst of messages in flight all read the
            // same ones (review: 300 spam past a limit of 600 all learned).
            let balanced = classifier.totals().await;
            let balanced = balanced.map(|now| within_balance(&config, class, now));
            if !passes(balanced, class, "classifier.autolearn_balance reached") {
                return;
            }
            // The ledger's bound holds between retrainings too; asked before the message
            // is tokenised again, which a full ledger makes useless.
            let room = classifier.autolearn_has_room(autolearn_max).await;
            if !passes(
                room,
                class,
                "classifier.autolearn_max reached until the next retraining",
            ) {
                return;
            }
            // Tokenised again (the classification keeps no hashes), off the session threads:
            // a message of a megabyte takes a worker for milliseconds.
            let tokenizer = classifier.clone();
            let hashes = match tokio::task::spawn_blocking(move || {
                // Learned as the session read it: the gateway was the MX.
                tokenizer
                    .features_read(&raw, Reading::AtTheGateway)
                    .hashes()
            })
            .await
            {
                Ok(hashes) => hashes,
                Err(e) => {
                    tracing::warn!(error = %e, "autolearn: tokenising failed");
                    return;
                }
            };
            if hashes.len() > AUTOLEARN_MAX_TOKENS {
                tracing::debug!(
                    tokens = hashes.len(),
                    class = class.as_str(),
                    "autolearn skipped: more than {AUTOLEARN_MAX_TOKENS} tokens"
                );
                return;
            }
            let entry = Entry {
                class,
                hashes,
                autolearned: true,
                learned_at: crate::spool::unix_now(),
            };
            match classifier.learn_entry(&digest, &entry).await {
                // Counted only when the model changed: a campaign's hundredth copy, or a
                // message the operator learned by hand, teaches it nothing.
                Ok(Outcome::Learned | Outcome::Moved) => {
                    if let Some(m) = &metrics {
                        m.classifier_autolearn_total
                            .with_label_values(&[class.as_str()])
                            .inc();
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, class = class.as_str(), "autolearn failed")
                }
            }
        });
        Decision::Continue
    }
}

/// Whether an autolearn gate (`gate`: its answer, or why there is none) lets a message of
/// `class` be learned; a message it stops is logged with the gate's reason.
fn passes(gate: Result<bool, ClassifyError>, class: Class, reason: &str) -> bool {
    match gate {
        Ok(true) => true,
        Ok(false) => {
            tracing::debug!(class = class.as_str(), "autolearn skipped: {reason}");
            false
        }
        Err(e) => {
            tracing::debug!(error = %e, class = class.as_str(), "autolearn failed");
            false
        }
    }
}
#[cfg(test)]
mod tests;
