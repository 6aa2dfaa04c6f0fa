//! The classifier's upkeep on a running gateway: an empty store is filled from the seed,
//! a newly published logistic model is picked up, and when the ledger changed one gateway
//! of the tier (the one that gets the lock) retrains and publishes. Every model change is
//! announced so the gateway can build a policy snapshot with it (its version is part of
//! the fingerprint).

use super::seed::Seed;
use super::store;
use super::{Classifier, ClassifyError};
use crate::config::CurrentConfig;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Fills an empty store from the configured seed, or finishes filling it when an import
/// of that seed was cut half-way; whether it did.
pub async fn seed_if_empty(
    classifier: &Classifier,
    current: &dyn CurrentConfig,
) -> Result<bool, super::ClassifyError> {
    let config = current.current();
    let Some(path) = &config.classifier.seed else {
        return Ok(false);
    };
    let state = classifier
        .source()
        .state()?
        .patient(Duration::from_secs(120));
    if in_use(&state).await? {
        return Ok(false);
    }
    let seed = Seed::read(path)?;
    if !store::takes_seed(&state, &seed.id()).await? {
        tracing::warn!(
            seed = %path.display(),
            "classifier: the store holds part of another seed; not seeded"
        );
        return Ok(false);
    }
    let outcomes = classifier.import(&seed).await?;
    tracing::info!(
        seed = %path.display(),
        messages = seed.entries.len(),
        ?outcomes,
        "classifier store seeded"
    );
    Ok(true)
}

/// Whether the store is in use: it has learned (or been seeded), and no seed import was
/// cut half-way. A store not in use is seeded by the gateway, so `scan` and `check` judge
/// with the seed there, as the gateway will.
pub async fn in_use(state: &crate::state::State) -> Result<bool, super::ClassifyError> {
    Ok(store::seeding(state).await?.is_none() && store::generation(state).await? != 0)
}

/// Seeds the store when it is empty; whether that is settled (seeded, not needed, or
/// failed for good), which the classifier is told. A store that did not answer (Redis started after the gateway, a
/// network blip) is tried again at the next poll: tried only at start, the seed would
/// never be imported and the classifier would not vote until a restart.
async fn try_seed(
    classifier: &Classifier,
    current: &dyn CurrentConfig,
    changed: &impl Fn(),
    first: bool,
) -> bool {
    let settled = match seed_if_empty(classifier, current).await {
        Ok(true) => {
            changed();
            true
        }
        Ok(false) => true,
        Err(e @ (ClassifyError::Unavailable(_) | ClassifyError::Conflict)) => {
            if first {
                tracing::warn!(error = %e, "classifier: seeding the store failed; trying again at each model poll");
            } else {
                tracing::debug!(error = %e, "classifier: seeding the store failed again");
            }
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, "classifier: seeding the store failed");
            true
        }
    };
    if settled {
        // Autolearn waited for this.
        classifier.mark_seed_settled();
    }
    settled
}

/// How often a wait for the next model poll reads the intervals in force again.
const CONFIG_TICK: Duration = Duration::from_secs(1);

/// Runs until `stop`: seeds (trying again at each poll until the store answered), polls
/// for published models every `classifier.model_poll`, retrains when due every
/// `classifier.retrain_interval`; `changed` is called whenever the installed model changed.
pub async fn run(
    classifier: Arc<Classifier>,
    current: Arc<dyn CurrentConfig>,
    changed: impl Fn() + Send,
    stop: CancellationToken,
) {
    let mut seeded = try_seed(&classifier, current.as_ref(), &changed, true).await;
    let mut last_retrain = Instant::now();
    let mut last_poll = Instant::now();
    loop {
        // The intervals in force are read again at each tick: a reload that shortens
        // `model_poll` or `retrain_interval` takes effect now, not after the old wait
        // (review: a day's poll reloaded to 30 s waited out the day).
        let config = current.current();
        let due = last_poll + config.classifier.model_poll;
        let now = Instant::now();
        if now < due {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep_until(due.min(now + CONFIG_TICK)) => {}
            }
            continue;
        }
        last_poll = now;
        if !seeded {
            seeded = try_seed(&classifier, current.as_ref(), &changed, false).await;
        }
        match classifier.refresh().await {
            Ok(true) => changed(),
            Ok(false) => {}
            Err(e) => tracing::debug!(error = %e, "classifier: model poll failed"),
        }
        if Instant::now() >= last_retrain + config.classifier.retrain_interval {
            last_retrain = Instant::now();
            match classifier
                .retrain_if_due(config.classifier.autolearn_max)
                .await
            {
                Ok(Some(model)) => {
                    tracing::info!(
                        version = model.version(),
                        examples = model.examples(),
                        "classifier: logistic model retrained and published"
                    );
                    changed();
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "classifier: retraining failed"),
            }
        }
    }
}
