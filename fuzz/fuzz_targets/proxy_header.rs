//! Bytes a client (or a load balancer) sends first → `net::proxy::parse`, as the listener
//! peeks them before the SMTP session starts.
//!
//! Properties: never panics; a header takes at least one byte, no more than it was given
//! and no more than the protocol allows (107 bytes for v1, `V2_MAX` for v2); the bytes of
//! the header alone parse to the same header (nothing after it is read); every shorter
//! prefix of a header asks for more bytes (the listener peeks in pieces and must neither
//! refuse nor accept a header early); "not PROXY" is said only of bytes that cannot begin
//! either signature; a v1 source written back in v1 syntax parses to the same address.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mxguard::net::proxy::{parse, ProxyError, V2_MAX};

const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

fn could_begin(data: &[u8], signature: &[u8]) -> bool {
    let n = data.len().min(signature.len());
    data[..n] == signature[..n]
}

fuzz_target!(|data: &[u8]| {
    let result = parse(data);
    if result == Err(ProxyError::NotProxy) {
        assert!(
            !could_begin(data, V2_SIGNATURE) && !could_begin(data, b"PROXY "),
            "a possible header called not PROXY"
        );
    }
    let Ok(Some((header, used))) = result else {
        return;
    };
    assert!(used > 0 && used <= data.len(), "used {used} of {}", data.len());
    let v2 = data.starts_with(V2_SIGNATURE);
    assert!(used <= if v2 { V2_MAX } else { 107 }, "header of {used} bytes");
    assert_eq!(parse(&data[..used]), Ok(Some((header, used))));
    for cut in [0, 1, 5, 6, 12, 15, 16, used / 2, used - 1] {
        if cut < used {
            assert_eq!(parse(&data[..cut]), Ok(None), "prefix of {cut} bytes");
        }
    }
    if let (false, Some(source)) = (v2, header.source) {
        let family = if source.is_ipv4() { "TCP4" } else { "TCP6" };
        let ip = source.ip();
        let line = format!("PROXY {family} {ip} {ip} {} 25\r\n", source.port());
        assert_eq!(
            parse(line.as_bytes()),
            Ok(Some((header, line.len()))),
            "{line:?}"
        );
    }
});
