//! Content classification services the policy's checks use: the attachment policy and the clamd client.

pub mod attachments;
pub mod clamd;
