//! Policy decisions.
