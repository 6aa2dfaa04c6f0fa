//! Virus scanning through clamd at end of data: an infected message is refused with
//! `554 5.7.1` naming the signature (`VIRUS_FOUND`); when clamd cannot answer, the
//! message is judged without the scan (`ANTIVIRUS_UNAVAILABLE`) or deferred with
//! `451 4.3.0`, as `antivirus.on_failure` says.

use crate::classify::clamd::{Clamd, ScanReport, ScanVerdict};
use crate::config::{AvFailure, AvScope};
use crate::mail::Reply;
use crate::metrics::Metrics;
use crate::policy::{AvScan, Check, Context, Decision, Stage};
use crate::rules::MessageView;
use async_trait::async_trait;
use std::sync::Arc;

/// Symbol of an infected message.
pub const VIRUS_FOUND: &str = "VIRUS_FOUND";
/// Symbol of a message judged without the scan.
pub const ANTIVIRUS_UNAVAILABLE: &str = "ANTIVIRUS_UNAVAILABLE";
/// Symbol of a message some part of which was scanned only up to `max_stream_bytes`.
pub const ANTIVIRUS_TRUNCATED: &str = "ANTIVIRUS_TRUNCATED";

/// Score of the two markers: enough to show in `X-Spam-Rules`, too little to matter.
const MARKER_SCORE: f64 = 0.1;

/// Sends the message's attachments (or the whole message) to clamd.
#[derive(Debug)]
pub struct Antivirus {
    clamd: Clamd,
    on_failure: AvFailure,
    scope: AvScope,
    metrics: Option<Arc<Metrics>>,
    /// What makes two scans of one message alike: the same clamd and scope. Fixed for the
    /// snapshot, so made once.
    key: Arc<str>,
    /// The shadow policy's check: it acts on nothing, so what it finds is no warning (a
    /// virus the live scan reported already, a deferral that never happened).
    in_shadow: bool,
}

impl Antivirus {
    /// A check scanning `scope` with `clamd`, counting in `metrics`.
    pub fn new(
        clamd: Clamd,
        on_failure: AvFailure,
        scope: AvScope,
        metrics: Option<Arc<Metrics>>,
    ) -> Antivirus {
        let key = format!("{:?} {:?}", clamd.address(), scope);
        Antivirus {
            clamd,
            on_failure,
            scope,
            metrics,
            key: key.into(),
            in_shadow: false,
        }
    }

    /// The same check for the shadow policy: not counted in the metrics (a second scan
    /// there would count the message twice) and logged at debug level.
    pub fn in_shadow(mut self) -> Antivirus {
        self.metrics = None;
        self.in_shadow = true;
        self
    }

    /// Logs a scan that failed as a warning, or at debug level in the shadow policy.
    fn warn_failed(&self, message: &str, error: &dyn std::fmt::Display) {
        if self.in_shadow {
            tracing::debug!(error = %error, "shadow policy: {message}");
        } else {
            tracing::warn!(error = %error, "{message}");
        }
    }

    fn count(&self, result: &str, started: Option<tokio::time::Instant>) {
        if let (Some(m), Some(started)) = (&self.metrics, started) {
            m.antivirus_total.with_label_values(&[result]).inc();
            m.antivirus_scan_duration_seconds
                .observe(started.elapsed().as_secs_f64());
        }
    }
}

/// A signature name fit for a reply line: printable ASCII, bounded.
fn reply_safe(name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .take(100)
        .collect();
    if safe.is_empty() {
        "unnamed".into()
    } else {
        safe
    }
}

#[async_trait]
impl Check for Antivirus {
    fn name(&self) -> &'static str {
        "antivirus"
    }

    fn stage(&self) -> Stage {
        Stage::Data
    }

    async fn run(&self, ctx: &mut Context) -> Decision {
        let started = tokio::time::Instant::now();
        // `started` is None for a scan reused: nothing was sent, so nothing is counted.
        let (result, started) = match ctx.antivirus.as_ref().filter(|scan| scan.key == self.key) {
            // Scanned already (the live policy, before a shadow with the same clamd): the
            // same bytes get the same answer, so they are not sent again.
            Some(scan) => (scan.result.clone(), None),
            None => {
                let Some(result) = self.scan(ctx).await else {
                    return Decision::Continue;
                };
                ctx.antivirus = Some(AvScan {
                    key: self.key.clone(),
                    result: result.clone(),
                });
                (result, Some(started))
            }
        };
        match result {
            Ok(report) => {
                if report.truncated {
                    ctx.hit_once(ANTIVIRUS_TRUNCATED, MARKER_SCORE);
                }
                match report.verdict {
                    ScanVerdict::Clean => {
                        self.count("clean", started);
                        Decision::Continue
                    }
                    ScanVerdict::Infected(signature) => {
                        self.count("infected", started);
                        let signature = reply_safe(&signature);
                        if self.in_shadow {
                            tracing::debug!(client = %ctx.client.ip, %signature, "shadow policy: virus found");
                        } else {
                            tracing::warn!(client = %ctx.client.ip, %signature, "virus found");
                        }
                        ctx.hit_once(VIRUS_FOUND, 1000.0);
                        Decision::Reject(Reply::new(
                            554,
                            "5.7.1",
                            format!("Message rejected: virus found ({signature})"),
                        ))
                    }
                }
            }
            Err(e) => self.unavailable(ctx, started, &e),
        }
    }
}

/// Attached files clamd gets one stream each, at most; a message with more is sent whole
/// (one connection, not hundreds: 990 attachments took 990 clamd threads in turn).
const MAX_ATTACHMENT_STREAMS: usize = 32;

/// Whether the attachment list leaves files out, or is too long to send file by file:
/// parts past the part limit or nested past the depth limit are not in it (a sender put
/// EICAR after 1,001 boundary lines, or nine attached messages deep, and clamd never saw
/// it), or holds a file known by name only (its bytes left out: past the cap of a TNEF
/// or uuencoded part, or in a message whose delimiters could not be followed). A message
/// with a uuencode begin line goes whole too: the list holds the files of
/// text parts whose blocks uudecode would read (the first 32 of a part decoded), while
/// clamd decodes every block it finds, in HTML parts and damaged ones too. clamd then
/// gets the whole message and decodes it itself. So does a message with a part a client
/// may read otherwise than the list has it (repeated MIME fields, a sloppy or repeated
/// transfer-encoding label): a `base64` then a `7bit` field hid EICAR from the streams;
/// and a message with any part, containers included, whose type or encoding is repeated
/// (a second `Content-Type: text/plain` on the root hid every attachment from the list).
fn attachments_unseen_or_many(view: &MessageView) -> bool {
    view.too_many_parts()
        || view.too_deep()
        || view.repeats_mime_fields()
        || view.attachments().len() > MAX_ATTACHMENT_STREAMS
        || view
            .attachments()
            .iter()
            .any(|a| a.ambiguous || a.content_left_out)
        || crate::mail::uuencode::opens_file(view.full())
}

impl Antivirus {
    /// Sends what `scope` says to clamd; `None` when there is nothing to scan.
    async fn scan(&self, ctx: &mut Context) -> Option<Result<ScanReport, String>> {
        if ctx.message.is_sampled() {
            // A big message is parsed from a sample that holds no attachment bytes: clamd
            // gets the whole message, mapped from its spool file (page cache, not heap),
            // and decodes the MIME parts itself.
            return Some(match ctx.message.raw() {
                Ok(raw) => self
                    .clamd
                    .scan_all(&[&raw])
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(format!("cannot map the message from the spool: {e}")),
            });
        }
        let view = ctx.view();
        let whole = self.scope == AvScope::Message || attachments_unseen_or_many(&view);
        let streams: Vec<&[u8]> = if whole {
            vec![view.full()]
        } else {
            view.attachments()
                .iter()
                .map(|a| a.data.as_slice())
                .filter(|d| !d.is_empty())
                .collect()
        };
        if streams.is_empty() {
            return None;
        }
        Some(
            self.clamd
                .scan_all(&streams)
                .await
                .map_err(|e| e.to_string()),
        )
    }

    /// The scan could not be made: judged without it or deferred, as configured.
    fn unavailable(
        &self,
        ctx: &mut Context,
        started: Option<tokio::time::Instant>,
        error: &dyn std::fmt::Display,
    ) -> Decision {
        self.count("unavailable", started);
        ctx.hit_once(ANTIVIRUS_UNAVAILABLE, MARKER_SCORE);
        match self.on_failure {
            AvFailure::Open => {
                self.warn_failed("virus scan failed: judging without it", error);
                Decision::Continue
            }
            AvFailure::Tempfail => {
                self.warn_failed("virus scan failed: deferring the message", error);
                Decision::Tempfail(Reply::new(
                    451,
                    "4.3.0",
                    "Virus scan unavailable, try again later",
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClamdAddress;
    use crate::policy::ClientInfo;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const WITH_ATTACHMENT: &str = "Subject: x\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n\
--b\r\nContent-Type: application/octet-stream; name=a.bin\r\n\r\nPAYLOAD\r\n--b--\r\n";

    /// What a fake clamd was sent: one entry per stream, in the order they ended.
    type Streams = Arc<std::sync::Mutex<Vec<Vec<u8>>>>;

    /// A clamd that answers every stream with `reply` and keeps what it was sent.
    async fn fake(reply: &'static [u8]) -> (Clamd, Streams) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = ClamdAddress::Tcp(listener.local_addr().unwrap().to_string());
        let streams: Streams = Arc::default();
        let kept = streams.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let kept = kept.clone();
                tokio::spawn(async move {
                    let mut cmd = [0u8; 10];
                    let _ = s.read_exact(&mut cmd).await;
                    let mut stream = Vec::new();
                    loop {
                        let mut len = [0u8; 4];
                        if s.read_exact(&mut len).await.is_err() {
                            return;
                        }
                        let n = u32::from_be_bytes(len) as usize;
                        if n == 0 {
                            break;
                        }
                        let mut chunk = vec![0u8; n];
                        let _ = s.read_exact(&mut chunk).await;
                        stream.extend_from_slice(&chunk);
                    }
                    kept.lock().unwrap().push(stream);
                    let _ = s.write_all(reply).await;
                });
            }
        });
        (
            Clamd::new(address, Duration::from_secs(5), 1 << 20),
            streams,
        )
    }

    fn scanned(streams: &Streams) -> usize {
        streams.lock().unwrap().len()
    }

    fn ctx(message: &str) -> Context {
        let mut ctx = Context::new(ClientInfo::new("192.0.2.1".parse().unwrap()));
        ctx.message = message.as_bytes().to_vec().into();
        ctx
    }

    #[tokio::test]
    async fn infected_is_refused_naming_the_signature() {
        let (clamd, _) = fake(b"stream: Eicar-Test-Signature FOUND\0").await;
        let metrics = Arc::new(Metrics::new());
        let check = Antivirus::new(
            clamd,
            AvFailure::Open,
            AvScope::Attachments,
            Some(metrics.clone()),
        );
        let mut c = ctx(WITH_ATTACHMENT);
        let Decision::Reject(reply) = check.run(&mut c).await else {
            panic!("not rejected");
        };
        assert_eq!(reply.code, 554);
        assert!(reply.to_string().contains("5.7.1"), "{reply}");
        assert!(
            reply.to_string().contains("Eicar-Test-Signature"),
            "{reply}"
        );
        assert!(c.symbols.iter().any(|s| s.name == VIRUS_FOUND));
        let text = metrics.render();
        assert!(
            text.contains("mxguard_antivirus_total{result=\"infected\"} 1"),
            "{text}"
        );
        assert!(text.contains("mxguard_antivirus_scan_duration_seconds_count 1"));
    }

    /// Regression (review): clamd got only the attachment list, and files the list leaves
    /// out were never scanned: EICAR after 1,001 `--` lines (past the part limit), a
    /// uuencoded file in a text part. Such messages, and ones with many attachments (one
    /// clamd connection each), go to clamd whole.
    #[tokio::test]
    async fn files_the_attachment_list_leaves_out_reach_clamd_in_the_whole_message() {
        let (clamd, streams) = fake(b"stream: OK\0").await;
        let check = Antivirus::new(clamd, AvFailure::Open, AvScope::Attachments, None);
        let padded = format!(
            "Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
             --b\r\nContent-Type: text/plain\r\n\r\n{}--b\r\n\
             Content-Type: application/octet-stream; name=a.com\r\n\r\nHIDDEN-PAYLOAD\r\n--b--\r\n",
            "--\r\n".repeat(1001)
        );
        let uuencoded =
            "Subject: x\r\n\r\nsee attached\r\nbegin 644 a.com\r\nM6%5/\r\n`\r\nend\r\n";
        let many_parts: String = (0..40)
            .map(|i| format!("--b\r\nContent-Type: application/octet-stream; name=f{i}.bin\r\n\r\nDATA{i}\r\n"))
            .collect();
        let many = format!(
            "Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n{many_parts}--b--\r\n"
        );
        // Regression (review): a message the delimiter walk gives up on (a Content-Type
        // over 64 KiB) lists its files by name only, with no bytes, and no stream went.
        let unfollowed = format!(
            "Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
             --b\r\nContent-Type: text/plain;\r\n x0=\"{}\"\r\n\r\nhello x--b--\r\n\
             --b\r\nContent-Type: application/zip; name=\"invoice.zip\"\r\n\
             Content-Disposition: attachment; filename=\"invoice.zip\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\nWklQLVBBWUxPQUQ=\r\n--b--\r\n",
            "A".repeat(70_000)
        );
        for (name, message, seen) in [
            ("padded", padded.as_str(), "HIDDEN-PAYLOAD"),
            ("uuencoded", uuencoded, "begin 644 a.com"),
            ("many", many.as_str(), "DATA39"),
            ("unfollowed", unfollowed.as_str(), "WklQLVBBWUxPQUQ="),
        ] {
            streams.lock().unwrap().clear();
            assert_eq!(check.run(&mut ctx(message)).await, Decision::Continue);
            let sent = streams.lock().unwrap().clone();
            assert_eq!(sent.len(), 1, "{name}: one stream, the whole message");
            assert!(
                memchr::memmem::find(&sent[0], seen.as_bytes()).is_some(),
                "{name}: clamd did not get {seen}"
            );
        }
        // An ordinary message still sends its attachments, decoded, one by one.
        streams.lock().unwrap().clear();
        assert_eq!(
            check.run(&mut ctx(WITH_ATTACHMENT)).await,
            Decision::Continue
        );
        assert_eq!(*streams.lock().unwrap(), vec![b"PAYLOAD".to_vec()]);
    }

    #[tokio::test]
    async fn mail_without_attachments_is_not_sent_unless_the_whole_message_is_scanned() {
        let (clamd, sent) = fake(b"stream: OK\0").await;
        let plain = "Subject: x\r\n\r\nhello\r\n";
        let check = Antivirus::new(clamd.clone(), AvFailure::Open, AvScope::Attachments, None);
        assert_eq!(check.run(&mut ctx(plain)).await, Decision::Continue);
        assert_eq!(scanned(&sent), 0);
        let whole = Antivirus::new(clamd, AvFailure::Open, AvScope::Message, None);
        assert_eq!(whole.run(&mut ctx(plain)).await, Decision::Continue);
        assert_eq!(scanned(&sent), 1);
    }

    /// Regression (review): a text or HTML part with `Content-Disposition: attachment` and
    /// no file name (Outlook shows it as `ATT00001.htm`) was no attachment, so in
    /// `scan = "attachments"` mode clamd never saw it.
    #[tokio::test]
    async fn a_part_attached_without_a_name_is_scanned() {
        let (clamd, streams) = fake(b"stream: OK\0").await;
        let check = Antivirus::new(clamd, AvFailure::Open, AvScope::Attachments, None);
        let message = "Subject: x\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n\
--b\r\nContent-Type: text/html\r\nContent-Disposition: attachment\r\n\r\n<script>SMUGGLED</script>\r\n--b--\r\n";
        assert_eq!(check.run(&mut ctx(message)).await, Decision::Continue);
        let sent = streams.lock().unwrap().clone();
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert!(memchr::memmem::find(&sent[0], b"SMUGGLED").is_some());
    }

    /// Regression (review): a second `Content-Type: text/plain` on the root made the
    /// message one text part to the parser, with no attachment to stream, while mail
    /// clients read the first field and show the attachment: clamd got nothing.
    #[tokio::test]
    async fn a_repeated_type_on_a_container_sends_the_whole_message() {
        let (clamd, streams) = fake(b"stream: OK\0").await;
        let check = Antivirus::new(clamd, AvFailure::Open, AvScope::Attachments, None);
        let message = WITH_ATTACHMENT.replacen(
            "boundary=b\r\n",
            "boundary=b\r\nContent-Type: text/plain\r\n",
            1,
        );
        assert_eq!(check.run(&mut ctx(&message)).await, Decision::Continue);
        let sent = streams.lock().unwrap().clone();
        assert_eq!(sent, vec![message.into_bytes()]);
    }

    /// A shadow policy judges a fork of the live context: with the same clamd and scope it
    /// reuses the live scan (the same verdict, nothing sent again); another scope scans, and
    /// so does the next transaction.
    #[tokio::test]
    async fn a_forked_context_reuses_the_scan_of_the_same_clamd() {
        let (clamd, sent) = fake(b"stream: Eicar-Test-Signature FOUND\0").await;
        let check = Antivirus::new(clamd.clone(), AvFailure::Open, AvScope::Attachments, None);
        let mut live = ctx(WITH_ATTACHMENT);
        let first = check.run(&mut live).await;
        assert!(matches!(first, Decision::Reject(_)), "{first:?}");
        let mut shadow = live.fork();
        shadow.symbols.clear();
        assert_eq!(check.run(&mut shadow).await, first);
        assert!(shadow.symbols.iter().any(|s| s.name == VIRUS_FOUND));
        assert_eq!(scanned(&sent), 1);
        let whole = Antivirus::new(clamd, AvFailure::Open, AvScope::Message, None);
        let mut other = live.fork();
        assert!(matches!(whole.run(&mut other).await, Decision::Reject(_)));
        assert_eq!(scanned(&sent), 2);
        // The next transaction of the session is another message: scanned again.
        live.reset_transaction();
        live.message = WITH_ATTACHMENT.as_bytes().to_vec().into();
        assert!(matches!(check.run(&mut live).await, Decision::Reject(_)));
        assert_eq!(scanned(&sent), 3);
    }

    #[tokio::test]
    async fn clamd_down_follows_on_failure() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let down = Clamd::new(
            ClamdAddress::Tcp(format!("127.0.0.1:{port}")),
            Duration::from_secs(5),
            1024,
        );
        let metrics = Arc::new(Metrics::new());
        let open = Antivirus::new(
            down.clone(),
            AvFailure::Open,
            AvScope::Attachments,
            Some(metrics.clone()),
        );
        let mut c = ctx(WITH_ATTACHMENT);
        assert_eq!(open.run(&mut c).await, Decision::Continue);
        assert!(c.symbols.iter().any(|s| s.name == ANTIVIRUS_UNAVAILABLE));
        let tempfail = Antivirus::new(down, AvFailure::Tempfail, AvScope::Attachments, None);
        let Decision::Tempfail(reply) = tempfail.run(&mut ctx(WITH_ATTACHMENT)).await else {
            panic!("not deferred");
        };
        assert_eq!(reply.code, 451);
        assert!(metrics
            .render()
            .contains("mxguard_antivirus_total{result=\"unavailable\"} 1"));
    }

    #[test]
    fn signature_names_cannot_break_the_reply() {
        assert_eq!(reply_safe("Bad\r\n250 OK"), "Bad__250_OK");
        assert_eq!(reply_safe(""), "unnamed");
        assert_eq!(reply_safe(&"x".repeat(500)).len(), 100);
    }
}
