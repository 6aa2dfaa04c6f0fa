//! Client networks at connect (`policy.trusted_networks`, `allow_networks`,
//! `deny_networks`): a denied client is refused at once, a trusted or allowlisted one
//! skips the client checks (the policy runs none of them for it), an allowlisted one also
//! earns `CLIENT_ALLOWLISTED` (scored in the rules files).

use crate::config::NetworkList;
use crate::mail::Reply;
use crate::policy::{Check, Context, Decision, Stage};
use async_trait::async_trait;

/// The three network lists.
#[derive(Debug)]
pub struct ClientNetworks {
    trusted: NetworkList,
    allow: NetworkList,
    deny: NetworkList,
}

impl ClientNetworks {
    /// The check over the lists of a configuration.
    pub fn new(trusted: NetworkList, allow: NetworkList, deny: NetworkList) -> ClientNetworks {
        ClientNetworks {
            trusted,
            allow,
            deny,
        }
    }
}

#[async_trait]
impl Check for ClientNetworks {
    fn name(&self) -> &'static str {
        "client_networks"
    }

    fn stage(&self) -> Stage {
        Stage::Connect
    }

    async fn run(&self, ctx: &mut Context) -> Decision {
        let ip = ctx.client.ip;
        if self.trusted.contains(ip) {
            ctx.client.trusted = true;
            ctx.hit("CLIENT_TRUSTED", 0.0);
            return Decision::Continue;
        }
        if self.deny.contains(ip) {
            ctx.hit("CLIENT_DENYLISTED", 0.0);
            return Decision::Reject(Reply::new(
                554,
                "5.7.1",
                format!("Client [{ip}] is not allowed to send mail here"),
            ));
        }
        if self.allow.contains(ip) {
            ctx.client.allowlisted = true;
            ctx.hit("CLIENT_ALLOWLISTED", 0.0);
        }
        Decision::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::ClientInfo;

    fn lists() -> ClientNetworks {
        let l = |e: &[&str]| NetworkList::parse(e).unwrap();
        ClientNetworks::new(
            l(&["10.0.0.0/8"]),
            l(&["198.51.100.0/24"]),
            l(&["203.0.113.0/24", "10.66.0.0/16"]),
        )
    }

    async fn judge(ip: &str) -> (Decision, Context) {
        let mut ctx = Context::new(ClientInfo::new(ip.parse().unwrap()));
        let d = lists().run(&mut ctx).await;
        (d, ctx)
    }

    #[tokio::test]
    async fn deny_refuses_allow_and_trust_mark_the_client() {
        let (d, _) = judge("203.0.113.9").await;
        assert!(matches!(d, Decision::Reject(r) if r.code == 554 && r.status == "5.7.1"));
        let (d, ctx) = judge("198.51.100.1").await;
        assert_eq!(d, Decision::Continue);
        assert!(ctx.client.allowlisted && !ctx.client.trusted);
        // Trust wins over a deny entry inside it: our own networks are never refused.
        let (d, ctx) = judge("10.66.1.1").await;
        assert_eq!(d, Decision::Continue);
        assert!(ctx.client.trusted);
        let (d, ctx) = judge("192.0.2.1").await;
        assert_eq!(d, Decision::Continue);
        assert!(!ctx.client.trusted && !ctx.client.allowlisted && ctx.symbols.is_empty());
    }
}
