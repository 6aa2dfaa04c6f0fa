//! DNS: the one shared resolver every check uses, typed lookup outcomes, per-stage deadlines,
//! DNSBL query names and return codes, and (for tests only) an in-process DNS server.
//!
//! A [`Dns`] is built once from `[dns]` and handed to the checks that need it (no globals).
//! Every lookup says *why* it found nothing ([`Outcome`]): a DNSBL miss is an NXDOMAIN, which
//! must never be confused with a timeout or a SERVFAIL, since only the first means "not listed".

pub mod deadline;
pub mod dnsbl;
pub mod resolver;
#[cfg(any(test, feature = "test-dns-server"))]
pub mod testing;

pub use deadline::{all_within, within};
pub use resolver::{Dns, DnsSetupError, Mx, Outcome};
