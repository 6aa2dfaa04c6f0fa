//! URL tokens: host, registrable domain and TLD, path words, and properties spammers
//! favour (IP hosts, user info, odd ports, percent-encoding).

use super::{bucket, reg_domain, tld, Sink, Tokenizer};
use crate::mail::url::{both_ends, mailto_address, mapped_host, Link};
use std::net::IpAddr;

/// Redirect targets read from one link's query (none from a target's own): a redirector
/// sends the reader to the spammer's site, whose host must be a token too (link evasion
/// probe: `google.com/url?q=http://spam.example` gave no token of `spam.example`).
const MAX_REDIRECT_TARGETS: usize = 2;

impl Tokenizer {
    pub(super) fn url_features(&self, urls: &[String], sink: &mut Sink) {
        for url in both_ends(urls.iter(), super::MAX_URLS) {
            self.url_tokens(url, true, sink);
        }
    }

    /// The tokens of one link, and of the links it redirects to when `follow`.
    fn url_tokens(&self, url: &str, follow: bool, sink: &mut Sink) {
        if sink.urls_left == 0 {
            return;
        }
        sink.urls_left -= 1;
        let u = url.trim().to_ascii_lowercase();
        if let Some(addr) = mailto_address(&u) {
            sink.push("u:mailto".to_string());
            if let Some((_, d)) = addr.rsplit_once('@') {
                sink.push2("u:mailto:", &reg_domain(d));
            }
            return;
        }
        // A link found in text may lack its scheme; a browser opens `www.` as http.
        // A scheme-relative link (`//host/`) opens with the page's scheme.
        let link = if u.starts_with("www.") {
            Link::parse(&format!("http://{u}"))
        } else if u.starts_with("//") {
            Link::parse(&format!("http:{u}"))
        } else {
            Link::parse(&u)
        };
        let Some(link) = link else {
            return; // relative links carry no host
        };
        if !link.is_web() {
            sink.push2("u:scheme:", &link.scheme);
            return;
        }
        if link.scheme == "https" {
            sink.push("u:https".to_string());
        }
        if link.userinfo.is_some() {
            sink.push("u:m:userinfo".to_string());
        }
        if link
            .port
            .as_deref()
            .is_some_and(|p| p.chars().all(|c| c.is_ascii_digit()))
        {
            sink.push("u:m:port".to_string());
        }
        let (host, path) = (link.host.as_str(), link.tail.as_str());
        if host.contains('%') {
            sink.push("u:m:pcthost".to_string());
        }
        // Percent-escapes in a host are decoded as browsers (and the URIBL) decode
        // them: `spam%2Eexample` is `spam.example` (review).
        let decoded;
        let host = if host.contains('%') {
            decoded = percent_encoding::percent_decode_str(host)
                .decode_utf8_lossy()
                .to_lowercase();
            decoded.as_str()
        } else {
            host
        };
        let mapped = mapped_host(host);
        let host = mapped.as_deref().unwrap_or(host);
        let host = host.trim_end_matches('.');
        if host.parse::<IpAddr>().is_ok() || host.trim_matches(['[', ']']).parse::<IpAddr>().is_ok()
        {
            sink.push("u:ip".to_string());
        } else if host.chars().all(|c| c.is_ascii_digit()) && !host.is_empty() {
            sink.push("u:m:numhost".to_string());
        } else if !host.is_empty() {
            sink.push2("u:h:", host);
            sink.push2("u:tld:", tld(host));
            sink.push2("u:d:", &reg_domain(host));
        }
        if path.contains('%') {
            sink.push("u:m:pctpath".to_string());
        }
        if path.contains('?') {
            sink.push("u:m:query".to_string());
        }
        for seg in path
            .split(|c: char| !c.is_alphanumeric())
            .filter(|s| s.len() >= 2 && s.len() <= 20)
            .take(12)
        {
            if seg.chars().all(|c| c.is_ascii_digit()) {
                sink.push2("u:p:num", bucket(seg.len()));
            } else {
                sink.push2("u:p:", seg);
            }
        }
        if follow {
            for target in redirect_targets(path).iter().take(MAX_REDIRECT_TARGETS) {
                sink.push("u:m:redirect".to_string());
                self.url_tokens(target, false, sink);
            }
        }
    }
}

/// The web links written in a link's path and query, percent-escapes decoded.
fn redirect_targets(tail: &str) -> Vec<String> {
    let decoded = percent_encoding::percent_decode_str(tail).decode_utf8_lossy();
    crate::mail::url::redirect_targets(&decoded)
        .take(MAX_REDIRECT_TARGETS)
        .map(str::to_string)
        .collect()
}
