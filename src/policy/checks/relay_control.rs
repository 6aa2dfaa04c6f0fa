//! Relay control: only recipients in `relay.domains` are accepted, and every open-relay
//! trick (percent hack, bang path, source route, quoted `@`, address literal, double `@`,
//! trailing dot) is refused at RCPT with 550 5.7.1.

use crate::config::Config;
use crate::mail::Reply;
use crate::policy::{Check, Context, Decision, Stage};
use async_trait::async_trait;

/// Decides whether a recipient is ours to relay.
#[derive(Debug)]
pub struct RelayControl {
    /// Lower-case domains; a leading dot also admits subdomains.
    domains: Vec<String>,
    /// Domain that qualifies a bare `postmaster` (RFC 5321 §4.5.1).
    postmaster_domain: Option<String>,
}

impl RelayControl {
    /// Builds relay control from `relay.domains`.
    pub fn new(config: &Config) -> RelayControl {
        let domains = config.relay.domains.clone();
        RelayControl {
            postmaster_domain: postmaster_domain(config),
            domains,
        }
    }

    /// Why `rcpt` must not be relayed, or `None` when it may.
    fn refusal(&self, local: &str, domain: &str, source_route: bool) -> Option<&'static str> {
        if source_route {
            return Some("source routes are not accepted");
        }
        if local.contains(['@', '%', '!']) {
            return Some("routing characters in the local part are not accepted");
        }
        if domain.starts_with('[') {
            return Some("address literals are not accepted");
        }
        if domain.ends_with('.') {
            return Some("domain must not end with a dot");
        }
        // A valid international name was read as its A-label ([`as_judged`]): one still in
        // Unicode is a look-alike (full-width letters, invisible characters) that a suffix
        // of `relay.domains` took, while per-domain lists and thresholds never matched it
        // (review: `anyone@\u{ff48}r.example.test` passed `.example.test` as a stranger).
        if !domain.is_ascii() {
            return Some("the domain is no valid international name");
        }
        if !crate::config::relays_domain(&self.domains, domain) {
            return Some("relay access denied");
        }
        None
    }
}

#[async_trait]
impl Check for RelayControl {
    fn name(&self) -> &'static str {
        "relay_control"
    }

    fn stage(&self) -> Stage {
        Stage::Rcpt
    }

    async fn run(&self, ctx: &mut Context) -> Decision {
        let Some(rcpt) = ctx.rcpt.as_mut() else {
            return Decision::Continue;
        };
        if as_judged(rcpt, self.postmaster_domain.as_deref()) == Written::Postmaster {
            return Decision::Continue;
        }
        match self.refusal(&rcpt.local, &rcpt.domain, rcpt.source_route) {
            None => Decision::Continue,
            Some(why) => {
                let text = format!("<{rcpt}>: {why}");
                ctx.hit("RELAY_DENIED", 0.0);
                Decision::Reject(Reply::new(550, "5.7.1", text))
            }
        }
    }
}

/// The domain that qualifies a bare `postmaster` (RFC 5321 §4.5.1): the first of
/// `relay.domains` that is a domain, not a suffix.
pub fn postmaster_domain(config: &Config) -> Option<String> {
    config
        .relay
        .domains
        .iter()
        .find(|d| !d.starts_with('.'))
        .cloned()
}

/// How a recipient was written, as far as [`as_judged`] is concerned.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    /// A bare `postmaster`, qualified with our domain.
    Postmaster,
    /// Any other address.
    Address,
}

/// Rewrites `rcpt` into the one form the checks, the recipient lists, callouts and
/// delivery see: `postmaster` in lower case (RFC 5321 §4.5.1 reads it in any case), a bare
/// one qualified with `postmaster_domain`, a domain written in Unicode (RFC 6531 lets an
/// SMTPUTF8 sender do so) as its A-label, which `relay.domains` holds. The session finds a
/// repeated recipient by this form too (review: `<Postmaster>` and
/// `<POSTMASTER@example.test>` were two recipients beside `<postmaster@example.test>`).
pub fn as_judged(rcpt: &mut crate::mail::Address, postmaster_domain: Option<&str>) -> Written {
    if !rcpt.quoted && rcpt.local.eq_ignore_ascii_case("postmaster") {
        rcpt.local = "postmaster".to_owned();
    }
    // A source route in front (`<@other.test:postmaster>`) is refused like any other
    // source route: the bare postmaster exception must not open a way around that.
    if rcpt.domain.is_empty()
        && rcpt.local.eq_ignore_ascii_case("postmaster")
        && !rcpt.quoted
        && !rcpt.source_route
    {
        if let Some(d) = postmaster_domain {
            rcpt.domain = d.to_owned();
            return Written::Postmaster;
        }
    }
    if let Some(ascii) = a_label(&rcpt.domain) {
        rcpt.domain = ascii;
    }
    Written::Address
}

/// The A-label form of a domain written in Unicode, when the domain is exactly what its
/// A-label reads back as (UTS 46, non-transitional): a look-alike spelling (full-width
/// letters, an ideographic full stop) maps onto an A-label too, but is not taken for it.
fn a_label(domain: &str) -> Option<String> {
    if domain.is_ascii() {
        return None;
    }
    let ascii = idna::domain_to_ascii(domain).ok()?;
    let (unicode, result) = idna::domain_to_unicode(&ascii);
    (result.is_ok() && unicode == domain).then_some(ascii)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::address::parse_path;
    use crate::policy::ClientInfo;
    use std::path::Path;

    fn control() -> RelayControl {
        let c = Config::from_toml(
            Path::new("t.toml"),
            "[relay]\ndomains=[\"example.test\", \".sub.example.test\"]\ninternal=[\"127.0.0.1:2526\"]\n",
        )
        .unwrap();
        RelayControl::new(&c)
    }

    /// A transaction at its RCPT of `rcpt`.
    fn at_rcpt(rcpt: &str) -> Context {
        let mut ctx = Context::new(ClientInfo::new("192.0.2.1".parse().unwrap()));
        ctx.rcpt = Some(parse_path(rcpt).unwrap());
        ctx
    }

    async fn judge(rcpt: &str) -> Decision {
        control().run(&mut at_rcpt(rcpt)).await
    }

    #[tokio::test]
    async fn relayed_domains_and_listed_subdomains_pass() {
        for ok in [
            "user@example.test",
            "user@EXAMPLE.test",
            "u@a.sub.example.test",
            "postmaster",
        ] {
            assert_eq!(judge(ok).await, Decision::Continue, "{ok}");
        }
    }

    /// Regression (review): a look-alike of a subdomain (a full-width letter, a zero-width
    /// character), which no A-label reads back as, passed a `.example.test` suffix as
    /// written, and per-domain recipient lists and thresholds never matched it.
    #[tokio::test]
    async fn a_look_alike_subdomain_is_refused() {
        for rcpt in [
            "anyone@\u{ff48}r.sub.example.test",
            "anyone@h\u{200b}r.sub.example.test",
            "anyone@\u{ff45}xample.test",
        ] {
            assert!(matches!(judge(rcpt).await, Decision::Reject(_)), "{rcpt:?}");
        }
        assert_eq!(
            judge("anyone@b\u{fc}cher.sub.example.test").await,
            Decision::Continue
        );
    }

    /// Regression (review): a recipient domain written in Unicode was compared with the
    /// A-labels of `relay.domains` as it was, so mail to `j\u{f6}rg@b\u{fc}cher.example` got
    /// `550 5.7.1 relay access denied` for good.
    #[tokio::test]
    async fn a_domain_written_in_unicode_is_its_a_label() {
        let c = Config::from_toml(
            Path::new("t.toml"),
            "[relay]\ndomains=[\"xn--bcher-kva.example\"]\ninternal=[\"127.0.0.1:2526\"]\n",
        )
        .unwrap();
        let control = RelayControl::new(&c);
        let mut ctx = at_rcpt("j\u{f6}rg@B\u{dc}CHER.example");
        assert_eq!(control.run(&mut ctx).await, Decision::Continue);
        let rcpt = ctx.rcpt.unwrap();
        assert_eq!(rcpt.domain, "xn--bcher-kva.example");
        assert_eq!(rcpt.to_path(), "j\u{f6}rg@xn--bcher-kva.example");
        // Full-width letters and an ideographic full stop map to the same A-label, but
        // are another spelling: refused.
        for look_alike in [
            "j@\u{ff42}\u{fc}cher.example",
            "j@b\u{fc}cher\u{3002}example",
        ] {
            assert!(
                matches!(
                    control.run(&mut at_rcpt(look_alike)).await,
                    Decision::Reject(_)
                ),
                "{look_alike}"
            );
        }
    }

    #[tokio::test]
    async fn every_open_relay_form_is_refused() {
        for bad in [
            "to@other.test",
            "to%other.test@mx.example.test",
            "to%other.test@[127.0.0.1]",
            "\"to@other.test\"",
            "\"to%other.test\"",
            "\"to@other.test\"@[127.0.0.1]",
            "to@other.test@mx.example.test",
            "to@other.test@example.test",
            "@mx.example.test:to@other.test",
            "@[127.0.0.1]:to@example.test",
            "other.test!to",
            "other.test!to@mx.example.test",
            "other.test!to@[127.0.0.1]",
            "to%other.test@example.test",
            "user@unlisted.example.test",
            "user@sub.example.test",
            "user@example.test.",
            "user@localhost",
            "user@[127.0.0.1]",
            "@other.test:postmaster",
            "@mx.example.test:postmaster",
            "@[127.0.0.1]:postmaster",
            "@a.test,@b.test:postmaster",
            "@other.test:postmaster@example.test",
        ] {
            assert!(
                matches!(judge(bad).await, Decision::Reject(ref r) if r.code == 550 && r.status == "5.7.1"),
                "{bad} must be refused"
            );
        }
    }

    /// Regression (carried, review): a refused recipient's symbol stayed in the
    /// transaction, so `actions.RELAY_DENIED = "reject"` (or a meta reading it) refused the
    /// message for the recipients that were accepted, and autolearn and the journal counted it.
    #[tokio::test]
    async fn a_refused_recipient_leaves_no_symbol_in_the_transaction() {
        let text = "[relay]\ndomains=[\"example.test\"]\ninternal=[\"127.0.0.1:2526\"]\n";
        let config = std::sync::Arc::new(Config::from_toml(Path::new("t.toml"), text).unwrap());
        let policy = crate::policy::Policy::build(config, &Default::default()).unwrap();
        let mut ctx = at_rcpt("user@elsewhere.test");
        let refused = policy.evaluate(Stage::Rcpt, &mut ctx).await;
        assert!(matches!(refused, Decision::Reject(_)), "{refused:?}");
        ctx.rcpt = Some(parse_path("user@example.test").unwrap());
        let accepted = policy.evaluate(Stage::Rcpt, &mut ctx).await;
        assert!(matches!(accepted, Decision::Continue), "{accepted:?}");
        let names: Vec<&str> = ctx.symbols.iter().map(|s| s.name.as_str()).collect();
        assert!(!names.contains(&"RELAY_DENIED"), "{names:?}");
    }
}
