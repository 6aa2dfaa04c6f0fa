//! Forward-confirmed reverse DNS of the client: its PTR names must resolve back to its
//! address. `RDNS_NONE` (no PTR), `RDNS_MISMATCH` (no name resolves back); lookup failures
//! score nothing unless configured to tempfail.

use super::{Check, Context, Decision, Reply, Stage};
use crate::dns::{within, Dns, Outcome};
use async_trait::async_trait;

/// Names checked per client at most (a PTR set can be large and attacker-controlled).
const MAX_NAMES: usize = 3;

/// The FCrDNS check.
#[derive(Debug)]
pub struct Fcrdns {
    dns: Dns,
    tempfail_on_failure: bool,
}

impl Fcrdns {
    /// A check resolving with `dns`.
    pub fn new(dns: Dns, tempfail_on_failure: bool) -> Fcrdns {
        Fcrdns {
            dns,
            tempfail_on_failure,
        }
    }

    fn failed(&self) -> Decision {
        if self.tempfail_on_failure {
            Decision::Tempfail(Reply::new(
                421,
                "4.4.3",
                "Reverse DNS lookup failed, try again later",
            ))
        } else {
            Decision::Continue
        }
    }
}

#[async_trait]
impl Check for Fcrdns {
    fn name(&self) -> &'static str {
        "fcrdns"
    }

    fn stage(&self) -> Stage {
        Stage::Connect
    }

    async fn run(&self, ctx: &mut Context) -> Decision {
        let ip = ctx.client.ip;
        let deadline = self.dns.stage_deadline();
        let names = match within(deadline, self.dns.lookup_ptr("fcrdns", ip)).await {
            Outcome::Found(names) if !names.is_empty() => names,
            Outcome::Found(_) | Outcome::NotFound => {
                ctx.hit("RDNS_NONE", 0.0);
                return Decision::Continue;
            }
            _ => return self.failed(),
        };
        let mut any_failure = false;
        for name in names.iter().take(MAX_NAMES) {
            match within(deadline, self.dns.lookup_ip("fcrdns", name)).await {
                Outcome::Found(addrs) if addrs.contains(&ip) => {
                    ctx.client.ptr = Some(name.trim_end_matches('.').to_ascii_lowercase());
                    return Decision::Continue;
                }
                Outcome::Found(_) | Outcome::NotFound => {}
                _ => any_failure = true,
            }
        }
        if any_failure {
            return self.failed();
        }
        ctx.hit("RDNS_MISMATCH", 0.0);
        Decision::Continue
    }
}
