//! The `uri` rules' list: links from the rendered text, the raw text and the HTML, each
//! source given a fair share of the list's bound.

use super::MAX_URIS;
use crate::mail::url::both_ends;
use crate::rules::html_text::decode_entities;
use crate::rules::uri_forms::{as_listed, uri_forms};
use regex::Regex;
use std::borrow::Cow;
use std::sync::LazyLock;

/// Entries of the `uri` list at most: the links as written and the other forms of them.
const MAX_URI_FORMS: usize = 4 * MAX_URIS;

/// The links written in `texts` (`TEXT_URI`), in order, each as a client opens it: a link
/// a client would not see (a scheme glued to an ASCII letter, `xhttp://`) is skipped, and a
/// link written between `<…>` or `"…"` with blanks in it (`<http://spa m.example/>`) is
/// read whole with its blanks dropped, as Thunderbird links it.
fn text_links<'a>(
    texts: impl IntoIterator<Item = &'a String>,
) -> impl Iterator<Item = Cow<'a, str>> {
    let re = TEXT_URI.as_ref();
    texts.into_iter().flat_map(move |text| {
        re.into_iter().flat_map(move |re| {
            re.find_iter(text)
                .filter(|m| starts_a_link(text, m.start()))
                .map(|m| Cow::Borrowed(m.as_str()))
                .chain(bracketed_links(text))
        })
    })
}

/// Whether a link may start at `start` of `text`: a client's scan back from the scheme
/// stops at anything but an ASCII letter, digit, `+`, `-` or `.`, so a link glued to CJK
/// or Cyrillic text, or to `_`, is one (link probe: `访问http://spam.example/` was missed,
/// `\b` saw no boundary between two letters).
fn starts_a_link(text: &str, start: usize) -> bool {
    !text[..start]
        .chars()
        .next_back()
        .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// The links between `<…>` or `"…"` on one line that hold blanks, blanks dropped.
fn bracketed_links(text: &str) -> impl Iterator<Item = Cow<'_, str>> {
    BRACKETED_URI.as_ref().into_iter().flat_map(move |re| {
        re.captures_iter(text).filter_map(|caps| {
            let inner = caps.get(1)?.as_str();
            inner
                .contains([' ', '\t'])
                .then(|| Cow::Owned(inner.chars().filter(|c| !matches!(c, ' ' | '\t')).collect()))
        })
    })
}

/// `doc` without its HTML comments (ended as a browser ends them), and after it the markup
/// of Outlook's conditional comments, which Outlook shows: after, so that a quote left open
/// in one cannot run on over the page's own links (review: `<b title="<![endif]-->` hid
/// the link after it).
fn without_comments(doc: &str) -> std::borrow::Cow<'_, str> {
    if !doc.contains("<!--") {
        return std::borrow::Cow::Borrowed(doc);
    }
    let mut out = String::with_capacity(doc.len());
    let mut conditional = String::new();
    let mut rest = doc;
    while let Some(open) = rest.find("<!--") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 4..];
        let len = crate::mail::html::comment_len(after);
        if let Some(content) = crate::mail::html::conditional_content(&after[..len]) {
            conditional.push_str(content);
            conditional.push('\n');
        }
        rest = &after[len..];
    }
    out.push_str(rest);
    if !conditional.is_empty() {
        out.push('\n');
        out.push_str(&conditional);
    }
    std::borrow::Cow::Owned(out)
}

/// Links of one source read at most before the list is chosen from them: a message of
/// megabytes of links costs no more than this.
const MAX_COLLECTED: usize = 16 * MAX_URIS;

/// The links of a message, as SpamAssassin's `uri_list_canonicalize` lists them (a URL
/// inside another one's path or query, a redirector's target, among them). At most
/// [`MAX_URIS`] links as written: each source (the text a reader sees, the markup's
/// links, the rest of the decoded text, the addresses written in the text) has its fair
/// share of them, and a source with more than its share keeps both its ends. Padding in
/// one source (1,000 links in an HTML comment, or in text hidden by CSS) does not push
/// out the links of another (review: hidden text filled the list before the one real
/// link, which no `uri` rule and no URIBL lookup then saw), and padding ahead of a link
/// in its own source does not either.
pub(super) fn extract_uris(rendered: &[String], raw: &[String], html: &[String]) -> Vec<String> {
    let mut sources: [Links; 5] = Default::default();
    let [seen_text, in_markup, in_raw, addresses, bare] = &mut sources;
    for uri in text_links(rendered) {
        seen_text.collect(&uri);
    }
    if let Some(attr) = HTML_ATTR.as_ref() {
        for doc in html {
            // Outside comments, where they are markup no reader sees.
            let doc = without_comments(doc);
            for caps in attr.captures_iter(&doc) {
                if let Some(m) = caps.get(1).or(caps.get(2)).or(caps.get(3)) {
                    // An attribute's value as the browser reads it: references decoded, and
                    // tabs and line breaks dropped from a URL (`http://exa\nmple.com/` opens
                    // example.com, and SpamAssassin lists it so).
                    let value = decode_entities(m.as_str());
                    let value: String = value
                        .chars()
                        .filter(|c| !matches!(c, '\t' | '\r' | '\n'))
                        .collect();
                    in_markup.collect(&value);
                }
            }
        }
    }
    // A plain part's raw text is its rendered text, read above: its links are those.
    for uri in text_links(raw.iter().filter(|text| !rendered.contains(text))) {
        in_raw.collect(&uri);
    }
    // SpamAssassin lists the addresses written in the text as `mailto:` URIs too.
    if let Some(re) = TEXT_ADDRESS.as_ref() {
        for text in rendered {
            for m in re.find_iter(text) {
                let start = m.start();
                if !text[..start].ends_with(':') && !text[..start].ends_with('/') {
                    addresses.collect(&format!("mailto:{}", m.as_str()));
                }
            }
        }
    }
    for text in rendered {
        for host in bare_domains(text) {
            bare.collect(&format!("http://{host}"));
        }
    }
    let lens: Vec<usize> = sources.iter().map(|s| s.list.len()).collect();
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<String> = Vec::new();
    for (source, share) in sources.into_iter().zip(fair_shares(&lens, MAX_URIS)) {
        // Links an earlier source kept take none of this one's share: the links of a
        // plain part are in both its text and its raw text, and those of the markup in
        // the raw HTML (review: chosen before the copies were dropped, half the list went
        // to copies, and a link between 300 links on each side was cut).
        let fresh: Vec<String> = source
            .list
            .into_iter()
            .filter(|uri| !seen.contains(uri))
            .collect();
        for uri in both_ends(fresh, share) {
            if seen.insert(uri.clone()) {
                out.push(uri);
            }
        }
    }
    // The links as written first, then the other forms of each: a page of disguised links
    // (seven forms each) must not push a plain link out of the list.
    let mut all = out.clone();
    for link in &out {
        for form in uri_forms(link) {
            if all.len() >= MAX_URI_FORMS {
                return all;
            }
            if seen.insert(form.clone()) {
                all.push(form);
            }
        }
    }
    all
}

/// The links of one source, in order, each once.
#[derive(Default)]
struct Links {
    list: Vec<String>,
    seen: std::collections::HashSet<String>,
}

impl Links {
    /// Adds a link found in the source, as SpamAssassin lists it.
    fn collect(&mut self, uri: &str) {
        let uri = uri
            .trim()
            .trim_end_matches(['.', ',', ';', ':', '!', '?', '\'', '"', ')', '>']);
        if uri.is_empty() || uri.starts_with('#') || self.list.len() >= MAX_COLLECTED {
            return;
        }
        let uri = as_listed(&uri.replace("&amp;", "&"));
        if self.seen.insert(uri.clone()) {
            self.list.push(uri);
        }
    }
}

/// How many of `total` each source gets: an equal share, what one does not need going to
/// the others.
pub(super) fn fair_shares(lens: &[usize], total: usize) -> Vec<usize> {
    let mut shares = vec![0; lens.len()];
    let mut left = total;
    let mut open: Vec<usize> = (0..lens.len()).filter(|&i| lens[i] > 0).collect();
    while left > 0 && !open.is_empty() {
        let each = (left / open.len()).max(1);
        open.retain(|&i| {
            let give = (lens[i] - shares[i]).min(each).min(left);
            shares[i] += give;
            left -= give;
            shares[i] < lens[i]
        });
    }
    shares
}

/// A link in text: a scheme with the slashes a browser reads (`http:\\`, `http:/`, none:
/// WHATWG URL's special-scheme slashes), a `mailto:`, or `www.` and a host whose labels may
/// be any letters (`www.spam．example`, full-width letters, which IDNA maps). Where a link
/// may start is [`starts_a_link`]'s to say.
static TEXT_URI: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)(?:(?:https?|ftp):[/\\]{0,3}[^\s<>"'`(){}\[\]^|/\\][^\s<>"'`(){}\[\]^|]*|mailto:[^\s<>"'`(){}\[\]\\]+|www\d{0,3}[.．。｡][^\s<>"'`(){}\[\]\\^|/?#:.．。｡]+(?:[.．。｡][^\s<>"'`(){}\[\]\\^|/?#:.．。｡]+)+(?:[/?#:][^\s<>"'`(){}\[\]\\^|]*)?)"#,
    )
    .ok()
});

/// A host written without a scheme or `www.` (`cheap-meds.example/order`), as SpamAssassin
/// reads one in text: letters, digits, `.`, `_`, `-`, a dot and a top-level label, then an
/// optional port and path. Clients do not link it; spam writes it so that no link filter
/// sees it, and SpamAssassin lists it for `uri` rules and URI blocklists alike. No counted
/// repetition and no case folding: those made the pattern too big for the lazy DFA, and a
/// 4 KB text took 3 ms in the slow engine (relay bench, 1,422 → 344 msg/s); SpamAssassin's
/// bounds on the host and path lengths are checked on the match.
static BARE_DOMAIN: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r#"[A-Za-z0-9][A-Za-z0-9._-]*\.[A-Za-z][A-Za-z0-9-]*\.?(?::[0-9]+)?(?:/[^\s<>"`}\]{\[|\x{1b}\x{a0}]+)?"#,
    )
    .ok()
});

/// Longest host SpamAssassin reads bare.
const MAX_BARE_HOST: usize = 252;
/// Longest path after a bare host SpamAssassin reads (its `/` and 2,048 more).
const MAX_BARE_PATH: usize = 2049;

/// Where a bare host may start: the text's start, or after a blank or one of the marks
/// SpamAssassin takes to start one.
fn starts_a_bare_domain(text: &str, start: usize) -> bool {
    text[..start]
        .chars()
        .next_back()
        .is_none_or(starts_bare_after)
}

/// A blank or one of the marks after which SpamAssassin starts a bare host.
fn starts_bare_after(c: char) -> bool {
    c.is_whitespace() || c == '\u{1b}' || "!\"#$&'()*+,/:;<=>?@[\\]^`{|}~".contains(c)
}

/// Whether a bare host ends at `end` of `text`: at the text's end, a blank, or a mark that
/// ends a link.
fn ends_a_bare_domain(text: &str, end: usize) -> bool {
    text[end..]
        .chars()
        .next()
        .is_none_or(|c| c.is_whitespace() || c == '\u{1b}' || "><\"`}]{[|".contains(c))
}

/// Whether a bare match is a host SpamAssassin reads: within its bounds, and its last
/// label a known top-level domain (`report.pdf` and `node.js` are file names).
fn is_bare_host(found: &str) -> bool {
    let (host, path) = found.split_at(found.find('/').unwrap_or(found.len()));
    let host = host.split(':').next().unwrap_or(host).trim_end_matches('.');
    let Some((_, tld)) = host.rsplit_once('.') else {
        return false;
    };
    host.len() <= MAX_BARE_HOST
        && path.len() <= MAX_BARE_PATH
        && psl::suffix(tld.to_ascii_lowercase().as_bytes()).is_some_and(|s| s.is_known())
}

/// Searches started again inside a rejected match, per text: SpamAssassin may find a host
/// after any start mark inside one (`notes.txt/cheap-meds.biz`); the bound keeps a text of
/// such marks from being read over and over.
const MAX_BARE_RESTARTS: usize = 32;

/// The bare hosts (with port and path) written in `text` as SpamAssassin lists them, none
/// inside a link or an address (read as those), at most [`MAX_COLLECTED`].
fn bare_domains(text: &str) -> Vec<&str> {
    let (Some(bare), Some(links), Some(addresses)) = (
        BARE_DOMAIN.as_ref(),
        TEXT_URI.as_ref(),
        TEXT_ADDRESS.as_ref(),
    ) else {
        return Vec::new();
    };
    // The links and addresses, looked for once a bare host is found, as sorted spans that
    // do not overlap: matches come in order, so one index walks them (review: every host
    // against every link was quadratic in a 500 KB flowed part).
    let mut taken: Option<Vec<(usize, usize)>> = None;
    let mut next_taken = 0;
    let mut found = Vec::new();
    let mut at = 0;
    let mut restarts = 0;
    while found.len() < MAX_COLLECTED {
        let Some(m) = bare.find_at(text, at) else {
            break;
        };
        let fits = is_bare_host(m.as_str())
            && starts_a_bare_domain(text, m.start())
            && ends_a_bare_domain(text, m.end());
        if !fits {
            at = match restart_inside(text, m.start(), m.end()) {
                Some(after) if restarts < MAX_BARE_RESTARTS => {
                    restarts += 1;
                    after
                }
                _ => m.end(),
            };
            continue;
        }
        let spans = taken.get_or_insert_with(|| merged_spans(links, addresses, text));
        while spans
            .get(next_taken)
            .is_some_and(|&(_, end)| end <= m.start())
        {
            next_taken += 1;
        }
        if spans
            .get(next_taken)
            .is_none_or(|&(start, _)| start >= m.end())
        {
            found.push(m.as_str());
        }
        at = m.end();
    }
    found
}

/// Where to search again inside a rejected match `start..end`: after its first start mark
/// past `start` (`/` in `notes.txt/cheap-meds.biz`), where SpamAssassin's scan would find
/// the next host.
fn restart_inside(text: &str, start: usize, end: usize) -> Option<usize> {
    // `start` holds an ASCII letter or digit, so one byte on is a character boundary.
    let inside = text.get(start + 1..end)?;
    inside
        .char_indices()
        .find(|&(_, c)| starts_bare_after(c))
        .map(|(i, c)| start + 1 + i + c.len_utf8())
}

/// The spans of the links and addresses in `text`, sorted, overlapping ones merged.
fn merged_spans(links: &Regex, addresses: &Regex, text: &str) -> Vec<(usize, usize)> {
    let mut spans: Vec<(usize, usize)> = links
        .find_iter(text)
        .chain(addresses.find_iter(text))
        .map(|m| (m.start(), m.end()))
        .collect();
    spans.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::with_capacity(spans.len());
    for (start, end) in spans {
        match merged.last_mut() {
            Some(last) if start < last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged
}

/// A link between `<…>` or `"…"` on one line (at most 500 characters).
static BRACKETED_URI: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r#"(?i)[<"]((?:https?://|ftp://|mailto:|www\.)[^<>"\r\n]{1,500})[>"]"#).ok()
});

static TEXT_ADDRESS: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"(?i)(?-u:\b)[a-z0-9][a-z0-9._%+=\-]{0,63}@[a-z0-9][a-z0-9\-]*(?:\.[a-z0-9\-]+)*\.[a-z]{2,}(?-u:\b)")
        .ok()
});

static HTML_ATTR: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)\b(?:href|src|action|formaction|background|cite|longdesc)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))"#,
    )
    .ok()
});
