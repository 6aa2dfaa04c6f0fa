//! The server's TLS material: the STARTTLS acceptor built from PEM files.

use std::path::Path;
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

/// Why the certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsSetupError(String);

/// The STARTTLS acceptor in force (or none): a reload swaps in one built from the
/// certificate files read again, so a renewed certificate needs no restart.
#[derive(Default)]
pub struct LiveTls(arc_swap::ArcSwapOption<TlsAcceptor>);

impl LiveTls {
    /// In force from the start.
    pub fn new(acceptor: Option<TlsAcceptor>) -> LiveTls {
        LiveTls(arc_swap::ArcSwapOption::new(acceptor.map(Arc::new)))
    }

    /// The acceptor for a STARTTLS now.
    pub fn get(&self) -> Option<Arc<TlsAcceptor>> {
        self.0.load_full()
    }

    /// Whether STARTTLS is offered.
    pub fn is_on(&self) -> bool {
        self.0.load().is_some()
    }

    /// Puts `acceptor` in force for the next STARTTLS.
    pub fn set(&self, acceptor: Option<TlsAcceptor>) {
        self.0.store(acceptor.map(Arc::new));
    }
}

impl std::fmt::Debug for LiveTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("LiveTls").field(&self.is_on()).finish()
    }
}

/// Builds the STARTTLS acceptor from a PEM certificate chain and a PEM private key.
pub fn load_acceptor(certificate: &Path, key: &Path) -> Result<TlsAcceptor, TlsSetupError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let in_file =
        |path: &Path, e: &dyn std::fmt::Display| TlsSetupError(format!("{}: {e}", path.display()));
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(certificate)
        .map_err(|e| in_file(certificate, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| in_file(certificate, &e))?;
    if certs.is_empty() {
        return Err(in_file(certificate, &"no certificate found"));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| in_file(key, &e))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsSetupError(e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
