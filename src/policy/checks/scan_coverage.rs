//! What the content scan could not look at, as symbols: `SCAN_TRUNCATED` when a part was
//! longer than the scan limits (only its head and tail were scanned, or a big message's
//! sample left text out) and `SCAN_NESTING_LIMIT` when attached messages were nested
//! deeper than `scan_nesting_depth`. Spam hidden behind filler or nesting then still
//! costs points (scored in `rules/20-scan.cf`).

use crate::policy::{Check, Context, Decision, Stage};
use async_trait::async_trait;

/// Score of `SCAN_TRUNCATED` unless the rules files give one.
pub const TRUNCATED_SCORE: f64 = 1.0;
/// Score of `SCAN_NESTING_LIMIT` unless the rules files give one.
pub const NESTING_SCORE: f64 = 2.5;

/// Reports the scan limits a message ran into.
#[derive(Debug)]
pub struct ScanCoverage;

#[async_trait]
impl Check for ScanCoverage {
    fn name(&self) -> &'static str {
        "scan_coverage"
    }

    fn stage(&self) -> Stage {
        Stage::Data
    }

    async fn run(&self, ctx: &mut Context) -> Decision {
        // The view is parsed once and shared with the rules and URIBL checks after this.
        let view = ctx.view();
        if view.truncated() {
            ctx.hit("SCAN_TRUNCATED", TRUNCATED_SCORE);
        }
        if view.too_deep() {
            ctx.hit("SCAN_NESTING_LIMIT", NESTING_SCORE);
        }
        Decision::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::ClientInfo;

    fn names(raw: &[u8]) -> Vec<String> {
        let mut ctx = Context::new(ClientInfo::new("192.0.2.1".parse().unwrap()));
        ctx.message = raw.to_vec().into();
        ctx.scan.part_bytes = 1000;
        ctx.scan.nesting_depth = 1;
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(ScanCoverage.run(&mut ctx));
        ctx.symbols.into_iter().map(|s| s.name).collect()
    }

    #[test]
    fn long_parts_and_deep_nesting_are_reported() {
        assert!(names(b"Subject: x\r\n\r\nshort\r\n").is_empty());
        let long = format!("Subject: x\r\n\r\n{}\r\n", "word ".repeat(1000));
        assert_eq!(names(long.as_bytes()), ["SCAN_TRUNCATED"]);
        let nested = b"Subject: a\r\nContent-Type: message/rfc822\r\n\r\nSubject: b\r\nContent-Type: message/rfc822\r\n\r\nSubject: c\r\n\r\ndeep\r\n";
        assert_eq!(names(nested), ["SCAN_NESTING_LIMIT"]);
    }
}
