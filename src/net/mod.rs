//! Transport shared by the SMTP server and the relay client: one plain-or-TLS stream type,
//! the server's TLS material, and PROXY protocol headers from load balancers.

pub mod accept;
pub mod proxy;
pub mod scope;
pub mod stream;
pub mod tls;

pub use accept::AcceptErrors;
pub use stream::Stream;
