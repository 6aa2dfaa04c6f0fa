//! Bytes from an internal server → `mail::Reply::parse`, as the relay client reads them.
//!
//! Properties: never panics; a reply takes at least one byte and no more than it was
//! given; the code is three digits; a parsed reply written back out with `to_wire` parses
//! to the same reply (what we log and quote in DSNs is what the server said); more input
//! never turns a complete reply into a different one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mxguard::mail::Reply;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    // The client parses reply after reply from one buffer.
    for _ in 0..64 {
        let Ok(Some((reply, used))) = Reply::parse(rest) else {
            return;
        };
        assert!(
            used > 0 && used <= rest.len(),
            "used {used} of {}",
            rest.len()
        );
        assert!(reply.code <= 999);
        // A prefix that holds the whole reply parses to the same reply.
        let (same, same_used) = Reply::parse(&rest[..used])
            .expect("prefix parses")
            .expect("prefix is complete");
        assert_eq!((&same, same_used), (&reply, used));
        let wire = reply.to_wire();
        let (back, back_used) = Reply::parse(wire.as_bytes())
            .expect("to_wire output parses")
            .expect("to_wire output is complete");
        assert_eq!(back_used, wire.len());
        assert_eq!(back, reply, "round trip through {wire:?}");
        let _ = reply.to_string();
        rest = &rest[used..];
    }
});
