//! The forms a link is listed under for `uri` rules, as SpamAssassin's
//! `uri_list_canonicalize` lists them: senders disguise a link in ways a mail reader
//! forgives (backslashes, one slash after the scheme, escapes, a query with no path, a
//! default port), and a rule written for the plain form must still see it.

use super::html_text::dotted_ip_form;
use crate::mail::url::Link;

/// Redirections followed inside one link (`?u=http://...` whose target redirects again).
/// Every step is a few passes over the link, so a link of nested redirections costs a
/// bounded multiple of its length.
const MAX_REDIRECT_DEPTH: usize = 3;
/// Targets taken from the query of the link itself (one from each target's own): a decoy
/// ahead of the real one (`?sa=http://decoy.test&q=http://spam.test`) hid it from the
/// rules and the URIBL (link evasion probe).
const MAX_REDIRECT_TARGETS: usize = 4;

/// Every form of `uri` (already trimmed), itself first: a `www.` host without a scheme
/// is listed as `http://` only (the bare form made `/^[^:A-Z]+[A-Z]/` read a host as a
/// path).
pub(super) fn uri_forms(uri: &str) -> Vec<String> {
    let mut forms = Vec::new();
    add_forms(uri, 0, &mut forms);
    forms
}

/// A link as the list takes it: a `www.` host without a scheme as `http://`.
pub(super) fn as_listed(uri: &str) -> String {
    if uri.to_ascii_lowercase().starts_with("www") {
        format!("http://{uri}")
    } else {
        uri.to_string()
    }
}

fn add_forms(uri: &str, depth: usize, forms: &mut Vec<String>) {
    let first = as_listed(uri);
    push(forms, first.clone());
    if is_mail(&first) {
        mail_forms(&first, forms);
        return;
    }
    let unescaped = unescaped(&first);
    let cleaned = cleaned(&first);
    push(forms, unescaped.clone());
    push(forms, cleaned.clone());
    web_forms(&cleaned, forms);
    if let Some(dotted) = dotted_ip_form(&cleaned) {
        push(forms, dotted);
    }
    if depth < MAX_REDIRECT_DEPTH {
        let most = if depth == 0 { MAX_REDIRECT_TARGETS } else { 1 };
        for target in redirect_targets(&cleaned).take(most) {
            if !forms.iter().any(|f| f == target) {
                add_forms(target, depth + 1, forms);
            }
        }
    }
}

/// A redirector's targets: the web links after the host of a web link (SpamAssassin's
/// generic redirector pattern takes the first only).
fn redirect_targets(uri: &str) -> impl Iterator<Item = &str> {
    crate::mail::url::redirect_targets(web_host_end(uri).map_or("", |end| &uri[end..]))
}

fn unescaped(uri: &str) -> String {
    percent_encoding::percent_decode_str(uri)
        .decode_utf8_lossy()
        .into_owned()
}

/// Adds `form` once. A form with a line break decoded into it (`%0A`) is left out: the
/// `uri` list is one link per line, and `^`/`$` matched inside that link (review:
/// `https://x.test/get.exe%0Anotes` hit `URI_EXECUTABLE`; SpamAssassin keeps control
/// characters encoded and matches each link on its own).
fn push(forms: &mut Vec<String>, form: String) {
    if form.contains(['\r', '\n']) {
        return;
    }
    if !form.is_empty() && !forms.contains(&form) {
        forms.push(form);
    }
}

fn is_mail(uri: &str) -> bool {
    let lower = uri.to_ascii_lowercase();
    lower.starts_with("mailto:") || uri.split(':').next().is_some_and(|s| s.contains('@'))
}

/// A mail link without what follows the address (`?subject=`, `&...`, `%20` padding).
fn mail_forms(uri: &str, forms: &mut Vec<String>) {
    if let Some(at) = uri.find('@').filter(|&at| at > 0) {
        let after = &uri[at + 1..];
        // Cut at the query, and at a `&` before it (Outlook links `a@b.test&x` as a@b.test).
        for cut in [
            after.find('?'),
            after
                .find(['?', '&'])
                .filter(|&c| after.as_bytes()[c] == b'&'),
        ]
        .into_iter()
        .flatten()
        .filter(|&c| c > 0)
        {
            push(forms, uri[..at + 1 + cut].to_string());
        }
    }
    if uri.contains("%20") {
        let bare = if uri.to_ascii_lowercase().starts_with("mailto:") {
            &uri["mailto:".len()..]
        } else {
            uri
        };
        let bare = bare.trim_start_matches("%20");
        if let Some(at) = bare.find('@').filter(|&at| at > 0) {
            let end = bare[at + 1..]
                .find(['?', '&', '%'])
                .map_or(bare.len(), |e| at + 1 + e);
            if end > at + 1 {
                push(forms, format!("mailto:{}", &bare[..end]));
            }
        }
    }
}

/// The link as a browser reads it: backslashes as slashes, `http:` followed by the two
/// slashes it may lack, a scheme where none is written, a `/` before a query or fragment
/// that follows the host, and printable characters written as numeric references decoded.
fn cleaned(uri: &str) -> String {
    let mut n = uri.replace('\\', "/");
    let lower = n.to_ascii_lowercase();
    for scheme in ["https:", "http:"] {
        if lower.starts_with(scheme) {
            let rest = n[scheme.len()..].trim_start_matches('/');
            n = format!("{}//{rest}", &n[..scheme.len()]);
            break;
        }
    }
    n = unescaped(&n);
    if !has_scheme(&n) {
        n = if n.starts_with("//") {
            // Scheme-relative: the page's scheme, which webmail makes `https` or `http`
            // (link evasion probe: read as `http:////host`, no host-anchored rule saw it).
            format!("http:{n}")
        } else if n.starts_with("ftp.") {
            format!("ftp://{n}")
        } else {
            format!("http://{n}")
        };
    }
    // References first: the `#` of `&#46;` starts no fragment.
    let mut n = printable_references_decoded(&n);
    if let Some(host_end) = web_host_end(&n) {
        if matches!(n.as_bytes().get(host_end), Some(b'?' | b'#')) {
            n.insert(host_end, '/');
        }
    }
    n
}

fn has_scheme(uri: &str) -> bool {
    match uri.find(':') {
        Some(colon) if colon > 0 => uri[..colon]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        _ => false,
    }
}

/// Where the host of an `http://` or `https://` link ends.
fn web_host_end(uri: &str) -> Option<usize> {
    let lower = uri.to_ascii_lowercase();
    let start = ["http://", "https://"]
        .iter()
        .find(|s| lower.starts_with(**s))?
        .len();
    let end = uri[start..]
        .find(['/', '?', '#'])
        .map_or(uri.len(), |e| start + e);
    (end > start).then_some(end)
}

/// `&#46;`, `&#x2e;` and the other numeric references of printable ASCII, and the
/// references of the Unicode full stops, decoded; anything else left as written.
fn printable_references_decoded(uri: &str) -> String {
    let mut out = String::with_capacity(uri.len());
    let mut rest = uri;
    while let Some(amp) = rest.find("&#") {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 2..];
        let Some(semi) = after.find(';') else {
            out.push_str(&rest[amp..]);
            return out;
        };
        let code = &after[..semi];
        let value = match code.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok(),
            None => code.parse().ok(),
        };
        match value {
            Some(v @ 0x21..=0x7e) => out.push(char::from(v as u8)),
            Some(0x3002 | 0xff0e | 0xff61) => out.push('.'),
            _ => out.push_str(&rest[amp..amp + 2 + semi + 1]),
        }
        rest = &after[semi + 1..];
    }
    out.push_str(rest);
    out
}

/// The forms of a web link without its default port, control characters in its host, or
/// punctuation a sentence left at the end of its host (the user part, which the browser
/// does not open, left out of them).
fn web_forms(uri: &str, forms: &mut Vec<String>) {
    let Some(link) = Link::parse(uri).filter(|l| matches!(l.scheme.as_str(), "http" | "https"))
    else {
        return;
    };
    let (host, tail) = (link.host.as_str(), link.tail.as_str());
    let proto = format!("{}://", link.scheme);
    let port = link
        .port
        .as_deref()
        .map(|p| format!(":{p}"))
        .unwrap_or_default();
    let default_port = if link.scheme == "http" { "80" } else { "443" };
    if link.port.as_deref() == Some(default_port) {
        push(forms, format!("{proto}{host}{tail}"));
    }
    let visible: String = host.chars().filter(|c| *c > ' ').collect();
    if visible != host {
        push(forms, format!("{proto}{visible}{port}{tail}"));
    }
    if let Some(mapped) = crate::mail::url::mapped_host(host) {
        push(forms, format!("{proto}{mapped}{port}{tail}"));
    }
    let trimmed = host.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
    if trimmed != host && !trimmed.is_empty() {
        push(forms, format!("{proto}{trimmed}{port}{tail}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has(uri: &str, form: &str) -> bool {
        let forms = uri_forms(uri);
        assert!(!forms.is_empty(), "{uri}");
        forms.iter().any(|f| f == form)
    }

    #[test]
    fn disguised_links_are_listed_in_their_plain_form() {
        assert!(has("http:\\\\evil.test\\x", "http://evil.test/x"));
        assert!(has("http:/one.test/", "http://one.test/"));
        assert!(has("http:two.test", "http://two.test"));
        assert!(has("http://host.test?id=3", "http://host.test/?id=3"));
        assert!(has("http://host.test:80/p", "http://host.test/p"));
        assert!(has("https://host.test:443/p", "https://host.test/p"));
        assert!(!has("http://host.test:8080/p", "http://host.test80/p"));
        assert!(has("http://evil&#x2e;test/", "http://evil.test/"));
        assert!(has("http://evil&#46;test/", "http://evil.test/"));
        assert!(has("http://evil&#65294;test/", "http://evil.test/"));
        assert!(has("http://%65vil.test/", "http://evil.test/"));
        assert!(has("ftp.files.test/a", "ftp://ftp.files.test/a"));
        assert!(has("www.shop.test", "http://www.shop.test"));
        assert!(!has("www.shop.test", "www.shop.test"));
    }

    /// Regression (review): `%0A` decoded into a form put a line break inside one link of
    /// the `uri` list, where `$` matched: `get.exe%0Anotes` read as a link ending `.exe`.
    #[test]
    fn no_form_holds_a_line_break() {
        let forms = uri_forms("https://x.test/get.exe%0Anotes");
        assert!(forms.iter().all(|f| !f.contains(['\r', '\n'])), "{forms:?}");
        assert!(forms.iter().any(|f| f == "https://x.test/get.exe%0Anotes"));
    }

    #[test]
    fn redirect_targets_are_listed_with_their_own_forms() {
        let forms = uri_forms("http://r.test/?u=http:/evil.test?x=1&y=2");
        assert!(
            forms.iter().any(|f| f == "http:/evil.test?x=1"),
            "{forms:?}"
        );
        assert!(
            forms.iter().any(|f| f == "http://evil.test/?x=1"),
            "{forms:?}"
        );
    }

    /// Regression (link evasion probe): only the first target of a redirector was
    /// listed, a scheme-relative link read `http:////host`, and a host in Unicode forms
    /// a browser maps was listed only as written.
    #[test]
    fn links_are_listed_as_a_browser_follows_them() {
        let forms =
            uri_forms("https://www.google.test/url?sa=http://decoy.test/&q=http://spam.test/");
        assert!(forms.iter().any(|f| f == "http://decoy.test/"), "{forms:?}");
        assert!(forms.iter().any(|f| f == "http://spam.test/"), "{forms:?}");
        let forms =
            uri_forms("https://r.test/?a=http%3A%2F%2Fa.test&b=https%3A%2F%2Fspam.test%2Fx");
        assert!(
            forms.iter().any(|f| f == "https://spam.test/x"),
            "{forms:?}"
        );
        assert!(has("//spam.test/offer", "http://spam.test/offer"));
        assert!(has("http://spam\u{3002}test/x", "http://spam.test/x"));
        assert!(has("http://\u{ff53}pam.test/x", "http://spam.test/x"));
        assert!(has(
            "http://b\u{fc}cher.test/",
            "http://xn--bcher-kva.test/"
        ));
        // Bounded: a link of many targets lists at most a few of them.
        let targets: Vec<String> = (0..50).map(|i| format!("u{i}=http://t{i}.test")).collect();
        let many = format!("http://r.test/?{}", targets.join("&"));
        assert!(uri_forms(&many).len() < 40, "{}", uri_forms(&many).len());
    }

    #[test]
    fn mail_links_are_listed_without_their_parameters() {
        assert!(has("mailto:a@b.test?subject=hi", "mailto:a@b.test"));
        assert!(has("mailto:a@b.test&x=1", "mailto:a@b.test"));
        assert!(has("mailto:%20%20a@b.test", "mailto:a@b.test"));
        assert_eq!(uri_forms("mailto:a@b.test"), vec!["mailto:a@b.test"]);
    }
}
