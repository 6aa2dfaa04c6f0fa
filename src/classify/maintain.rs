//! The classifier's upkeep on a running gateway: an empty store is filled from the seed,
//! a newly published logistic model is picked up, and when the ledger changed one gateway
//! of the tier (the one that gets the lock) retrains and publishes. Every model change is
//! announced so the gateway can build a policy snapshot with it (its version is part of
//! the fingerprint).

use super::seed::Seed;
use super::store;
use super::Classifier;
use crate::config::CurrentConfig;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Fills an empty store from the configured seed; whether it did.
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
    if store::generation(&state).await? != 0 {
        return Ok(false);
    }
    let seed = Seed::read(path)?;
    let outcomes = classifier.import(&seed).await?;
    tracing::info!(
        seed = %path.display(),
        messages = seed.entries.len(),
        ?outcomes,
        "classifier store seeded"
    );
    Ok(true)
}

/// Runs until `stop`: seeds, polls for published models every `classifier.model_poll`,
/// retrains when due every `classifier.retrain_interval`; `changed` is called whenever the
/// installed model changed.
pub async fn run(
    classifier: Arc<Classifier>,
    current: Arc<dyn CurrentConfig>,
    changed: impl Fn() + Send,
    stop: CancellationToken,
) {
    match seed_if_empty(&classifier, current.as_ref()).await {
        Ok(true) => changed(),
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, "classifier: seeding the store failed"),
    }
    let mut next_retrain = Instant::now() + current.current().classifier.retrain_interval;
    loop {
        let config = current.current();
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(config.classifier.model_poll) => {}
        }
        match classifier.refresh().await {
            Ok(true) => changed(),
            Ok(false) => {}
            Err(e) => tracing::debug!(error = %e, "classifier: model poll failed"),
        }
        if Instant::now() >= next_retrain {
            next_retrain = Instant::now() + config.classifier.retrain_interval;
            match classifier.retrain_if_due().await {
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
