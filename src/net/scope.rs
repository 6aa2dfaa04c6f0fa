//! Which addresses belong to no host on the internet: the special-purpose blocks of RFC
//! 6890 (and RFC 6598's shared space). The tier skips them when it counts clients, and
//! URIBL asks no list about a link to one.

use std::net::IpAddr;

/// Whether `ip` lies in a special-purpose block no internet host has: loopback, private,
/// shared (CGNAT), link-local, unique-local, benchmarking, IETF protocol assignments,
/// "this network", multicast, reserved or unspecified. Documentation blocks are not among
/// them ([`is_documentation`]): whether they count is the caller's to say.
pub fn is_special_purpose(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || a == 0 // "this network", 0.0.0.0/8
                || a >= 224 // multicast, reserved (240.0.0.0/4) and broadcast
                || (a == 100 && (64..128).contains(&b)) // shared, 100.64.0.0/10
                || (a == 198 && (b == 18 || b == 19)) // benchmarking, 198.18.0.0/15
                || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
        }
    }
}

/// Whether `ip` lies in a documentation block (RFC 5737, RFC 3849).
pub fn is_documentation(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_documentation(),
        IpAddr::V6(v6) => v6.segments()[..2] == [0x2001, 0x0db8],
    }
}
