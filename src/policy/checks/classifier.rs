//! The learning classifier as checks: at end of data, before the rules, its probability
//! becomes a `BAYES_xx` symbol (scored in the rules files, so metas can combine it); after
//! the rules, clear verdicts may be learned (autolearn).

use crate::classify::ftrl::LrModel;
use crate::classify::{Class, Classifier, ClassifyError, Judged, BANDS};
use crate::config::{ClassifierConfig, OnFailure};
use crate::mail::Reply;
use crate::policy::{Check, Context, Decision, Stage};
use crate::state::Unavailable;
use async_trait::async_trait;
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
}

impl Classify {
    /// Classifies with `classifier` and the model installed in it now; no vote below
    /// `min_learned` learned messages of a class.
    pub fn new(classifier: Arc<Classifier>, min_learned: u32) -> Classify {
        let model = classifier.model();
        Classify {
            classifier,
            model,
            min_learned,
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
        let message = ctx.message.bounded();
        let judged = self
            .classifier
            .classify(
                &message,
                self.model.as_deref(),
                self.min_learned,
                EXPLAIN_TOKENS,
            )
            .await;
        match judged {
            Ok(j) => {
                if let Judged::Verdict(v) = &j {
                    // Scored by the rules files (`rules/23-bayes.cf`).
                    ctx.hit(v.band.symbol, 0.0);
                }
                ctx.classification = Some(j);
                Decision::Continue
            }
            Err(ClassifyError::Unavailable(Unavailable(OnFailure::Closed))) => Decision::Tempfail(
                Reply::new(451, "4.3.0", "Temporary local problem, try again later"),
            ),
            Err(ClassifyError::Unavailable(Unavailable(OnFailure::Open))) => {
                ctx.hit_once("STATE_UNAVAILABLE", 0.0);
                Decision::Continue
            }
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
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl Autolearn {
    /// Autolearning with the thresholds of `config`.
    pub fn new(
        classifier: Arc<Classifier>,
        config: ClassifierConfig,
        metrics: Option<Arc<crate::metrics::Metrics>>,
    ) -> Autolearn {
        Autolearn {
            classifier,
            config,
            metrics,
        }
    }

    /// The class to learn a message with this judgement as, if any.
    fn class(&self, ctx: &Context) -> Option<Class> {
        let learned = match ctx.classification.as_ref()? {
            Judged::Verdict(v) => v.learned,
            Judged::NotReady(totals) => *totals,
        };
        let own = |name: &str| BANDS.iter().any(|b| b.symbol == name);
        let score: f64 = ctx
            .symbols
            .iter()
            .filter(|s| !own(&s.name))
            .map(|s| s.score)
            .sum();
        let class = if score >= self.config.autolearn_spam {
            Class::Spam
        } else if score <= self.config.autolearn_ham {
            Class::Ham
        } else {
            return None;
        };
        // Balance: a class may outgrow the other only while both are still small.
        let (this, other) = match class {
            Class::Spam => (learned.spam, learned.ham),
            Class::Ham => (learned.ham, learned.spam),
        };
        let limit = self.config.autolearn_balance * f64::from(other.max(self.config.min_learned));
        (f64::from(this) < limit).then_some(class)
    }
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
        if let Some(m) = &self.metrics {
            m.classifier_autolearn_total
                .with_label_values(&[class.as_str()])
                .inc();
        }
        let classifier = self.classifier.clone();
        let raw = ctx.message.bounded().into_owned();
        tokio::spawn(async move {
            if let Err(e) = classifier.learn(&raw, class).await {
                tracing::debug!(error = %e, class = class.as_str(), "autolearn failed");
            }
        });
        Decision::Continue
    }
}
