//! The NXDOMAIN DNS stub every test gateway uses unless a test brings its own server.

/// Port of a process-wide UDP DNS stub on 127.0.0.1 that answers every query with
/// NXDOMAIN, so gateways under test resolve nothing, quickly, and never leave the machine.
pub fn nxdomain_dns_port() -> u16 {
    static PORT: std::sync::OnceLock<u16> = std::sync::OnceLock::new();
    *PORT.get_or_init(|| {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind DNS stub");
        let port = socket.local_addr().expect("DNS stub address").port();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while let Ok((n, peer)) = socket.recv_from(&mut buf) {
                if n < 12 {
                    continue;
                }
                let mut reply = buf[..n].to_vec();
                reply[2] = 0x80 | (buf[2] & 0x79) | 0x04; // QR, opcode/RD kept, AA
                reply[3] = 0x80 | 0x03; // RA, RCODE=NXDOMAIN
                reply[6..12].fill(0); // no answer, authority or additional records
                                      // Keep only the question section (drop an EDNS OPT record, if any).
                let mut end = 12;
                while end < n && buf[end] != 0 {
                    end += 1 + buf[end] as usize;
                }
                reply.truncate((end + 5).min(n));
                let _ = socket.send_to(&reply, peer);
            }
        });
        port
    })
}
