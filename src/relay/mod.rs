//! Delivery to the internal mail servers.
