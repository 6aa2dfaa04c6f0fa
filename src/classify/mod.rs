//! Content classification: the learning classifier, the attachment policy and the clamd client.
//!
//! `attachments` and `clamd` are the malware defences. The classifier: tokens of a message
//! (`tokenize/`), chi-square Bayes over token counts shared by the tier (`bayes.rs`,
//! `store.rs`), a logistic model rebuilt from the learn ledger and published to every
//! gateway (`ftrl.rs`), their log-odds averaged (`classifier.rs`) and turned into a scored
//! symbol (`bands.rs`).
//!
//! Chosen by measurement (5-fold cross-validation on the training corpus, see README
//! "Detection on held-out mail"): Bayes with SpamAssassin's constants plus FTRL logistic
//! regression on the same tokens ranks better than either alone, in every split tried. The model lives in
//! the state backend (embedded by default, Redis for a tier), so every gateway classifies
//! alike and a learn on one is seen by all; a seed file (`seed.rs`) fills an empty store.

pub mod attachments;
pub mod bands;
pub mod bayes;
pub mod clamd;
mod classifier;
pub mod features;
pub mod ftrl;
pub mod html;
mod html_sheet;
mod html_style;
pub mod ledger;
pub mod maintain;
pub mod normalize;
pub mod seed;
pub mod store;
#[cfg(test)]
mod tests;
pub mod tokenize;

pub use bands::{band, Band, BANDS};
pub use bayes::{Contribution, Counts};
pub use classifier::{
    autolearn_ceiling, Classifier, Judged, Settings, Verdict, AUTOLEARNS_AT_ONCE,
};
pub use ledger::{Class, Outcome};
pub use seed::Seed;
pub use store::Source;

use crate::state::Unavailable;
use std::path::PathBuf;

/// Why a classifier operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClassifyError {
    /// The state backend did not answer in time.
    #[error("state backend unavailable")]
    Unavailable(Unavailable),
    /// Stored or shipped data is malformed.
    #[error("malformed classifier data: {0}")]
    Format(String),
    /// A seed file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// Other gateways kept changing the same ledger entry.
    #[error("ledger entry changed concurrently too often")]
    Conflict,
    /// Learning needs the state backend; a seed loaded into memory is read-only.
    #[error("the classifier is read-only here (no state backend)")]
    ReadOnly,
}

impl From<Unavailable> for ClassifyError {
    fn from(u: Unavailable) -> Self {
        ClassifyError::Unavailable(u)
    }
}
