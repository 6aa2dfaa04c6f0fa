//! mxguard: an inbound spam-filtering SMTP gateway for equal-preference MX tiers.
//!
//! Data flows one way: listener → session → policy → spool → relay.
#![deny(missing_docs)]

pub mod config;
pub mod metrics;
pub mod policy;
pub mod relay;
pub mod smtp;
pub mod spool;
