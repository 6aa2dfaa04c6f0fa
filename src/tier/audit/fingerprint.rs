//! Policy fingerprints from the admin endpoints the operator named: `GET /policy` on each,
//! the `fingerprint` field of its JSON.
//!
//! A plain `HTTP/1.0` exchange over TCP is all this takes: one request, a body of a few
//! hundred bytes read until the server closes, every step under the audit's timeout and
//! the response size bounded (the endpoint may not be mxguard, or not even HTTP).

use super::AdminEndpoint;
use crate::tier::http::{self, HttpError};
use serde::Serialize;
use std::net::SocketAddr;
use std::time::Duration;

/// The fingerprint one admin endpoint reported, or why it could not be had.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdminFingerprint {
    /// The name given on the command line.
    pub name: String,
    /// The admin endpoint asked.
    pub address: SocketAddr,
    /// The policy fingerprint, when the endpoint answered with one.
    pub fingerprint: Option<String>,
    /// Why there is no fingerprint.
    pub error: Option<String>,
}

/// Why `/policy` gave no fingerprint.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FetchError {
    /// No usable HTTP answer (connection, timeout, size or framing).
    #[error(transparent)]
    Http(#[from] HttpError),
    /// Not 200 (403 means the audit host is outside `metrics.allow`).
    #[error("HTTP status {0}")]
    Status(u16),
    /// The body is not JSON with a string `fingerprint`.
    #[error("no fingerprint in the /policy document")]
    NoFingerprint,
}

/// Fetches every endpoint's fingerprint at once, keeping the command-line order.
pub async fn fetch_all(admins: &[AdminEndpoint], limit: Duration) -> Vec<AdminFingerprint> {
    futures::future::join_all(admins.iter().map(|admin| async move {
        let result = fetch(admin.address, limit).await;
        AdminFingerprint {
            name: admin.name.clone(),
            address: admin.address,
            error: result.as_ref().err().map(ToString::to_string),
            fingerprint: result.ok(),
        }
    }))
    .await
}

/// `GET /policy` on `address`; the fingerprint it reports.
pub async fn fetch(address: SocketAddr, limit: Duration) -> Result<String, FetchError> {
    let (status, body) = http::get(address, "/policy", limit).await?;
    fingerprint_of(status, &body)
}

/// The fingerprint in a complete HTTP response to `GET /policy`.
pub fn parse_policy_response(raw: &[u8]) -> Result<String, FetchError> {
    let (status, body) = http::parse_response(raw)?;
    fingerprint_of(status, &body)
}

fn fingerprint_of(status: u16, body: &[u8]) -> Result<String, FetchError> {
    if status != 200 {
        return Err(FetchError::Status(status));
    }
    crate::tier::fingerprint_in_policy(body).ok_or(FetchError::NoFingerprint)
}
