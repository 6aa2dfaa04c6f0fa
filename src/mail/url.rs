//! A link's parts read as a browser reads them (the WHATWG URL standard's parsing of
//! absolute URLs), so every check that looks at a link's host sees the host the reader's
//! browser would open: spam hides its host behind the forms browsers forgive (`http:\\host`,
//! `https:host`, a tab inside the name, `good.example\@spam.example`).

/// Schemes a browser parses as "special": `\` is `/`, and any run of slashes may follow.
const SPECIAL: [&str; 5] = ["http", "https", "ftp", "ws", "wss"];

/// The parts of an absolute URL with an authority, as written (only the scheme is folded
/// to lower case; percent-escapes and character references are left to the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The scheme, lower case: `http`.
    pub scheme: String,
    /// What precedes the last `@` of the authority, if anything does.
    pub userinfo: Option<String>,
    /// The host: a name, an IPv4 form, or an IPv6 literal with its brackets.
    pub host: String,
    /// What follows the host's `:`, if there is one (not necessarily digits).
    pub port: Option<String>,
    /// Path, query and fragment, from the first character after the authority.
    pub tail: String,
}

impl Link {
    /// Splits `uri`; `None` for a relative reference or a URL without an authority
    /// (`mailto:`, `data:`, `news:group`).
    pub fn parse(uri: &str) -> Option<Link> {
        // A browser drops ASCII tabs and newlines wherever they are, and trims C0 controls
        // and spaces at both ends.
        let uri: String = uri
            .trim_matches(|c: char| c <= ' ')
            .chars()
            .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
            .collect();
        let (scheme, rest) = uri.split_once(':')?;
        let mut scheme_chars = scheme.chars();
        let scheme_ok = scheme_chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && scheme_chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if !scheme_ok {
            return None;
        }
        let scheme = scheme.to_ascii_lowercase();
        let (authority, tail) = if SPECIAL.contains(&scheme.as_str()) {
            let rest = rest.trim_start_matches(['/', '\\']);
            rest.split_at(rest.find(['/', '\\', '?', '#']).unwrap_or(rest.len()))
        } else {
            let rest = rest.strip_prefix("//")?;
            rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()))
        };
        let (userinfo, host_port) = match authority.rsplit_once('@') {
            Some((user, host_port)) => (Some(user.to_string()), host_port),
            None => (None, authority),
        };
        let port_at = if host_port.starts_with('[') {
            host_port.find(']').map(|end| end + 1)
        } else {
            host_port.find(':')
        };
        let (host, port) = match port_at {
            Some(at) if at < host_port.len() => {
                let (host, port) = host_port.split_at(at);
                (host, port.strip_prefix(':').map(str::to_string))
            }
            _ => (host_port, None),
        };
        Some(Link {
            scheme,
            userinfo,
            host: host.to_string(),
            port,
            tail: tail.to_string(),
        })
    }

    /// Whether the scheme is one a browser opens as a web (or FTP) address.
    pub fn is_web(&self) -> bool {
        matches!(self.scheme.as_str(), "http" | "https" | "ftp")
    }
}

/// The address of a `mailto:` link (scheme in any case), without its `?` header fields;
/// `None` for any other link.
pub fn mailto_address(uri: &str) -> Option<&str> {
    let (scheme, address) = uri.trim().split_once(':')?;
    if !scheme.eq_ignore_ascii_case("mailto") {
        return None;
    }
    address.split('?').next()
}

/// A host past ASCII as a browser opens it (UTS #46): full-width letters, ideographic full
/// stops and invisible characters mapped, an international name in its ASCII form; `None`
/// for an ASCII host (nothing to map) or one that does not map (link evasion probe:
/// `spam。example` and `ｓpam.example` were read as written).
pub fn mapped_host(host: &str) -> Option<String> {
    if host.is_ascii() {
        return None;
    }
    idna::domain_to_ascii(host).ok()
}

/// The IP address a browser connects to for `host` (a [`Link`]'s host, percent-escapes
/// and character references already decoded), or `None` for a name. IPv4 in every form
/// the WHATWG URL standard reads: one to four parts, each decimal, octal (a leading `0`)
/// or hex (`0x`), the last filling the bytes left (`http://3232235777/` and
/// `http://0xc0.168.1/` both open 192.168.0.1); an IPv6 literal in brackets.
pub fn host_address(host: &str) -> Option<std::net::IpAddr> {
    if let Some(literal) = host.strip_prefix('[') {
        let literal = literal.strip_suffix(']')?;
        return literal.parse::<std::net::Ipv6Addr>().ok().map(Into::into);
    }
    // Full-width digits and ideographic dots are mapped first, as a browser maps them.
    let mapped = mapped_host(host);
    let host = mapped.as_deref().unwrap_or(host);
    let host = host.strip_suffix('.').unwrap_or(host);
    let parts: Vec<&str> = host.split('.').collect();
    if parts.len() > 4 {
        return None;
    }
    let mut numbers = Vec::with_capacity(parts.len());
    for part in &parts {
        numbers.push(ipv4_number(part)?);
    }
    let (last, leading) = numbers.split_last()?;
    if leading.iter().any(|&n| n > 255) {
        return None;
    }
    let last_bits = 8 * (5 - parts.len() as u32);
    if last_bits < 32 && *last >= 1u64 << last_bits {
        return None;
    }
    if *last > u64::from(u32::MAX) {
        return None;
    }
    let mut address = *last;
    for (i, n) in leading.iter().enumerate() {
        address += n << (8 * (3 - i));
    }
    let address = u32::try_from(address).ok()?;
    Some(std::net::Ipv4Addr::from(address).into())
}

/// One part of an IPv4 host (WHATWG URL's "IPv4 number"): `0x`/`0X` hex (nothing after it
/// reads 0), a leading `0` octal, else decimal; `None` for anything else or past 2³².
fn ipv4_number(part: &str) -> Option<u64> {
    let (digits, radix) =
        if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
            (hex, 16)
        } else if part.len() > 1 && part.starts_with('0') {
            (&part[1..], 8)
        } else {
            (part, 10)
        };
    if digits.is_empty() {
        return (radix == 16).then_some(0);
    }
    // Long runs of leading zeros are legal; the value, not the text, is bounded.
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return Some(0);
    }
    if digits.len() > 32 || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix)
        .ok()
        .filter(|&n| n <= u64::from(u32::MAX))
}

/// The web links written inside `rest` (a link's path and query): each `http:` or
/// `https:` URL, up to the `&` or `#` that ends it, when it holds a dot. A redirector's
/// targets, which the `uri` list and the classifier's URL tokens both follow (link evasion
/// probe: a decoy target ahead of the real one hid it).
///
/// At most [`MAX_TARGET_STARTS`] starts are looked at, each at most [`MAX_TARGET_LEN`]
/// bytes long: the targets of `?http:.http:.…` overlap, and read whole each, a link of
/// 234 KB held 4.5 GB of copies (review).
pub fn redirect_targets(rest: &str) -> impl Iterator<Item = &str> {
    let lower = rest.to_ascii_lowercase();
    let starts: Vec<usize> = lower
        .match_indices("http")
        .map(|(at, _)| at)
        .filter(|&at| lower[at + 4..].starts_with(':') || lower[at + 4..].starts_with("s:"))
        .take(MAX_TARGET_STARTS)
        .collect();
    starts.into_iter().filter_map(move |start| {
        let target = &rest[start..];
        let target = &target[..target.floor_char_boundary(MAX_TARGET_LEN)];
        let target = &target[..target.find(['&', '#']).unwrap_or(target.len())];
        target.contains('.').then_some(target)
    })
}

/// Starts of redirect targets looked at in one link (see [`redirect_targets`]).
const MAX_TARGET_STARTS: usize = 16;
/// Longest redirect target read (a browser's address bar takes about as much).
const MAX_TARGET_LEN: usize = 2048;

/// At most `n` of `items`: the first half of them (rounded up) and the last half, in
/// order. The link that carries a pitch comes first or last, so links padded at one end,
/// decoys placed before it, do not use up a limit and hide it. Reads `items` to the end,
/// keeping at most `n`.
pub fn both_ends<T>(items: impl IntoIterator<Item = T>, n: usize) -> Vec<T> {
    let mut kept = BothEnds::new(n);
    for item in items {
        kept.push(item);
    }
    kept.into_vec()
}

/// A collection that keeps at most `n` of the items pushed: the first half (rounded up)
/// and the latest half, as [`both_ends`] keeps them, for a collector that must know what
/// it no longer holds.
#[derive(Debug)]
pub struct BothEnds<T> {
    head: Vec<T>,
    tail: std::collections::VecDeque<T>,
    head_len: usize,
    tail_len: usize,
}

impl<T> BothEnds<T> {
    /// An empty collection of at most `n` items.
    pub fn new(n: usize) -> BothEnds<T> {
        BothEnds {
            head: Vec::new(),
            tail: std::collections::VecDeque::new(),
            head_len: n - n / 2,
            tail_len: n / 2,
        }
    }

    /// Keeps `item`; returns the item this pushes out (the oldest of the latest half, or
    /// `item` itself when there is no room for any).
    pub fn push(&mut self, item: T) -> Option<T> {
        if self.head.len() < self.head_len {
            self.head.push(item);
            return None;
        }
        if self.tail_len == 0 {
            return Some(item);
        }
        let gone = (self.tail.len() == self.tail_len)
            .then(|| self.tail.pop_front())
            .flatten();
        self.tail.push_back(item);
        gone
    }

    /// The items kept, in order.
    pub fn into_vec(mut self) -> Vec<T> {
        self.head.extend(self.tail);
        self.head
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_ends_says_what_it_no_longer_holds() {
        let mut kept = BothEnds::new(4);
        let gone: Vec<Option<u32>> = (1..=6).map(|n| kept.push(n)).collect();
        assert_eq!(gone, [None, None, None, None, Some(3), Some(4)]);
        assert_eq!(kept.into_vec(), [1, 2, 5, 6]);
        let mut none = BothEnds::new(0);
        assert_eq!(none.push(1), Some(1));
        assert!(none.into_vec().is_empty());
    }

    /// Regression (review): the targets of `?http:.http:.…` overlap, and a long link's
    /// were each read whole (4.5 GB of copies for a link of 234 KB).
    #[test]
    fn redirect_targets_are_bounded() {
        let link = format!("?{}", "http:.".repeat(40_000));
        let targets: Vec<&str> = redirect_targets(&link).collect();
        assert_eq!(targets.len(), MAX_TARGET_STARTS);
        assert!(targets.iter().all(|t| t.len() <= MAX_TARGET_LEN));
        let decoy = "?sa=http://decoy.test/&q=https://spam.test/x#f";
        assert_eq!(
            redirect_targets(decoy).collect::<Vec<_>>(),
            ["http://decoy.test/", "https://spam.test/x"]
        );
    }

    /// URIBL asks IP lists about a link's address in the form a browser reads it.
    #[test]
    fn host_addresses_are_read_as_a_browser_reads_them() {
        let v4 = |a, b, c, d| Some(std::net::IpAddr::from([a, b, c, d]));
        assert_eq!(host_address("198.51.100.7"), v4(198, 51, 100, 7));
        assert_eq!(host_address("198.51.100.7."), v4(198, 51, 100, 7));
        assert_eq!(host_address("3325256711"), v4(198, 51, 100, 7));
        assert_eq!(host_address("0xc6336407"), v4(198, 51, 100, 7));
        assert_eq!(host_address("0xC6.0x33.0x64.07"), v4(198, 51, 100, 7));
        assert_eq!(host_address("0306.063.0144.07"), v4(198, 51, 100, 7));
        assert_eq!(host_address("198.51.25607"), v4(198, 51, 100, 7));
        assert_eq!(host_address("198.3367943"), v4(198, 51, 100, 7));
        assert_eq!(host_address("00000000198.51.100.7"), None);
        assert_eq!(host_address("0000000000306.51.100.7"), v4(198, 51, 100, 7));
        assert_eq!(host_address("0x.0x.0x.0x1"), v4(0, 0, 0, 1));
        assert_eq!(
            host_address("１９８．５１．１００．７"),
            v4(198, 51, 100, 7)
        );
        assert_eq!(
            host_address("[2001:db8::1]"),
            "2001:db8::1".parse::<std::net::IpAddr>().ok()
        );
        for name in [
            "spam.example",
            "1.2.3.4.5",
            "256.1.1.1",
            "1.2.3.256",
            "1.2.65536",
            "4294967296",
            "09.1.1.1",
            "1.2.3.4x",
            "",
            "[::1",
            "[spam.example]",
        ] {
            assert_eq!(host_address(name), None, "{name:?}");
        }
    }

    #[test]
    fn both_ends_keeps_the_first_and_the_last_halves() {
        assert_eq!(both_ends(0..10, 4), vec![0, 1, 8, 9]);
        assert_eq!(both_ends(0..3, 4), vec![0, 1, 2]);
        assert_eq!(both_ends(0..5, 5), vec![0, 1, 2, 3, 4]);
        assert_eq!(both_ends(0..9, 5), vec![0, 1, 2, 7, 8]);
        assert_eq!(both_ends(0..9, 1), vec![0]);
        assert_eq!(both_ends(0..9, 0), Vec::<i32>::new());
    }

    fn link(scheme: &str, user: Option<&str>, host: &str, port: Option<&str>, tail: &str) -> Link {
        Link {
            scheme: scheme.into(),
            userinfo: user.map(str::to_string),
            host: host.into(),
            port: port.map(str::to_string),
            tail: tail.into(),
        }
    }

    #[test]
    fn plain_urls_split_into_their_parts() {
        assert_eq!(
            Link::parse("HTTP://user:pw@Example.test:8080/a/b?q=1#f"),
            Some(link(
                "http",
                Some("user:pw"),
                "Example.test",
                Some("8080"),
                "/a/b?q=1#f"
            ))
        );
        assert_eq!(
            Link::parse("https://[2001:db8::1]:443/x"),
            Some(link("https", None, "[2001:db8::1]", Some("443"), "/x"))
        );
        assert_eq!(
            Link::parse("ftp://host.test"),
            Some(link("ftp", None, "host.test", None, ""))
        );
    }

    #[test]
    fn the_forms_a_browser_forgives_give_the_host_it_opens() {
        for uri in [
            "http://spam.example\\@good.example/",
            "http:\\\\spam.example\\path",
            "http:/spam.example/",
            "https:spam.example/",
            "http://spa\nm.example/",
            "http://spam\t.example/",
            "  http://spam.example/  ",
            "http:///spam.example",
        ] {
            let link = Link::parse(uri);
            assert_eq!(
                link.map(|l| l.host).as_deref(),
                Some("spam.example"),
                "{uri:?}"
            );
        }
        // The last `@` ends the user information.
        assert_eq!(
            Link::parse("http://good.example@x@spam.example/").map(|l| l.host),
            Some("spam.example".to_string())
        );
    }

    #[test]
    fn links_without_an_authority_have_no_parts() {
        for uri in [
            "mailto:a@b.test",
            "/relative/path",
            "www.example.test/x",
            "data:,x",
        ] {
            assert_eq!(Link::parse(uri), None, "{uri:?}");
        }
        assert_eq!(
            mailto_address(" MailTo:a@b.test?subject=x"),
            Some("a@b.test")
        );
        assert_eq!(mailto_address("http://b.test/"), None);
        // A non-special scheme has an authority only after `//`, and keeps `\` in its path.
        let link = Link::parse("foo://host.test\\x/y");
        assert_eq!(link.as_ref().map(|l| l.host.as_str()), Some("host.test\\x"));
        assert!(!link.is_some_and(|l| l.is_web()));
    }
}
