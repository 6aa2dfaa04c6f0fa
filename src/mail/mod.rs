//! Shared vocabulary of mail: addresses, SMTP replies, header fields, dates. Imports nothing
//! of ours, so every other module can use it.

pub mod address;
pub mod charsets;
pub mod compound_file;
pub mod date;
pub mod delimiters;
pub mod display_names;
pub mod encoded_words;
pub mod file_names;
pub mod flowed;
pub mod header_fields;
pub mod html;
pub mod lenient;
pub mod line_endings;
pub mod mbox;
pub mod mime;
pub mod outlook_item;
pub mod qp_shape;
pub mod render_kind;
pub mod reply;
pub mod score;
pub mod seven_bit;
pub mod smime;
pub mod stamp;
pub mod tnef;
pub mod trace;
pub mod url;
pub mod uuencode;
pub mod yenc;

pub use address::{Address, AddressError};
pub use reply::Reply;
