//! How the message's MIME parts were written (`mail::qp_shape`): mail programs keep to
//! RFC 2045, bulk-mailing scripts often do not. SpamAssassin's `MIME_QP_LONG_LINE` is the
//! same idea. The symbols are scored in the rules files.

use crate::policy::{Check, Context, Decision, Stage};
use async_trait::async_trait;

/// A quoted-printable line over 76 characters.
pub const QP_LONG_LINE: &str = "MIME_QP_LONG_LINE";
/// Printable characters escaped for no reason, [`NEEDLESS_ESCAPES`] times or more.
pub const QP_NEEDLESS: &str = "MIME_QP_NEEDLESS";
/// Needless escapes before [`QP_NEEDLESS`] is hit: one or two are a quirk of some
/// converter, five are punctuation escaped inside words on purpose.
pub const NEEDLESS_ESCAPES: usize = 5;

/// Scores quoted-printable parts written against RFC 2045.
#[derive(Debug)]
pub struct MimeShape;

#[async_trait]
impl Check for MimeShape {
    fn name(&self) -> &'static str {
        "mime_shape"
    }

    fn stage(&self) -> Stage {
        Stage::Data
    }

    async fn run(&self, ctx: &mut Context) -> Decision {
        let shape = ctx.view().qp_shape();
        if shape.long_line {
            ctx.hit(QP_LONG_LINE, 0.0);
        }
        if shape.needless_escapes >= NEEDLESS_ESCAPES {
            ctx.hit(QP_NEEDLESS, 0.0);
        }
        Decision::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::ClientInfo;

    async fn names(raw: String) -> Vec<String> {
        let mut ctx = Context::new(ClientInfo::new("192.0.2.1".parse().unwrap()));
        ctx.message = raw.into_bytes().into();
        MimeShape.run(&mut ctx).await;
        ctx.symbols.iter().map(|s| s.name.clone()).collect()
    }

    fn message(encoding: &str, body: &str) -> String {
        format!(
            "From: a@example.test\r\nSubject: t\r\nContent-Type: text/plain\r\n\
             Content-Transfer-Encoding: {encoding}\r\n\r\n{body}\r\n"
        )
    }

    #[tokio::test]
    async fn ratware_quoted_printable_hits_and_a_mail_program_does_not() {
        let long = "word ".repeat(30);
        assert_eq!(
            names(message("quoted-printable", &long)).await,
            [QP_LONG_LINE]
        );
        let escaped = "=22Free=22 m=2Eoney at info=40example=2Ecom";
        assert_eq!(
            names(message("quoted-printable", escaped)).await,
            [QP_NEEDLESS]
        );
        let fine = "Caf=C3=A9 au lait, 2 =3D 1 + 1=2E\r\nsoft=\r\nbreak";
        assert!(names(message("quoted-printable", fine)).await.is_empty());
        // The same text not sent quoted-printable says nothing of its encoder.
        assert!(names(message("8bit", &long)).await.is_empty());
        assert!(names(message("7bit", escaped)).await.is_empty());
    }
}
