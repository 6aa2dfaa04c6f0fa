//! Inbound SMTP.
