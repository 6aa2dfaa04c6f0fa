//! The MX tier as a whole: how the gateways of one domain relate to each other, and how the
//! published tier looks from outside.

pub mod audit;
