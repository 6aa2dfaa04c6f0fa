//! DNS: the one shared resolver every check uses, typed lookup outcomes, per-stage deadlines,
//! DNSBL query names and return codes, and (for tests only) an in-process DNS server.
//!
//! A [`Dns`] is built once from `[dns]` and handed to the checks that need it (no globals).
//! Every lookup says *why* it found nothing ([`Outcome`]): a DNSBL miss is an NXDOMAIN, which
//! must never be confused with a timeout or a SERVFAIL, since only the first means "not listed".
//!
//! Every lookup, mail-auth's included (through [`Dns::auth_resolver`]), takes one path
//! ([`query`]): the cache (negative answers kept at least `dns.negative_ttl_min`), the health
//! gate (a resolver that stopped answering is skipped until a background probe gets an
//! answer), one query in flight per name and type, and a transport that retransmits early and
//! notices a refused server at once ([`transport`]).

mod cache;
pub mod deadline;
pub mod dnsbl;
mod health;
mod list_sanity;
mod local;
mod outcome;
mod query;
pub mod resolver;
mod responder;
#[cfg(any(test, feature = "test-dns-server"))]
pub mod testing;
mod transport;

pub use deadline::{all_within, within};
pub use list_sanity::ListKind;
pub use local::only_loopback_for;
pub use outcome::{Mx, Outcome};
pub use resolver::{Dns, DnsSetupError};
