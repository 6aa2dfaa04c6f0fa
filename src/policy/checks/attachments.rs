//! The attachment policy at end of data: each finding (blocked name or type, deceptive
//! name, content contradicting its name, archive trouble) becomes a symbol the rules
//! files score; `policy.actions` can make any of them refuse the message.

use crate::classify::attachments::{Attachment, AttachmentPolicy, Finding, Symbol};
use crate::mail::Reply;
use crate::policy::checks::scan_coverage::{PART_LIMIT, PART_LIMIT_SCORE};
use crate::policy::context::AttachmentScan;
use crate::policy::{Check, Context, Decision, Stage};
use crate::rules::{AttachmentPart, Decoded, MessageView, ScanLimits};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// The symbol of a message with a part (containers included) that repeats its
/// `Content-Type` or `Content-Transfer-Encoding`: this parser reads the last field, mail
/// clients the first, so the attachments judged may not be the ones a client shows.
pub const MIME_REPEATED: &str = "ATTACH_MIME_REPEATED";
/// Score of `ATTACH_MIME_REPEATED` unless the rules files give one.
pub const MIME_REPEATED_SCORE: f64 = 3.0;

/// Judges the message's attachments.
#[derive(Debug)]
pub struct Attachments {
    policy: Arc<AttachmentPolicy>,
    /// Messages on disk decoded, and messages whose archives are opened, at a time
    /// (`attachments.disk_inspections`).
    disk_inspections: Arc<Semaphore>,
    /// Nesting of attached messages searched for files (`scan_nesting_depth`) and the
    /// MIME parts parsed (`scan_mime_parts`) of a message on disk.
    limits: ScanLimits,
    /// How long a message waits for its turn (`attachments.inspection_wait`).
    wait: Duration,
    /// The policy's settings and the scan limits: what an earlier judgement of the same
    /// message must have run with for its findings to be reused.
    key: Arc<str>,
}

impl Attachments {
    /// A check applying `policy`, decoding messages kept on disk one `disk_inspections`
    /// permit at a time, within the nesting and part limits of `limits`.
    pub fn new(
        policy: AttachmentPolicy,
        disk_inspections: Arc<Semaphore>,
        limits: ScanLimits,
        wait: Duration,
    ) -> Attachments {
        let key = format!("{} {limits:?}", policy.settings()).into();
        Attachments {
            policy: Arc::new(policy),
            disk_inspections,
            limits,
            wait,
            key,
        }
    }

    /// An inspection turn, waited for at most `wait`: a queue of messages with archives
    /// (each holding its message memory while it waits) must not hold the gateway's
    /// memory budget, nor keep a sender past its final-reply timeout, which resends a
    /// message still being judged (review).
    async fn turn(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        tokio::time::timeout(self.wait, self.disk_inspections.acquire())
            .await
            .ok()
            .and_then(Result::ok)
    }

    /// The attachments of the message: from the shared view when it is small; decoded
    /// from the whole message (mapped from its spool file) when it is big (its view is
    /// built from a sample that has no attachment bytes), in the `disk_inspections` turn
    /// the caller holds.
    async fn attachments(&self, ctx: &mut Context) -> Found {
        if !ctx.message.is_sampled() {
            return Found::View(ctx.view());
        }
        let decoded = match ctx.message.raw() {
            // Decoding every part of a message of tens of megabytes is long CPU work.
            Ok(raw) => Ok(crate::runtime::off_the_session_threads(raw.len(), || {
                MessageView::attachments_of(&raw, self.limits.nesting_depth, self.limits.mime_parts)
            })),
            Err(e) => Err(e),
        };
        match decoded {
            Ok(list) => Found::Decoded(Arc::new(list)),
            Err(e) => {
                tracing::error!(error = %e, "cannot map the message to inspect its attachments");
                Found::View(ctx.view())
            }
        }
    }
}

/// Where the attachments were found; cheap to clone for the blocking inspection.
#[derive(Clone)]
enum Found {
    /// In the view the content checks share (a message in memory).
    View(Arc<MessageView>),
    /// Decoded from the spool file (a message on disk).
    Decoded(Arc<Decoded>),
}

impl Found {
    fn list(&self) -> &[AttachmentPart] {
        match self {
            Found::View(v) => v.attachments(),
            Found::Decoded(d) => &d.attachments,
        }
    }

    fn repeats_mime_fields(&self) -> bool {
        match self {
            Found::View(v) => v.repeats_mime_fields(),
            Found::Decoded(d) => d.repeats_mime_fields,
        }
    }
}

fn parts(attachments: &[AttachmentPart]) -> Vec<Attachment<'_>> {
    attachments
        .iter()
        .map(|a| Attachment {
            names: &a.names,
            content_type: &a.content_type,
            data: &a.data,
            content_left_out: a.content_left_out,
        })
        .collect()
}

#[async_trait]
impl Check for Attachments {
    fn name(&self) -> &'static str {
        "attachments"
    }

    fn stage(&self) -> Stage {
        Stage::Data
    }

    async fn run(&self, ctx: &mut Context) -> Decision {
        // Judged already by the same policy (the live one, before a shadow that keeps its
        // `[attachments]`): the same findings, without a second decoding or turn.
        if let Some(scan) = ctx.attachments.as_ref().filter(|s| s.key == self.key) {
            for hit in scan.hits.clone() {
                ctx.hit_once(&hit.name, hit.score);
            }
            return Decision::Continue;
        }
        let before = ctx.symbols.len();
        let decision = self.judge(ctx).await;
        if decision == Decision::Continue {
            ctx.attachments = Some(AttachmentScan {
                key: self.key.clone(),
                hits: ctx.symbols.get(before..).unwrap_or_default().to_vec(),
            });
        }
        decision
    }
}

impl Attachments {
    async fn judge(&self, ctx: &mut Context) -> Decision {
        // A message on disk takes its `disk_inspections` turn before its attachments are
        // decoded and keeps it until they are judged: the decoded files are the memory the
        // turns bound (review: the turn was given back between decoding and opening the
        // archives, and every session waiting for the second held its decoded files).
        let mut turn = None;
        if ctx.message.is_sampled() {
            match self.turn().await {
                Some(t) => turn = Some(t),
                None => return busy(),
            }
        }
        let attachments = self.attachments(ctx).await;
        if matches!(&attachments, Found::Decoded(d) if d.too_many_parts) {
            ctx.hit_once(PART_LIMIT, PART_LIMIT_SCORE);
        }
        if attachments.repeats_mime_fields() {
            ctx.hit_once(MIME_REPEATED, MIME_REPEATED_SCORE);
        }
        if attachments.list().is_empty() {
            return Decision::Continue;
        }
        let opens_containers = self.policy.opens_containers(&parts(attachments.list()));
        let findings: Vec<Finding> = match tokio::runtime::Handle::try_current() {
            // Decompressing (archives, a document's macros) is CPU work of up to
            // max_expanded_bytes: keep it off the threads that serve sessions.
            Ok(_) if opens_containers => {
                // Opening archives costs memory too (a nested zip is held whole, up to
                // `max_expanded_bytes`), whatever the message's size: one of
                // `disk_inspections` at a time, or 200 small messages took 15 GB.
                if turn.is_none() {
                    match self.turn().await {
                        Some(t) => turn = Some(t),
                        None => return busy(),
                    }
                }
                let policy = self.policy.clone();
                let shared = attachments.clone();
                tokio::task::spawn_blocking(move || policy.inspect(&parts(shared.list())))
                    .await
                    .unwrap_or_else(|e| {
                        tracing::error!(error = %e, "attachment inspection failed");
                        vec![Finding {
                            symbol: Symbol::ArchiveUnreadable,
                            file: "(message)".into(),
                        }]
                    })
            }
            _ => self.policy.inspect(&parts(attachments.list())),
        };
        drop(turn);
        for f in &findings {
            tracing::info!(symbol = f.symbol.name(), file = ?f.file, "attachment policy");
            ctx.hit_once(f.symbol.name(), f.symbol.default_score());
        }
        Decision::Continue
    }
}

/// No inspection turn came in time: the message is not judged, and not taken.
fn busy() -> Decision {
    tracing::warn!(
        "no attachment inspection turn within attachments.inspection_wait: message deferred"
    );
    Decision::Tempfail(Reply::new(
        451,
        "4.3.2",
        "System busy inspecting attachments, try again later",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AttachmentsConfig;
    use crate::policy::ClientInfo;

    fn ctx(message: &str) -> Context {
        let mut ctx = Context::new(ClientInfo::new("192.0.2.1".parse().unwrap()));
        ctx.message = message.replace('\n', "\r\n").into_bytes().into();
        ctx
    }

    fn check() -> Attachments {
        Attachments::new(
            AttachmentPolicy::new(&AttachmentsConfig::default()),
            Arc::new(Semaphore::new(1)),
            ScanLimits::default(),
            Duration::from_secs(60),
        )
    }

    /// Judges `message` and asserts that a blocked attachment was found in it.
    async fn assert_blocked(message: &str, what: &str) {
        let mut c = ctx(message);
        assert_eq!(check().run(&mut c).await, Decision::Continue);
        assert!(
            c.symbols.iter().any(|s| s.name == "ATTACH_BLOCKED_EXT"),
            "{what}: {:?}",
            c.symbols
        );
    }

    const EXE_ATTACHED: &str = "From: a@b.test\nSubject: invoice\nMIME-Version: 1.0\n\
Content-Type: multipart/mixed; boundary=\"b\"\n\n--b\nContent-Type: text/plain\n\nsee attached\n\
--b\nContent-Type: application/octet-stream; name=\"invoice.pdf.exe\"\n\
Content-Disposition: attachment; filename=\"invoice.pdf.exe\"\nContent-Transfer-Encoding: base64\n\n\
TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAA=\n--b--\n";

    /// Regression (review): the key the shadow's findings are reused by was `Debug` of the
    /// policy, whose hash sets print in each set's random order: two checks of one
    /// configuration never matched, and the shadow decoded every message again.
    #[tokio::test]
    async fn a_check_of_the_same_settings_reuses_the_findings() {
        let mut c = ctx(EXE_ATTACHED);
        check().run(&mut c).await;
        let found = c.attachments.clone().expect("findings kept");
        let mut other = ctx("From: a@b.test\nSubject: hi\n\nno attachment\n");
        other.attachments = Some(found);
        // Another check of the same settings: the findings are the first judgement's.
        check().run(&mut other).await;
        let names: Vec<&str> = other.symbols.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, vec!["ATTACH_BLOCKED_EXT", "ATTACH_DOUBLE_EXT"]);
    }

    #[tokio::test]
    async fn a_blocked_attachment_scores_each_symbol_once() {
        let mut c = ctx(EXE_ATTACHED);
        assert_eq!(check().run(&mut c).await, Decision::Continue);
        let names: Vec<&str> = c.symbols.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, vec!["ATTACH_BLOCKED_EXT", "ATTACH_DOUBLE_EXT"]);
        assert_eq!(c.symbols[0].score, Symbol::BlockedExt.default_score());
    }

    /// Regression (attachment probe): a `.uue` file sent as `application/octet-stream`
    /// (which WinRAR and 7-Zip open as an archive of one file) hid the `.exe` in it.
    #[tokio::test]
    async fn a_uuencoded_file_sent_as_binary_is_opened() {
        let uue = "begin 644 invoice.exe\r\n#35J0\r\n`\r\nend\r\n";
        let message = format!(
            "Subject: x\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=o\n\n\
             --o\nContent-Type: text/plain\n\nsee attached\n\
             --o\nContent-Type: application/octet-stream; name=\"invoice.uue\"\n\
             Content-Transfer-Encoding: base64\n\n{}\n--o--\n",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, uue)
        );
        assert_blocked(&message, "").await;
    }

    /// Regression (attachment probe): a yEnc block in an untyped body, which clients that
    /// decode yEnc show as a file, named an `.exe` no check read.
    #[tokio::test]
    async fn a_yenc_file_in_the_body_is_judged() {
        let message = "Subject: x\n\nsee the invoice\n\
                       =ybegin line=128 size=2 name=invoice.exe\nwk\n=yend size=2\n";
        assert_blocked(message, "").await;
    }

    /// Regression (attachment probe): a message saved as `.eml` and sent as
    /// `application/octet-stream`, which mail clients open as a message, hid the `.exe`
    /// attached to it.
    #[tokio::test]
    async fn a_saved_message_sent_as_a_file_is_read_as_a_message() {
        let inner = "Subject: inner\r\nMIME-Version: 1.0\r\n\
                     Content-Type: multipart/mixed; boundary=i\r\n\r\n\
                     --i\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n\
                     --i\r\nContent-Type: application/octet-stream\r\n\
                     Content-Disposition: attachment; filename=\"invoice.exe\"\r\n\r\nMZ\r\n--i--\r\n";
        let message = format!(
            "Subject: fwd\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=o\n\n\
             --o\nContent-Type: text/plain\n\nsee below\n\
             --o\nContent-Type: application/octet-stream; name=\"Fwd Invoice.eml\"\n\
             Content-Transfer-Encoding: base64\n\n{}\n--o--\n",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, inner)
        );
        assert_blocked(&message, "").await;
    }

    /// Regression (attachment probe): an Outlook item saved as `.msg` and mailed, which
    /// Outlook opens showing its attachments, hid the `invoice.exe` attached to an item
    /// attached to it: a MIME reader sees one compound file.
    #[tokio::test]
    async fn the_files_inside_an_outlook_item_are_judged() {
        use crate::mail::outlook_item::tests::{outlook_item, Attached};
        let item = outlook_item(&[
            Attached {
                at: &[0],
                name: "notes.txt",
                data: b"see the invoice",
            },
            Attached {
                at: &[1, 0],
                name: "invoice.exe",
                data: b"MZ\x90\x00",
            },
        ]);
        let message = format!(
            "Subject: fwd\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=o\n\n\
             --o\nContent-Type: text/plain\n\nsee the attached mail\n\
             --o\nContent-Type: application/vnd.ms-outlook; name=\"Invoice.msg\"\n\
             Content-Transfer-Encoding: base64\n\n{}\n--o--\n",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &item)
        );
        assert_blocked(&message, "msg").await;
    }

    /// Regression (attachment probe): an opaque-signed S/MIME message (`smime.p7m`,
    /// signed-data), which Outlook and Thunderbird open and show with its attachments, hid
    /// the `invoice.exe` inside the signature. OpenSSL signed both fixtures, in DER and in
    /// streamed BER; each is judged whole and forwarded inside another message.
    #[tokio::test]
    async fn the_files_inside_an_opaque_signed_message_are_judged() {
        for signed in [
            include_str!("../../../tests/data/smime/signed-der.eml"),
            include_str!("../../../tests/data/smime/signed-ber.eml"),
        ] {
            assert_blocked(signed, "signed").await;
            let (_, p7m) = signed.split_once("\r\n\r\n").unwrap_or_default();
            let forwarded = format!(
                "Subject: fwd\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=o\n\n\
                 --o\nContent-Type: text/plain\n\nsee below\n\
                 --o\nContent-Type: application/octet-stream; name=\"scan.p7m\"\n\
                 Content-Transfer-Encoding: base64\n\n{p7m}\n--o--\n"
            );
            assert_blocked(&forwarded, "forwarded").await;
        }
        // Named as a saved message, it is still read by its type (review).
        let renamed = include_str!("../../../tests/data/smime/signed-ber.eml")
            .replace("filename=\"smime.p7m\"", "filename=\"note.eml\"");
        assert_blocked(&renamed, "named .eml").await;
        // A detached signature (`multipart/signed`) leaves the files where they were.
        let detached = EXE_ATTACHED.replace("multipart/mixed", "multipart/signed");
        assert_blocked(&detached, "detached").await;
    }

    /// Regression (attachment probe): `multipart/mixed, boundary="b"` (a comma where
    /// `;` belongs) hid the parts from the parser, while Thunderbird lists them: the
    /// `.exe` went unjudged, at the top level and in an inner multipart.
    #[tokio::test]
    async fn names_in_a_multipart_whose_boundary_the_parser_misses_are_judged() {
        let parts = "--b1\nContent-Type: text/plain\n\nsee attached\n\
                     --b1\nContent-Type: application/octet-stream; name=\"invoice.exe\"\n\
                     Content-Disposition: attachment; filename=\"invoice.exe\"\n\nMZ\n--b1--\n";
        let top = format!(
            "Subject: x\nMIME-Version: 1.0\nContent-Type: multipart/mixed, boundary=\"b1\"\n\n{parts}"
        );
        let inner = format!(
            "Subject: x\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=o\n\n\
             --o\nContent-Type: text/plain\n\nhello\n\
             --o\nContent-Type: multipart/mixed, boundary=\"b1\"\n\n{parts}--o--\n"
        );
        for message in [top, inner] {
            assert_blocked(&message, &message).await;
        }
    }

    /// Regression (attachment probe): Windows shortcut, search, installer and script
    /// formats that Outlook blocks (`.library-ms`, `.searchConnector-ms`, `.appref-ms`,
    /// `.application`, `.msu`, `.wsb`, `.pyw`, `.psm1`, `.xnk`, `.hlp`) were delivered with
    /// no symbol.
    #[tokio::test]
    async fn the_windows_formats_outlook_blocks_are_blocked() {
        for name in [
            "Documents.library-ms",
            "search.searchConnector-ms",
            "update.appref-ms",
            "setup.application",
            "fix.msu",
            "box.wsb",
            "run.pyw",
            "mod.psm1",
            "old.xnk",
            "help.hlp",
        ] {
            let message = format!(
                "Subject: x\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n\
                 --b\nContent-Type: text/plain\n\nsee attached\n\
                 --b\nContent-Type: application/octet-stream\n\
                 Content-Disposition: attachment; filename=\"{name}\"\n\nx\n--b--\n"
            );
            assert_blocked(&message, name).await;
        }
    }

    /// Regression (review): only the first `filename` (and `name`) parameter was judged,
    /// so `filename="invoice.txt"; filename*=UTF-8''invoice.js` (RFC 2231, which clients
    /// prefer) passed as a text file.
    #[tokio::test]
    async fn every_filename_parameter_of_a_part_is_judged() {
        for disposition in [
            "attachment; filename=\"invoice.txt\"; filename*=UTF-8''invoice.js",
            "attachment; filename=\"invoice.txt\"; filename=\"invoice.js\"",
            // Regression (review): mail-parser joined these into `invoice.txtjs` and
            // `invoice.`; Thunderbird saves `invoice.js`. Nor were names read without a
            // disposition type or after a comma.
            "attachment; filename=\"invoice.txt\"; filename*0=\"invoice.\"; filename*1=\"js\"",
            "filename=\"invoice.js\"",
            "attachment, filename=\"invoice.js\"",
        ] {
            let message = format!(
                "Subject: x\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n\
                 --b\nContent-Type: text/plain\nContent-Disposition: {disposition}\n\n\
                 alert(1)\n--b--\n"
            );
            assert_blocked(&message, disposition).await;
            // Regression (review): inside a forwarded message the raw fields were read at
            // offsets shifted by where that message starts, and these names were missed.
            let forwarded = format!(
                "Subject: fwd\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=o\n\n\
                 --o\nContent-Type: text/plain\n\nsee below\n\
                 --o\nContent-Type: message/rfc822\n\n{message}\n--o--\n"
            );
            assert_blocked(&forwarded, &format!("forwarded {disposition}")).await;
        }
    }

    /// Regression (review): Thunderbird names a part from `Content-Name` or
    /// `X-Sun-Data-Name` when its other fields name none.
    #[tokio::test]
    async fn a_name_given_in_its_own_field_is_judged() {
        for field in ["Content-Name: invoice.js", "X-Sun-Data-Name: invoice.js"] {
            let message = format!(
                "Subject: x\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n\
                 --b\nContent-Type: application/octet-stream\n{field}\n\n\
                 alert(1)\n--b--\n"
            );
            assert_blocked(&message, field).await;
        }
    }

    /// Regression (review): a file past the scan's part limit (1,000 empty parts first, 40
    /// KB in all) or below its nesting limit was never judged: `SCAN_PART_LIMIT` (2.5)
    /// was all such a message got, while mail clients show the file.
    #[tokio::test]
    async fn a_file_past_the_part_or_nesting_limit_is_judged_by_name() {
        let mut message = String::from(
            "Subject: x\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n",
        );
        for _ in 0..1000 {
            message.push_str("--b\nContent-Type: text/plain\n\n.\n");
        }
        message.push_str(
            "--b\nContent-Type: application/octet-stream\n\
             Content-Disposition: attachment; filename=\"evil.exe\"\n\nTVqQ\n--b--\n",
        );
        let mut c = ctx(&message);
        check().run(&mut c).await;
        assert!(
            c.symbols.iter().any(|s| s.name == "ATTACH_BLOCKED_EXT"),
            "{:?}",
            c.symbols
        );
        let mut nested = String::from(
            "Content-Type: application/octet-stream\n\
             Content-Disposition: attachment; filename=\"evil.exe\"\n\nTVqQ\n",
        );
        for level in 0..12 {
            nested = format!(
                "Subject: level {level}\nMIME-Version: 1.0\nContent-Type: message/rfc822\n\n{nested}"
            );
        }
        let mut c = ctx(&nested);
        check().run(&mut c).await;
        assert!(
            c.symbols.iter().any(|s| s.name == "ATTACH_BLOCKED_EXT"),
            "{:?}",
            c.symbols
        );
    }

    fn symbols_of(message: &str) -> Vec<String> {
        let mut c = ctx(message);
        let view = c.view();
        let list: Vec<AttachmentPart> = view.attachments().to_vec();
        let policy = AttachmentPolicy::new(&AttachmentsConfig::default());
        let mut found: Vec<String> = policy
            .inspect(&parts(&list))
            .iter()
            .map(|f| f.symbol.name().to_string())
            .collect();
        found.sort_unstable();
        found.dedup();
        found
    }

    /// A zip holding `invoice.exe`, base64 in lines of 76.
    fn zip_base64() -> String {
        use base64::Engine;
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        w.start_file("invoice.exe", zip::write::SimpleFileOptions::default())
            .unwrap();
        std::io::Write::write_all(&mut w, b"MZ\x90\x00 a program").unwrap();
        let zip = w.finish().unwrap().into_inner();
        let text = base64::engine::general_purpose::STANDARD.encode(zip);
        text.as_bytes()
            .chunks(76)
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn with_part(headers: &str, body: &str) -> String {
        format!(
            "Subject: x\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n\
             --b\nContent-Type: text/plain\n\nhello\n--b\n{headers}\n\n{body}\n--b--\n"
        )
    }

    /// Regression (review): the attachment list took mail-parser's decoding, which hands
    /// back the encoded text for base64 with a stray character or a label it does not
    /// know (`base64;`), turns a text part's bytes into text by its charset, and reads the
    /// last of repeated MIME fields where mail clients read the first: in each case the
    /// zip's blocked name was never seen (and clamd got the wrong bytes).
    #[test]
    fn files_are_decoded_as_mail_clients_save_them() {
        let zip = zip_base64();
        let plain = with_part(
            "Content-Type: application/zip; name=docs.zip\nContent-Transfer-Encoding: base64",
            &zip,
        );
        assert_eq!(symbols_of(&plain), ["ARCHIVE_BLOCKED_EXT"]);
        let cases = [
            (
                "a stray character",
                with_part(
                    "Content-Type: application/zip; name=docs.zip\nContent-Transfer-Encoding: base64",
                    &format!("!\n{zip}"),
                ),
            ),
            (
                "a sloppy label",
                with_part(
                    "Content-Type: application/octet-stream; name=docs\nContent-Transfer-Encoding: base64;",
                    &zip,
                ),
            ),
            (
                "a text part naming a file",
                with_part(
                    "Content-Type: text/plain; charset=utf-16; name=docs.zip\n\
                     Content-Disposition: attachment\nContent-Transfer-Encoding: base64",
                    &zip,
                ),
            ),
            (
                "a second encoding field",
                with_part(
                    "Content-Type: application/zip; name=docs.zip\n\
                     Content-Transfer-Encoding: base64\nContent-Transfer-Encoding: 7bit",
                    &zip,
                ),
            ),
            (
                // Review of the fix: a reader taking the last field decodes this one.
                "a first encoding field that says 7bit",
                with_part(
                    "Content-Type: application/zip; name=docs.pdf\n\
                     Content-Transfer-Encoding: 7bit\nContent-Transfer-Encoding: base64",
                    &zip,
                ),
            ),
        ];
        for (case, message) in cases {
            let found = symbols_of(&message);
            assert!(
                found.iter().any(|s| s == "ARCHIVE_BLOCKED_EXT"),
                "{case}: {found:?}"
            );
        }
        // The first of two dispositions names the file, as mail clients read it.
        let two = with_part(
            "Content-Disposition: attachment; filename=\"invoice.exe\"\n\
             Content-Disposition: attachment; filename=\"a.txt\"\n\
             Content-Type: application/octet-stream",
            "TVqQAAMAAAAEAAAA",
        );
        assert!(symbols_of(&two).iter().any(|s| s == "ATTACH_BLOCKED_EXT"));
        let view = ctx(&two).view().attachments().to_vec();
        assert!(view.iter().all(|a| a.ambiguous), "{view:?}");
        let view = ctx(&plain).view().attachments().to_vec();
        assert!(view.iter().all(|a| !a.ambiguous), "{view:?}");
    }

    /// Regression (review): one character outside the base64 alphabet made mail-parser
    /// hand back a part as text whatever it declared, so an unnamed
    /// `application/x-msdownload` part dropped out of the attachment list (no type check,
    /// no clamd); and a named part padded in the middle of its data (`xx==` groups) was
    /// read as SpamAssassin reads it while mail clients save it group by group, so the
    /// zip a client saves was never opened.
    #[test]
    fn a_stray_character_or_padding_in_base64_hides_no_file() {
        use base64::Engine;
        let exe = "TVqQAAMAAAAEAAAA//8AALgA";
        let clean = with_part(
            "Content-Type: application/x-msdownload\nContent-Transfer-Encoding: base64",
            exe,
        );
        let expected = symbols_of(&clean);
        assert!(
            !expected.is_empty(),
            "an unnamed program scores: {expected:?}"
        );
        let stray = with_part(
            "Content-Type: application/x-msdownload\nContent-Transfer-Encoding: base64",
            &format!("TVqQ*{}", &exe[4..]),
        );
        assert_eq!(symbols_of(&stray), expected);
        let view = ctx(&stray).view().attachments().to_vec();
        assert!(
            view.iter().all(|a| a.ambiguous),
            "clamd gets the whole message"
        );
        // A zip holding invoice.exe, each byte its own padded group, and a stray `*`.
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        w.start_file("invoice.exe", zip::write::SimpleFileOptions::default())
            .unwrap();
        std::io::Write::write_all(&mut w, b"MZ\x90\x00 a program").unwrap();
        let zip = w.finish().unwrap().into_inner();
        let per_byte: String = zip
            .iter()
            .map(|b| base64::engine::general_purpose::STANDARD.encode([*b]))
            .collect::<Vec<_>>()
            .join("\n");
        let padded = with_part(
            "Content-Type: application/zip; name=docs.zip\nContent-Transfer-Encoding: base64",
            &format!("*{per_byte}"),
        );
        let found = symbols_of(&padded);
        assert!(
            found.iter().any(|s| s == "ARCHIVE_BLOCKED_EXT"),
            "{found:?}"
        );
    }

    /// Regression (review): a `winmail.dat` (TNEF, which Outlook opens into its files) was
    /// one opaque part: `invoice.exe` inside it gave no symbol.
    #[test]
    fn files_inside_a_winmail_dat_are_judged() {
        use base64::Engine;
        let stream = crate::mail::tnef::tests::winmail(&[(
            "INVOIC~1.EXE",
            "invoice.exe",
            b"MZ\x90\x00 program",
        )]);
        let body = base64::engine::general_purpose::STANDARD.encode(&stream);
        let message = with_part(
            "Content-Type: application/ms-tnef; name=winmail.dat\n\
             Content-Disposition: attachment; filename=winmail.dat\n\
             Content-Transfer-Encoding: base64",
            &body,
        );
        assert_eq!(symbols_of(&message), ["ATTACH_BLOCKED_EXT"]);
        // The same file attached to a message attached in Outlook, which TNEF carries as a
        // stream of its own inside the attachment's properties (attachment probe).
        let forwarded = crate::mail::tnef::tests::winmail_forwarding("Fwd: invoice", &stream);
        let body = base64::engine::general_purpose::STANDARD.encode(forwarded);
        let message = with_part(
            "Content-Type: application/ms-tnef; name=winmail.dat\n\
             Content-Transfer-Encoding: base64",
            &body,
        );
        assert_eq!(symbols_of(&message), ["ATTACH_BLOCKED_EXT"]);
    }

    /// Regression (review): a text, HTML or attached-message part with
    /// `Content-Disposition: attachment` but no file name was no attachment (Outlook shows
    /// an HTML one as `ATT00001.htm`, the carrier of HTML smuggling), so neither the
    /// policy nor clamd saw it. Inline text parts stay text.
    #[test]
    fn parts_attached_without_a_name_are_files_whatever_their_type() {
        for ctype in ["text/html", "text/plain", "message/rfc822"] {
            for disposition in ["attachment", "ATTACHMENT; size=40"] {
                let message = with_part(
                    &format!("Content-Type: {ctype}\nContent-Disposition: {disposition}"),
                    "Subject: inner\n\n<script>smuggled()</script>",
                );
                let list = ctx(&message).view().attachments().to_vec();
                assert_eq!(list.len(), 1, "{ctype}, {disposition}: {list:?}");
                assert_eq!(list[0].content_type, ctype);
                assert!(list[0].names.is_empty());
            }
        }
        for headers in [
            "Content-Type: text/html\nContent-Disposition: inline",
            "Content-Type: text/html",
        ] {
            let message = with_part(headers, "<p>hello</p>");
            let view = ctx(&message).view();
            assert!(view.attachments().is_empty(), "{headers}");
            assert!(view.body_text().contains("hello"), "{headers}");
        }
    }

    /// Regression (review): a repeated `Content-Type` on a container (`multipart/mixed;
    /// boundary=b` then `text/plain`) made the parser, which reads the last, see one text
    /// part where mail clients, which read the first, show the attachments: none was
    /// judged, and nothing scored. Any part repeating its type or encoding is scored.
    #[tokio::test]
    async fn a_repeated_type_or_encoding_on_any_part_is_scored() {
        let exe = "--b\nContent-Type: application/octet-stream; name=invoice.exe\n\nMZ\n--b--\n";
        let root = format!(
            "Subject: x\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\
             Content-Type: text/plain\n\n{exe}"
        );
        let nested = format!(
            "Subject: x\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=a\n\n\
             --a\nContent-Type: text/plain\n\nhi\n--a\n\
             Content-Type: multipart/mixed; boundary=b\nContent-Type: text/plain\n\n{exe}--a--\n"
        );
        let encoding = with_part(
            "Content-Type: text/plain\nContent-Transfer-Encoding: 7bit\n\
             Content-Transfer-Encoding: base64",
            "aGVsbG8=",
        );
        let attached = format!(
            "Subject: x\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=o\n\n\
             --o\nContent-Type: message/rfc822\n\n{root}--o--\n"
        );
        // Two boundaries: the parser splits at the first, a client may split at the last.
        let boundaries = format!(
            "Subject: x\nMIME-Version: 1.0\n\
             Content-Type: multipart/mixed; boundary=\"c\"; Boundary=\"b\"\n\n{exe}"
        );
        for (label, message) in [
            ("root", &root),
            ("nested", &nested),
            ("encoding", &encoding),
            ("attached message", &attached),
            ("two boundaries", &boundaries),
        ] {
            let mut c = ctx(message);
            assert!(c.view().repeats_mime_fields(), "{label}");
            assert_eq!(check().run(&mut c).await, Decision::Continue);
            assert!(
                c.symbols.iter().any(|s| s.name == MIME_REPEATED),
                "{label}: {:?}",
                c.symbols
            );
        }
        let mut c = ctx(EXE_ATTACHED);
        assert!(!c.view().repeats_mime_fields());
        check().run(&mut c).await;
        assert!(c.symbols.iter().all(|s| s.name != MIME_REPEATED));
    }

    /// Regression (review): TNEF reading stopped at the 256th file: `invoice.exe` after
    /// 256 text files in a `winmail.dat` gave no symbol. Its name is judged, and the
    /// cutoff scored.
    #[test]
    fn files_past_the_cap_of_a_winmail_dat_are_judged_by_name() {
        use base64::Engine;
        let names: Vec<String> = (0..crate::mail::tnef::MAX_FILES)
            .map(|i| format!("f{i}.txt"))
            .collect();
        let mut list: Vec<(&str, &str, &[u8])> = names
            .iter()
            .map(|n| (n.as_str(), "", b"text".as_slice()))
            .collect();
        list.push(("INVOIC~1.EXE", "invoice.exe", b"MZ\x90\x00 program"));
        let stream = crate::mail::tnef::tests::winmail(&list);
        let body = base64::engine::general_purpose::STANDARD.encode(stream);
        let message = with_part(
            "Content-Type: application/ms-tnef; name=winmail.dat\n\
             Content-Transfer-Encoding: base64",
            &body,
        );
        assert_eq!(
            symbols_of(&message),
            ["ATTACH_BLOCKED_EXT", "ATTACH_TOO_MANY_FILES"]
        );
    }

    /// Regression (review): only messages on disk waited for a `disk_inspections` turn; a
    /// small message whose zip held a zip of 63 MiB was opened at once, however many such
    /// sessions there were (about 80 MB each). Opening archives takes a turn too.
    #[tokio::test]
    async fn opening_archives_waits_for_an_inspection_turn() {
        let zip_b64 = "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA==";
        let message = format!(
            "Subject: x\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n--b\n\
Content-Type: application/zip; name=a.zip\nContent-Transfer-Encoding: base64\n\n{zip_b64}\n--b--\n"
        );
        let turns = Arc::new(Semaphore::new(1));
        let check = Arc::new(Attachments::new(
            AttachmentPolicy::new(&AttachmentsConfig::default()),
            turns.clone(),
            ScanLimits::default(),
            Duration::from_secs(60),
        ));
        let held = turns.clone().acquire_owned().await.unwrap();
        let mut running = tokio::spawn({
            let check = check.clone();
            let message = message.clone();
            async move { check.run(&mut ctx(&message)).await }
        });
        // Without the turn it is done in microseconds; it must still be waiting.
        let waited = tokio::time::timeout(std::time::Duration::from_secs(1), &mut running).await;
        assert!(waited.is_err(), "opened an archive without a turn");
        drop(held);
        assert_eq!(running.await.unwrap(), Decision::Continue);
        // Regression (review): the wait had no end, and a queue of such messages held
        // the memory budget and kept senders past their final-reply timeout. Past
        // `inspection_wait` the message is deferred.
        let impatient = Attachments::new(
            AttachmentPolicy::new(&AttachmentsConfig::default()),
            turns.clone(),
            ScanLimits::default(),
            Duration::from_millis(100),
        );
        let _held = turns.clone().acquire_owned().await.unwrap();
        match impatient.run(&mut ctx(&message)).await {
            Decision::Tempfail(reply) => assert_eq!((reply.code, &*reply.status), (451, "4.3.2")),
            other => panic!("{other:?}"),
        }
    }

    /// Regression (left alone at the malware review): a file uuencoded in a text part
    /// (`begin 644 invoice.exe`), which mail clients show as an attachment, was in no
    /// attachment list, so no name or content check judged it; nor was one in a part
    /// declaring `x-uuencode`, which mail-parser leaves encoded.
    #[tokio::test]
    async fn uuencoded_files_are_judged_like_attachments() {
        let uu = |name: &str, data: &[u8]| {
            String::from_utf8(uuencoding::encode(data, name, 0o644)).unwrap()
        };
        // A DOS header whose PE header lies past what is here: an executable's start.
        let mut mz = vec![0u8; 64];
        mz[..2].copy_from_slice(b"MZ");
        mz[0x3C] = 0x80;
        let in_prose = format!(
            "Subject: x\n\nthe invoice:\n\n{}\nthanks\n",
            uu("invoice.exe", b"x")
        );
        let base64_text = {
            use base64::Engine as _;
            let body = format!("see\n{}", uu("report.txt", &mz));
            let encoded = base64::engine::general_purpose::STANDARD.encode(body);
            format!(
                "Subject: x\nMIME-Version: 1.0\nContent-Type: text/plain\n\
                 Content-Transfer-Encoding: base64\n\n{encoded}\n"
            )
        };
        let declared = format!(
            "Subject: x\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n\
             --b\nContent-Type: text/plain\n\nhi\n--b\nContent-Type: application/octet-stream\n\
             Content-Transfer-Encoding: x-uuencode\n\n{}--b--\n",
            uu("setup.scr", b"x")
        );
        for (label, message, symbol) in [
            ("in prose", in_prose, "ATTACH_BLOCKED_EXT"),
            ("in a base64 text part", base64_text, "ATTACH_TYPE_MISMATCH"),
            ("in an x-uuencode part", declared, "ATTACH_BLOCKED_EXT"),
        ] {
            let mut c = ctx(&message);
            assert_eq!(check().run(&mut c).await, Decision::Continue);
            assert!(
                c.symbols.iter().any(|s| s.name == symbol),
                "{label}: {:?}",
                c.symbols
            );
        }
        // Prose that starts a line with "begin" names no file.
        let mut c = ctx("Subject: x\n\nbegin 2024 with us\nbegin now\n");
        assert_eq!(check().run(&mut c).await, Decision::Continue);
        assert!(c.symbols.is_empty(), "{:?}", c.symbols);
    }

    /// Regression (review): uuencoded blocks were told apart by name only: of two
    /// `docs.zip` blocks, a harmless one then a zip of `invoice.exe` (the one uudecode
    /// leaves on disk), only the first was judged.
    #[test]
    fn uuencoded_blocks_of_one_name_are_each_judged() {
        use base64::Engine;
        let zip = base64::engine::general_purpose::STANDARD
            .decode(zip_base64().replace('\n', ""))
            .unwrap();
        let uu = |data: &[u8]| String::from_utf8(uuencoding::encode(data, "docs.zip", 0o644));
        let message = format!(
            "Subject: x\n\nthe documents:\n{}{}thanks\n",
            uu(b"harmless text").unwrap(),
            uu(&zip).unwrap()
        );
        // The harmless one is no zip (ARCHIVE_UNREADABLE); the second is judged too.
        let found = symbols_of(&message);
        assert!(
            found.iter().any(|s| s == "ARCHIVE_BLOCKED_EXT"),
            "{found:?}"
        );
    }

    #[tokio::test]
    async fn plain_mail_is_not_looked_at() {
        let mut c = ctx("From: a@b.test\nSubject: hi\n\nhello\n");
        assert_eq!(check().run(&mut c).await, Decision::Continue);
        assert!(c.symbols.is_empty());
    }

    #[test]
    fn works_without_a_runtime_as_offline_scans_do() {
        let zip_b64 = "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA==";
        let message = format!(
            "Subject: x\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n--b\n\
Content-Type: application/zip; name=a.zip\nContent-Transfer-Encoding: base64\n\n{zip_b64}\n--b--\n"
        );
        let mut c = ctx(&message);
        let decision = futures::executor::block_on(check().run(&mut c));
        assert_eq!(decision, Decision::Continue);
        assert!(c.symbols.is_empty(), "{:?}", c.symbols);
    }
}
