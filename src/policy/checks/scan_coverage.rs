//! What the content scan could not look at, as symbols: `SCAN_TRUNCATED` when a part was
//! longer than the scan limits (only its head and tail were scanned, or a big message's
//! sample left text out), `SCAN_NESTING_LIMIT` when attached messages were nested
//! deeper than `scan_nesting_depth` and `SCAN_PART_LIMIT` when the message had more MIME
//! parts than `scan_mime_parts`. Spam hidden behind filler or nesting then still
//! costs points (scored in `rules/20-scan.cf`).

use crate::policy::{Check, Context, Decision, Stage};
use async_trait::async_trait;

/// Score of `SCAN_TRUNCATED` unless the rules files give one.
pub const TRUNCATED_SCORE: f64 = 1.0;
/// Score of `SCAN_NESTING_LIMIT` unless the rules files give one.
pub const NESTING_SCORE: f64 = 2.5;
/// The symbol of a message cut at `scan_mime_parts` (also set by the attachment check
/// for a message on disk).
pub const PART_LIMIT: &str = "SCAN_PART_LIMIT";
/// Score of `SCAN_PART_LIMIT` unless the rules files give one.
pub const PART_LIMIT_SCORE: f64 = 2.5;

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
        if view.too_many_parts() {
            ctx.hit_once(PART_LIMIT, PART_LIMIT_SCORE);
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
        ctx.scan.mime_parts = 10;
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

    fn attachments(n: usize) -> String {
        let part = "--b\r\nContent-Type: application/octet-stream\r\n\r\nx\r\n";
        format!(
            "Subject: x\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n{}--b--\r\n",
            part.repeat(n)
        )
    }

    /// Regression: mail-parser keeps about a kilobyte per MIME part and every part was
    /// parsed: a 25 MB message of 514,003 empty parts took 595 MB to scan (171 MB now, as
    /// a 25 MB message of one part: 206 MB).
    #[test]
    fn parts_past_the_limit_are_not_parsed_and_are_reported() {
        assert!(names(attachments(9).as_bytes()).is_empty());
        assert_eq!(names(attachments(50).as_bytes()), ["SCAN_PART_LIMIT"]);
        let view = crate::rules::MessageView::parse_with(
            attachments(50).as_bytes(),
            &crate::rules::ScanLimits {
                mime_parts: 10,
                ..Default::default()
            },
        );
        assert!(
            view.attachments().len() <= 10,
            "{}",
            view.attachments().len()
        );
        let decoded = crate::rules::MessageView::attachments_of(attachments(50).as_bytes(), 8, 10);
        assert!(decoded.too_many_parts);
        assert!(decoded.attachments.len() <= 10);
    }
}
