//! The built-in checks, one file each; [`super::Policy::build`] picks and orders them.

pub mod antivirus;
pub mod attachments;
pub mod authentication;
pub mod classifier;
pub mod client_behaviour;
pub mod date_shift;
pub mod dnsbl;
pub mod fcrdns;
pub mod greylist;
pub mod gtube;
pub mod helo;
pub mod message_id;
pub mod mime_shape;
pub mod networks;
pub mod ratelimit;
pub mod recipients;
pub mod relay_control;
pub mod rules;
pub mod scan_coverage;
pub mod sender_domain;
pub mod size;
pub mod tier;
pub mod uribl;
