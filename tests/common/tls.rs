//! SMTP over STARTTLS for tests that need a session inside TLS (smuggling after STARTTLS):
//! a throwaway CA and server certificate, and a blocking client that upgrades a plain
//! session and then sends exact bytes and reads replies like [`super::SmtpClient`].

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};

use super::client::Reply;
use super::{HOSTNAME, REPLY_TIMEOUT};

/// A CA and a server certificate for the test gateway's hostname.
pub struct TestPki {
    /// The CA the client trusts.
    pub ca: CertificateDer<'static>,
    /// Server certificate chain (PEM) for `[server.tls]`.
    pub cert_pem: String,
    /// Server key (PEM).
    pub key_pem: String,
}

impl TestPki {
    /// Generates a fresh CA and server certificate.
    pub fn new() -> TestPki {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "mxguard smuggling test CA");
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let mut leaf = CertificateParams::new(vec![HOSTNAME.to_string()]).unwrap();
        leaf.distinguished_name
            .push(rcgen::DnType::CommonName, HOSTNAME);
        let leaf_key = KeyPair::generate().unwrap();
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
        TestPki {
            ca: ca_cert.der().clone(),
            cert_pem: leaf_cert.pem() + &ca_cert.pem(),
            key_pem: leaf_key.serialize_pem(),
        }
    }
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// An SMTP session that said EHLO, STARTTLS, and EHLO again inside TLS.
pub struct TlsSmtpClient {
    reader: BufReader<TlsStream>,
}

/// Reads one (possibly multiline) reply from a plain or TLS stream.
fn read_reply_from(r: &mut impl BufRead) -> Reply {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        let n = r.read_line(&mut line).expect("read a reply line");
        assert!(n > 0, "connection closed while waiting for a reply");
        let line = line.trim_end_matches(['\r', '\n']);
        let code: u16 = line
            .get(..3)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("not an SMTP reply: {line:?}"));
        lines.push(line.get(4..).unwrap_or_default().to_string());
        if line.as_bytes().get(3) != Some(&b'-') {
            return Reply { code, lines };
        }
    }
}

impl TlsSmtpClient {
    /// Connects to the gateway on `port`, upgrades with STARTTLS trusting `pki`'s CA and
    /// says EHLO inside TLS.
    pub fn connect(port: u16, pki: &TestPki) -> TlsSmtpClient {
        let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        tcp.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
        tcp.set_write_timeout(Some(REPLY_TIMEOUT)).unwrap();
        let mut plain = BufReader::new(tcp);
        read_reply_from(&mut plain).expect_code(220);
        plain.get_mut().write_all(b"EHLO client.test\r\n").unwrap();
        read_reply_from(&mut plain).expect_code(250);
        plain.get_mut().write_all(b"STARTTLS\r\n").unwrap();
        read_reply_from(&mut plain).expect_code(220);
        let tcp = plain.into_inner();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(pki.ca.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from(HOSTNAME.to_string()).unwrap();
        let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let mut c = TlsSmtpClient {
            reader: BufReader::new(rustls::StreamOwned::new(conn, tcp)),
        };
        c.cmd("EHLO client.test").expect_code(250);
        c
    }

    /// Sends exact bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        let s = self.reader.get_mut();
        s.write_all(bytes).unwrap();
        s.flush().unwrap();
    }

    /// Sends a command line and reads its reply.
    pub fn cmd(&mut self, line: &str) -> Reply {
        self.send(format!("{line}\r\n").as_bytes());
        self.read_reply()
    }

    /// Reads one reply.
    pub fn read_reply(&mut self) -> Reply {
        read_reply_from(&mut self.reader)
    }

    /// Ends the session politely (ignores a connection already gone).
    pub fn quit(mut self) {
        let _ = self.reader.get_mut().write_all(b"QUIT\r\n");
        let mut rest = Vec::new();
        let _ = self.reader.read_to_end(&mut rest);
    }
}

trait ExpectCode {
    fn expect_code(self, code: u16) -> Reply;
}

impl ExpectCode for Reply {
    #[track_caller]
    fn expect_code(self, code: u16) -> Reply {
        assert_eq!(self.code, code, "unexpected reply {self}");
        self
    }
}
