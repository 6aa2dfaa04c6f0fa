//! Where a path or URL in a file points, as Windows reads it: shared by the checks of
//! Internet shortcuts and of the links Office documents follow on opening.

/// A file share a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Share<'p> {
    /// The host (may be empty for a bare `\\`).
    pub host: &'p str,
    /// What follows the host.
    pub rest: &'p str,
}

/// The share a path names: a UNC path (`\\host\share`, also `//host/share`), or a `file:`
/// URL naming a host other than this one (`file://host/share`, `file:////host/share`;
/// `file:///C:/` and `file://localhost/` are local).
pub(super) fn share(path: &str) -> Option<Share<'_>> {
    let path = path.trim_start_matches(|c: char| c.is_whitespace() || c.is_control());
    if is_unc(path) {
        return Some(split_host(path));
    }
    if scheme_of(path).as_deref() != Some("file") {
        return None;
    }
    // Any run of slashes: Windows reads `file:////host/share` as `\\host\share`.
    let after = &path["file:".len()..];
    let rest = after.trim_start_matches(['/', '\\']);
    if after.len() - rest.len() < 2 {
        return None;
    }
    let share = split_host(rest);
    let drive = share.host.len() == 2 && share.host.ends_with([':', '|']);
    let local = share.host.is_empty() || drive || share.host.eq_ignore_ascii_case("localhost");
    (!local).then_some(share)
}

/// The host and what follows it, past any run of slashes of either kind.
fn split_host(path: &str) -> Share<'_> {
    let path = path.trim_start_matches(['/', '\\']);
    let end = path.find(['/', '\\']).unwrap_or(path.len());
    Share {
        host: &path[..end],
        rest: &path[end..],
    }
}

/// Two slashes of either kind in front: Windows opens `//host/share` as it opens
/// `\\host\share`.
pub(super) fn is_unc(path: &str) -> bool {
    let mut chars = path.chars();
    matches!(
        (chars.next(), chars.next()),
        (Some('\\' | '/'), Some('\\' | '/'))
    )
}

/// The scheme of a URL, lower-case: letters, digits, `+`, `-`, `.` before the first `:`,
/// starting with a letter (a drive letter reads as a one-letter scheme).
pub(super) fn scheme_of(target: &str) -> Option<String> {
    let (scheme, _) = target.split_once(':')?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    let valid = first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then(|| scheme.to_ascii_lowercase())
}

/// Whether a host is an IP address in any form a URL parser takes: dotted or IPv6, and
/// the forms that hide an IPv4 address from a reader (`3325256711`, `0xC6336407`,
/// `0306.0063.0144.07`, `198.51.25607`), read as the links of mail are
/// ([`crate::mail::url::host_address`]).
pub(super) fn is_address(host: &str) -> bool {
    host.parse::<std::net::IpAddr>().is_ok() || crate::mail::url::host_address(host).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_known_in_every_form_windows_takes() {
        for address in [
            "198.51.100.7",
            "2001:db8::1",
            "3325256711",
            "0xC6336407",
            "0306.0063.0144.07",
            "198.51.25607",
            "0xc6.51.100.7",
        ] {
            assert!(is_address(address), "{address}");
        }
        for name in [
            "contoso.sharepoint.com",
            "fileserver",
            "1.2.3.4.5",
            "4294967296",
            "256.1.1.1",
            "",
            "08.1.1.1",
        ] {
            assert!(!is_address(name), "{name}");
        }
    }

    #[test]
    fn shares_are_read_as_windows_reads_them() {
        let host = |p: &str| share(p).map(|s| s.host.to_string());
        assert_eq!(host("\\\\srv\\share\\a.exe").as_deref(), Some("srv"));
        assert_eq!(host("//srv/share").as_deref(), Some("srv"));
        assert_eq!(host("file://srv/share").as_deref(), Some("srv"));
        assert_eq!(
            host("file:////203.0.113.7/s").as_deref(),
            Some("203.0.113.7")
        );
        assert_eq!(host("file:///\\\\srv\\s").as_deref(), Some("srv"));
        for local in [
            "file:///C:/x",
            "file://localhost/x",
            "file:/srv/x",
            "C:\\x",
            "x.txt",
        ] {
            assert_eq!(share(local), None, "{local}");
        }
        assert_eq!(scheme_of("HTTP://x").as_deref(), Some("http"));
        assert_eq!(scheme_of("1x:y"), None);
    }
}
