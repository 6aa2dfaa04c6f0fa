//! PROXY protocol v1 (text) and v2 (binary) headers, as load balancers send them ahead of
//! the client's bytes, so every check, log line and limit sees the real client address.
//! Parsing is over a buffer (the caller peeks the socket and then consumes exactly the
//! header), bounded in size, and never panics on hostile input.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The v2 signature.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Longest v1 line (RFC: 107 bytes with CRLF).
const V1_MAX: usize = 107;
/// Longest v2 header accepted (addresses plus some TLVs).
pub const V2_MAX: usize = 16 + 2048;

/// What a header says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    /// The original client, or `None` for a `LOCAL`/`UNKNOWN` header (a health check of
    /// the balancer itself: use the socket's own address).
    pub source: Option<SocketAddr>,
}

/// Why a header is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// The bytes are not a PROXY protocol header.
    #[error("not a PROXY protocol header")]
    NotProxy,
    /// A header that breaks the protocol.
    #[error("malformed PROXY header: {0}")]
    Malformed(&'static str),
}

/// Parses a header at the start of `buf`: the header and its length, `Ok(None)` when more
/// bytes are needed.
pub fn parse(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    if buf.is_empty() {
        return Ok(None);
    }
    let sig = &V2_SIGNATURE[..buf.len().min(12)];
    if buf.starts_with(sig) {
        return parse_v2(buf);
    }
    let v1 = b"PROXY ";
    if v1.starts_with(&buf[..buf.len().min(v1.len())]) {
        return parse_v1(buf);
    }
    Err(ProxyError::NotProxy)
}

fn parse_v1(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX {
            Err(ProxyError::Malformed("v1 line too long"))
        } else {
            Ok(None)
        };
    };
    if end + 2 > V1_MAX {
        return Err(ProxyError::Malformed("v1 line too long"));
    }
    let line =
        std::str::from_utf8(&buf[..end]).map_err(|_| ProxyError::Malformed("v1 not ASCII"))?;
    let mut words = line.split(' ');
    let _proxy = words.next();
    let family = words
        .next()
        .ok_or(ProxyError::Malformed("v1 without family"))?;
    let header = match family {
        "UNKNOWN" => ProxyHeader { source: None },
        "TCP4" | "TCP6" => {
            let src: IpAddr = words
                .next()
                .and_then(|w| w.parse().ok())
                .ok_or(ProxyError::Malformed("v1 source address"))?;
            let dst: IpAddr = words
                .next()
                .and_then(|w| w.parse().ok())
                .ok_or(ProxyError::Malformed("v1 destination address"))?;
            let sport = port(words.next())?;
            let _dport = port(words.next())?;
            if words.next().is_some() {
                return Err(ProxyError::Malformed("v1 trailing fields"));
            }
            let v4 = family == "TCP4";
            if src.is_ipv4() != v4 || dst.is_ipv4() != v4 {
                return Err(ProxyError::Malformed(
                    "v1 address does not match its family",
                ));
            }
            ProxyHeader {
                source: Some(SocketAddr::new(src, sport)),
            }
        }
        _ => return Err(ProxyError::Malformed("v1 family")),
    };
    Ok(Some((header, end + 2)))
}

/// A v1 port: decimal, no leading zeros, up to 65535.
fn port(word: Option<&str>) -> Result<u16, ProxyError> {
    let w = word.ok_or(ProxyError::Malformed("v1 port missing"))?;
    if w.is_empty() || (w.len() > 1 && w.starts_with('0')) || !w.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(ProxyError::Malformed("v1 port"));
    }
    w.parse().map_err(|_| ProxyError::Malformed("v1 port"))
}

fn parse_v2(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    if buf.len() < 16 {
        return Ok(None);
    }
    let version_command = buf[12];
    if version_command >> 4 != 2 {
        return Err(ProxyError::Malformed("v2 version"));
    }
    let local = match version_command & 0x0f {
        0 => true,
        1 => false,
        _ => return Err(ProxyError::Malformed("v2 command")),
    };
    let family = buf[13];
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let total = 16 + len;
    if total > V2_MAX {
        return Err(ProxyError::Malformed("v2 header too long"));
    }
    if buf.len() < total {
        return Ok(None);
    }
    let body = &buf[16..total];
    if local {
        // LOCAL: the family is ignored, as the specification says.
        return Ok(Some((ProxyHeader { source: None }, total)));
    }
    // UNSPEC, TCP and UDP over IPv4 and IPv6, and unix sockets: the specification has
    // receivers refuse any other byte (review: 0xFF ran as the balancer's own address,
    // counted against its per-address limit).
    if !matches!(family, 0x00 | 0x11 | 0x12 | 0x21 | 0x22 | 0x31 | 0x32) {
        return Err(ProxyError::Malformed("v2 address family"));
    }
    let source = match family {
        // TCP over IPv4, and UDP over IPv4 (the address is what matters).
        0x11 | 0x12 => {
            let a = body
                .get(..12)
                .ok_or(ProxyError::Malformed("v2 IPv4 block short"))?;
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            Some(SocketAddr::new(
                IpAddr::V4(ip),
                u16::from_be_bytes([a[8], a[9]]),
            ))
        }
        0x21 | 0x22 => {
            let a = body
                .get(..36)
                .ok_or(ProxyError::Malformed("v2 IPv6 block short"))?;
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&a[..16]);
            let ip = Ipv6Addr::from(octets);
            Some(SocketAddr::new(
                IpAddr::V6(ip),
                u16::from_be_bytes([a[32], a[33]]),
            ))
        }
        // Unix sockets: two 108-byte paths, and no usable address.
        0x31 | 0x32 => {
            if body.len() < 216 {
                return Err(ProxyError::Malformed("v2 unix block short"));
            }
            None
        }
        // UNSPEC: no address at all.
        _ => None,
    };
    Ok(Some((ProxyHeader { source }, total)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(family);
        h.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
        h.extend_from_slice(body);
        h
    }

    #[test]
    fn v1_tcp4_tcp6_and_unknown() {
        let (h, n) = parse(b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 25\r\nEHLO x\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.source, Some("192.0.2.7:56324".parse().unwrap()));
        assert_eq!(n, 44);
        let (h, _) = parse(b"PROXY TCP6 2001:db8::1 2001:db8::2 1024 25\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.source, Some("[2001:db8::1]:1024".parse().unwrap()));
        let (h, _) = parse(b"PROXY UNKNOWN\r\n").unwrap().unwrap();
        assert_eq!(h.source, None);
        assert_eq!(parse(b"PROXY TCP4 192.0.2.7").unwrap(), None);
        assert_eq!(parse(b"PRO").unwrap(), None);
    }

    #[test]
    fn v1_garbage_is_refused() {
        for bad in [
            &b"PROXY TCP4 192.0.2.7 198.51.100.1 56324\r\n"[..],
            b"PROXY TCP4 2001:db8::1 198.51.100.1 1 2\r\n",
            b"PROXY TCP4 192.0.2.7 198.51.100.1 070 25\r\n",
            b"PROXY TCP4 192.0.2.7 198.51.100.1 99999 25\r\n",
            b"PROXY TCP5 a b 1 2\r\n",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(parse(b"EHLO client\r\n"), Err(ProxyError::NotProxy));
        assert!(parse(&[b'P'; 200][..]).is_err());
        let mut long = b"PROXY ".to_vec();
        long.extend_from_slice(&[b'1'; 150]);
        assert!(parse(&long).is_err());
    }

    #[test]
    fn v2_ipv4_ipv6_local_and_limits() {
        let mut body = vec![192, 0, 2, 7, 198, 51, 100, 1];
        body.extend_from_slice(&4321u16.to_be_bytes());
        body.extend_from_slice(&25u16.to_be_bytes());
        body.extend_from_slice(&[1, 0, 1, 0xff]); // a TLV we ignore
        let h = v2(1, 0x11, &body);
        let (p, n) = parse(&h).unwrap().unwrap();
        assert_eq!(p.source, Some("192.0.2.7:4321".parse().unwrap()));
        assert_eq!(n, h.len());
        assert_eq!(parse(&h[..h.len() - 1]).unwrap(), None);

        let mut b6 = Vec::new();
        b6.extend_from_slice(&"2001:db8::9".parse::<Ipv6Addr>().unwrap().octets());
        b6.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        b6.extend_from_slice(&[0, 80, 0, 25]);
        let (p, _) = parse(&v2(1, 0x21, &b6)).unwrap().unwrap();
        assert_eq!(p.source, Some("[2001:db8::9]:80".parse().unwrap()));

        let (p, _) = parse(&v2(0, 0x00, &[])).unwrap().unwrap();
        assert_eq!(p.source, None);
        assert!(parse(&v2(1, 0x11, &[1, 2, 3])).is_err(), "short IPv4 block");
        let mut wrong = v2(1, 0x11, &body);
        wrong[12] = 0x31;
        assert!(parse(&wrong).is_err(), "version 3");
        let mut huge = v2(1, 0x11, &[]);
        huge[14] = 0xff;
        huge[15] = 0xff;
        assert!(parse(&huge).is_err(), "oversized length");
    }

    /// Regression (review): any family byte outside the four known ones read as "no
    /// address", so the session ran as the balancer itself; the specification has such
    /// headers refused.
    #[test]
    fn undefined_v2_families_and_protocols_are_refused() {
        for family in [0xFF, 0x13, 0x41, 0x10, 0x20, 0x30, 0x01, 0x02, 0x43] {
            assert!(
                matches!(
                    parse(&v2(1, family, &[0; 36])),
                    Err(ProxyError::Malformed(_))
                ),
                "family {family:#04x} taken"
            );
        }
        // A LOCAL header's family is ignored.
        let (p, _) = parse(&v2(0, 0xFF, &[])).unwrap().unwrap();
        assert_eq!(p.source, None);
        // UNSPEC and UNIX are defined: no usable address, as the specification allows.
        for family in [0x00, 0x31, 0x32] {
            let (p, _) = parse(&v2(1, family, &[0; 216])).unwrap().unwrap();
            assert_eq!(p.source, None, "{family:#04x}");
        }
        // A unix block shorter than its two paths is malformed, as a short IPv4 block is.
        for family in [0x31, 0x32] {
            assert!(parse(&v2(1, family, &[0; 36])).is_err(), "{family:#04x}");
        }
    }
}
