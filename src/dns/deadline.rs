//! Per-stage deadlines: every DNS check of a stage runs concurrently under one deadline, so a
//! slow or dead DNS server never holds a session past `dns.stage_deadline`.

use super::Outcome;
use std::future::Future;
use tokio::time::Instant;

/// Runs `lookup` until `deadline`; past it the lookup is dropped and the result is
/// [`Outcome::Timeout`] (a dropped lookup still records itself as a timeout in the metrics).
pub async fn within<T>(deadline: Instant, lookup: impl Future<Output = Outcome<T>>) -> Outcome<T> {
    tokio::time::timeout_at(deadline, lookup)
        .await
        .unwrap_or(Outcome::Timeout)
}

/// Runs all `lookups` concurrently under one `deadline`; the results come back in the input
/// order, each lookup that was still running at the deadline as [`Outcome::Timeout`].
pub async fn all_within<T, F>(
    deadline: Instant,
    lookups: impl IntoIterator<Item = F>,
) -> Vec<Outcome<T>>
where
    F: Future<Output = Outcome<T>>,
{
    futures::future::join_all(lookups.into_iter().map(|lookup| within(deadline, lookup))).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_lookup_past_the_deadline_is_a_timeout() {
        let deadline = Instant::now() + Duration::from_millis(50);
        let slow = async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Outcome::Found(1)
        };
        assert_eq!(within(deadline, slow).await, Outcome::Timeout);
    }

    #[tokio::test]
    async fn fast_lookups_keep_their_outcome_and_order() {
        let deadline = Instant::now() + Duration::from_millis(50);
        let slow = Box::pin(async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Outcome::Found(1)
        }) as std::pin::Pin<Box<dyn Future<Output = Outcome<i32>> + Send>>;
        let fast = Box::pin(async { Outcome::Found(2) }) as _;
        let none = Box::pin(async { Outcome::NotFound }) as _;
        let results = all_within(deadline, vec![slow, fast, none]).await;
        assert_eq!(
            results,
            vec![Outcome::Timeout, Outcome::Found(2), Outcome::NotFound]
        );
    }
}
