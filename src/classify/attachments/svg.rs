//! SVG attachments that act when opened: an SVG file opens in the browser, where its
//! scripts run and its links and embedded HTML forms work, so phishing sends a page as an
//! "image" (`invoice.svg` holding `<script>location=…</script>`). Logos and drawings
//! exported as SVG hold none of that.

/// Bytes of an SVG read for active content: scripts come early in phishing files, and a
/// megabyte of drawing ahead of them is no drawing anyone mails.
const MAX_READ: usize = 1 << 20;

/// What makes an SVG act: script, a JavaScript or HTML link, embedded HTML or objects.
const ACTIVE: [&[u8]; 8] = [
    b"<script",
    b"javascript:",
    b"<foreignobject",
    b"<iframe",
    b"<embed",
    b"<object",
    b"data:text/html",
    b"<form",
];

/// Whether the attachment is an SVG: by the extension of a name (as the name checks read
/// it), the declared type, or content that opens with an `<svg` element (after an XML
/// declaration, comments, a doctype).
pub(super) fn is_svg(exts: &[Option<String>], content_type: &str, data: &[u8]) -> bool {
    let named = exts.iter().any(|e| e.as_deref() == Some("svg"));
    named || content_type == "image/svg+xml" || {
        let head = &data[..data.len().min(1024)];
        let head = String::from_utf8_lossy(head).to_ascii_lowercase();
        let start = head.trim_start_matches(['\u{feff}', ' ', '\t', '\r', '\n']);
        start.starts_with("<svg") || (start.starts_with("<?xml") && head.contains("<svg"))
    }
}

/// Whether an SVG's content would act when opened: a script element or an event handler
/// attribute (`onload=`), a `javascript:` or `data:text/html` link, or embedded HTML.
pub(super) fn is_active(data: &[u8]) -> bool {
    let text = data[..data.len().min(MAX_READ)].to_ascii_lowercase();
    ACTIVE
        .iter()
        .any(|marker| memchr::memmem::find(&text, marker).is_some())
        || has_event_handler(&text)
}

/// An attribute named `on…` (`onload`, `onclick`, `onbegin`) given a value, in lower-case
/// markup.
fn has_event_handler(text: &[u8]) -> bool {
    memchr::memmem::find_iter(text, b"on").any(|at| {
        let before = at.checked_sub(1).and_then(|b| text.get(b));
        if !before.is_some_and(|b| b.is_ascii_whitespace() || *b == b'/') {
            return false;
        }
        let rest = &text[at + 2..];
        let name = rest.iter().take_while(|b| b.is_ascii_lowercase()).count();
        name > 0
            && rest[name..]
                .iter()
                .find(|b| !b.is_ascii_whitespace())
                .is_some_and(|b| *b == b'=')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svgs_are_known_by_name_type_or_content() {
        let none: [Option<String>; 0] = [];
        assert!(is_svg(&[Some("svg".to_string())], "", b""));
        assert!(is_svg(&none, "image/svg+xml", b""));
        assert!(is_svg(
            &none,
            "",
            b"<?xml version=\"1.0\"?>\n<svg xmlns=\"x\">"
        ));
        assert!(is_svg(&none, "", b"\n <SVG width=1>"));
        assert!(!is_svg(&[Some("png".to_string())], "image/png", b"\x89PNG"));
    }

    #[test]
    fn active_content_is_found_and_drawings_pass() {
        for active in [
            "<svg><script>location='http://x.test'</script></svg>",
            "<svg onload=\"fetch('x')\"></svg>",
            "<svg><rect\n onclick = 'a()'/></svg>",
            "<svg><a xlink:href=\"javascript:go()\">x</a></svg>",
            "<svg><foreignObject><form action=x></form></foreignObject></svg>",
            "<svg><a href=\"data:text/html;base64,PGg+\">x</a></svg>",
        ] {
            assert!(is_active(active.as_bytes()), "{active}");
        }
        for drawing in [
            "<svg viewBox=\"0 0 10 10\"><path d=\"M0 0L10 10\" fill=\"#f00\"/></svg>",
            "<svg><text font-family=\"Montserrat\">Upon on one</text></svg>",
            "<svg><a href=\"https://example.test/\"><circle r=\"4\"/></a></svg>",
        ] {
            assert!(!is_active(drawing.as_bytes()), "{drawing}");
        }
    }
}
