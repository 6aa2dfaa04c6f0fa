//! Transport shared by the SMTP server and the relay client: one plain-or-TLS stream type
//! and the server's TLS material.

pub mod stream;
pub mod tls;

pub use stream::Stream;
