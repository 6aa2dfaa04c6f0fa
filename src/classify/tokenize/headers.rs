//! Header tokens: Subject, From, Reply-To, recipient shape, the Received chain's shape,
//! mailer, Message-ID, Date and a few presence/value headers, read the same at any gateway.
//! Recipient addresses and collection artefacts are never read: they describe whoever
//! collected the mail, not the sender.

use super::{bucket, reg_domain, shape, tld, words_in, Sink, Tokenizer};
use crate::classify::normalize::{join_spaced_letters, normalize_text};
use crate::mail::display_names::mailboxes;
use crate::mail::encoded_words::decode_unstructured;
use crate::mail::header_fields::{raw_value, value_as_read};
use crate::mail::trace::{hops_after_delivery, message_id_made_at_mx, Reading};
use mail_parser::{Addr, Address, HeaderName, HeaderValue, Host, Message};

/// Subject words read at most (a subject's worth; the rest still counts in `s:m:words:`).
const MAX_SUBJECT_WORDS: usize = 64;

impl Tokenizer {
    pub(super) fn header_features(&self, msg: &Message<'_>, sink: &mut Sink, reading: Reading) {
        // Subject, decoded as the rules decode it (review: mail-parser read
        // `Cheap Vi=?utf-8?q?agra?=` as "Vi agra", and a character split over two encoded
        // words as two U+FFFD).
        // 8-bit bytes that are not UTF-8 read as Windows-1252, as the rules read them (a
        // raw Latin-1 subject is no subject to `header_raw`).
        // The first Subject field, which clients show (header probe: the last was read, so
        // a second, harmless Subject hid the pitch of the first from the classifier).
        let raw_subject = msg
            .root_part()
            .headers
            .iter()
            .find(|h| h.name == HeaderName::Subject);
        match raw_subject.map(|h| value_as_read(msg.raw_message(), h)) {
            Some(s) => self.subject(&decode_unstructured(&s), msg, sink),
            None => sink.push("s:m:none".to_string()),
        }
        // From.
        let from_domain = match msg.from().and_then(Address::first) {
            Some(a) => self.from(a, shown_from_name(msg).as_deref(), sink),
            None => {
                sink.push("f:m:none".to_string());
                None
            }
        };
        // Reply-To.
        if let Some(rt) = msg.reply_to().and_then(Address::first) {
            let d = rt
                .address()
                .and_then(|a| a.rsplit_once('@'))
                .map(|(_, d)| reg_domain(d));
            let same = d.is_some() && d == from_domain;
            sink.push(format!("rt:{}", if same { "samedom" } else { "otherdom" }));
        }
        // Recipients: shape only, never the addresses (those are the collector's).
        let tos = msg.to().map_or(0, |a| a.iter().count());
        sink.push2("to:n:", bucket(tos));
        if let Some(raw) = msg.header_raw(HeaderName::To) {
            if raw.to_ascii_lowercase().contains("undisclosed") {
                sink.push("to:undisclosed".to_string());
            }
        }
        if let Some(to) = msg.to().and_then(Address::first) {
            if to.name().is_none() {
                sink.push("to:noname".to_string());
            }
            let d = to
                .address()
                .and_then(|a| a.rsplit_once('@'))
                .map(|(_, d)| reg_domain(d));
            if d.is_some() && d == from_domain {
                sink.push("to:samedomasfrom".to_string());
            }
        }
        let ccs = msg.cc().map_or(0, |a| a.iter().count());
        sink.push2("cc:n:", bucket(ccs));
        // Received chain: the raw hops, read once for its tokens and the Message-ID's.
        let raw = msg.raw_message();
        let hops: Vec<&str> = msg
            .headers()
            .iter()
            .filter(|h| h.name == HeaderName::Received)
            .map(|h| std::str::from_utf8(raw_value(raw, h)).unwrap_or(""))
            .collect();
        self.received(msg, &hops, sink);
        // Mailer.
        let mailer = msg
            .header_raw("X-Mailer")
            .or_else(|| msg.header_raw("User-Agent"));
        match mailer {
            Some(m) => {
                let norm = normalize_text(m);
                for w in norm
                    .split(|c: char| !c.is_alphanumeric())
                    .filter(|w| w.len() >= 2 && !w.chars().all(|c| c.is_ascii_digit()))
                    .take(4)
                {
                    sink.push2("xm:", w);
                }
                sink.push2("xm:shape:", &shape(m.trim(), 12));
            }
            None => sink.push("xm:none".to_string()),
        }
        // Message-ID. One the MX of collected mail made stands for none, as the gateway
        // sees such a message.
        let made_at_mx = msg
            .headers()
            .iter()
            .find(|h| h.name == HeaderName::MessageId)
            .is_some_and(|h| {
                let id = String::from_utf8_lossy(raw_value(raw, h));
                message_id_made_at_mx(&id, &hops, reading)
            });
        match msg.message_id().filter(|_| !made_at_mx) {
            Some(id) => {
                let (local, domain) = id.rsplit_once('@').unwrap_or((id, ""));
                sink.push2("mid:lp:", &shape(local, 16));
                if domain.is_empty() {
                    sink.push("mid:nodomain".to_string());
                } else {
                    let d = reg_domain(domain);
                    if Some(&d) == from_domain.as_ref() {
                        sink.push("mid:samedomasfrom".to_string());
                    }
                    sink.push2("mid:d:", &d);
                }
            }
            None => sink.push("mid:none".to_string()),
        }
        // Date.
        match msg.date() {
            Some(d) => {
                let sign = if d.tz_before_gmt { '-' } else { '+' };
                sink.push(format!("date:tz:{sign}{:02}{:02}", d.tz_hour, d.tz_minute));
            }
            None => sink.push("date:none".to_string()),
        }
        // Simple presence/value headers that mean the same at any gateway.
        for (name, prefix) in [
            ("Precedence", "prec:"),
            ("X-Priority", "xpri:"),
            ("X-MSMail-Priority", "xmsp:"),
            ("Importance", "imp:"),
        ] {
            if let Some(v) = msg.header_raw(name) {
                let v = v.trim().to_ascii_lowercase();
                let v: String = v.chars().take(12).collect();
                sink.push2(prefix, &v);
            }
        }
        for (name, token) in [
            (HeaderName::ListId, "list:id"),
            (HeaderName::ListUnsubscribe, "list:unsub"),
            (HeaderName::InReplyTo, "hdr:inreplyto"),
            (HeaderName::References, "hdr:references"),
            (HeaderName::Sender, "hdr:sender"),
            (HeaderName::MimeVersion, "hdr:mimeversion"),
            (HeaderName::Organization, "hdr:organization"),
        ] {
            if msg.header(name).is_some() {
                sink.push(token.to_string());
            }
        }
    }

    fn subject(&self, subject: &str, msg: &Message<'_>, sink: &mut Sink) {
        let trimmed = subject.trim();
        if trimmed.is_empty() {
            sink.push("s:m:empty".to_string());
            return;
        }
        let letters = trimmed.chars().filter(|c| c.is_alphabetic()).count();
        let upper = trimmed.chars().filter(|c| c.is_uppercase()).count();
        if letters >= 6 && upper * 10 >= letters * 7 {
            sink.push("s:m:caps".to_string());
        }
        if trimmed.contains('!') {
            sink.push("s:m:excl".to_string());
        }
        if trimmed.contains('$') {
            sink.push("s:m:dollar".to_string());
        }
        if subject.contains("   ") {
            sink.push("s:m:spaces".to_string());
        }
        let norm = normalize_text(trimmed);
        if norm.starts_with("re:") {
            sink.push("s:m:re".to_string());
        } else if norm.starts_with("fw:") || norm.starts_with("fwd:") {
            sink.push("s:m:fwd".to_string());
        }
        // A Subject may be as long as the header section: its words are tokens only up to
        // a subject's worth, or one message would bring a quarter of a million of them.
        let words: Vec<&str> = norm.split_whitespace().take(MAX_SUBJECT_WORDS).collect();
        if let Some(last) = words.last() {
            if words.len() > 1 && last.len() >= 4 && last.chars().any(|c| c.is_ascii_digit()) {
                sink.push("s:m:trailingid".to_string());
            }
        }
        sink.push2("s:m:words:", bucket(norm.split_whitespace().count()));
        if let Some(raw) = msg.header_raw(HeaderName::Subject) {
            if let Some(start) = raw.find("=?") {
                let cs: String = raw[start + 2..]
                    .chars()
                    .take_while(|&c| c != '?')
                    .take(20)
                    .collect();
                sink.push2("s:m:enc:", &cs.to_ascii_lowercase());
            }
        }
        for joined in join_spaced_letters(&norm, &words) {
            self.word_variants(&joined, "s:", sink);
        }
        for w in words.iter().flat_map(|chunk| words_in(chunk)) {
            self.word_variants(w, "s:", sink);
        }
    }

    /// From features; returns the sender's registrable domain.
    /// `shown_name` is the display name as clients read it ([`shown_from_name`]), which
    /// stands for the parser's.
    fn from(&self, a: &Addr<'_>, shown_name: Option<&str>, sink: &mut Sink) -> Option<String> {
        match shown_name.or(a.name()) {
            Some(n) if !n.trim().is_empty() => {
                let norm = normalize_text(n);
                if norm.contains('@') {
                    sink.push("f:m:nameisaddr".to_string());
                }
                for w in norm
                    .split(|c: char| !c.is_alphanumeric())
                    .filter(|w| w.len() >= 2)
                    .take(6)
                {
                    sink.push2("f:n:", w);
                }
                let letters = n.chars().filter(|c| c.is_alphabetic()).count();
                let upper = n.chars().filter(|c| c.is_uppercase()).count();
                if letters >= 4 && upper == letters {
                    sink.push("f:m:namecaps".to_string());
                }
            }
            _ => sink.push("f:m:noname".to_string()),
        }
        let addr = a.address()?.to_ascii_lowercase();
        let (local, domain) = addr.rsplit_once('@')?;
        sink.push2("f:lp:", &shape(local, 10));
        let d = reg_domain(domain);
        sink.push2("f:d:", &d);
        sink.push2("f:tld:", tld(domain));
        Some(d)
    }

    /// `raw_hops`: the raw `Received` fields, top first.
    fn received(&self, msg: &Message<'_>, raw_hops: &[&str], sink: &mut Sink) {
        // Hops added after delivery describe the recipient's tools, not the sender.
        let after_delivery = hops_after_delivery(raw_hops);
        let mut hops = 0usize;
        for hv in msg.header_values(HeaderName::Received).skip(after_delivery) {
            hops += 1;
            if hops > 8 {
                continue;
            }
            let HeaderValue::Received(r) = hv else {
                sink.push("rcv:unparsed".to_string());
                continue;
            };
            if let Some(with) = &r.with {
                sink.push(format!("rcv:with:{with:?}").to_ascii_lowercase());
            }
            let helo_name = match &r.helo {
                Some(Host::IpAddr(_)) => {
                    sink.push("rcv:helo:ip".to_string());
                    None
                }
                Some(Host::Name(n)) => {
                    if !n.contains('.') {
                        sink.push("rcv:helo:nodot".to_string());
                    }
                    Some(n.to_ascii_lowercase())
                }
                None => None,
            };
            match r.from_iprev.as_deref() {
                Some(rdns) => {
                    let rdns = rdns.to_ascii_lowercase();
                    if rdns == "unknown" {
                        sink.push("rcv:rdns:unknown".to_string());
                    } else {
                        if is_dynamic_name(&rdns) {
                            sink.push("rcv:rdns:dynamic".to_string());
                        }
                        if let Some(h) = &helo_name {
                            if reg_domain(h) != reg_domain(&rdns) {
                                sink.push("rcv:helo:mismatch".to_string());
                            }
                        }
                    }
                }
                None if r.from_ip.is_some() => sink.push("rcv:rdns:none".to_string()),
                None => {}
            }
            if r.by.is_none() {
                sink.push("rcv:noby".to_string());
            }
        }
        sink.push2("rcv:n:", bucket(hops));
    }
}

/// True for host names that look like consumer broadband or dial-up pools.
fn is_dynamic_name(host: &str) -> bool {
    let first = host.split('.').next().unwrap_or("");
    let digits = first.chars().filter(|c| c.is_ascii_digit()).count();
    digits >= 6
        || [
            "dsl", "dialup", "dial-", "dyn", "pool", "cable", "ppp", "dhcp", "adsl", "client",
        ]
        .iter()
        .any(|k| host.contains(k))
}

/// The display name of the From field's first mailbox as clients show it (charsets
/// mail-parser's table reads otherwise, see [`crate::mail::display_names`]); `None` where
/// the parser's reading stands. The field is the one `Message::from` reads (the last), so
/// that name and address stay one mailbox's.
fn shown_from_name(msg: &Message<'_>) -> Option<String> {
    let field = msg
        .root_part()
        .headers
        .iter()
        .rfind(|h| h.name == HeaderName::From)?;
    let raw = value_as_read(msg.raw_message(), field);
    if !raw.contains("=?") {
        return None;
    }
    mailboxes(&raw, false).into_iter().next()?.name
}
