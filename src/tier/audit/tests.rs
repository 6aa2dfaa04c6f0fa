//! Unit tests of the audit: findings from MX sets and probe results, the JSON shape, exit codes.
