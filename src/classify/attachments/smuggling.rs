//! HTML smuggling: an `.html` attachment whose script rebuilds a file from data it carries
//! (base64 through `atob`, or a long array of byte values), wraps it in a `Blob` and makes
//! the browser save it (`URL.createObjectURL` with an `<a download>`, or
//! `msSaveOrOpenBlob`), so the program inside (an ISO, a zip, a script) never crosses the
//! gateway as a file any name or content check can see. Saved web pages and reports hold
//! no such payload; a page whose export button builds a Blob from its own table does not
//! carry one either.

/// Bytes of a page read: the payload of a smuggling page is the file it delivers, often
/// megabytes, but the script that saves it and the start of the payload come first or
/// last, and both ends are read.
const MAX_READ: usize = 1 << 20;

/// A run of base64 characters this long (or of byte values written out) is a file, not
/// an image's inline icon or a token.
const PAYLOAD_RUN: usize = 2000;

/// Whether the attachment is an HTML page: by the extension of one of its names, or a
/// declared HTML type on a named part (the message's own HTML body is not an attachment a
/// browser opens).
pub(super) fn is_html_file(exts: &[Option<String>], content_type: &str, named: bool) -> bool {
    let by_ext = exts.iter().any(|e| {
        matches!(
            e.as_deref(),
            Some("htm" | "html" | "shtml" | "xhtml" | "xht" | "hta")
        )
    });
    by_ext || (named && matches!(content_type, "text/html" | "application/xhtml+xml"))
}

/// Whether a page builds a file from data it carries and has the browser save it.
pub(super) fn smuggles_a_file(data: &[u8]) -> bool {
    // Both ends of a long page: the script comes before or after a payload of any length.
    let pieces = if data.len() <= 2 * MAX_READ {
        [data, &[][..]]
    } else {
        [&data[..MAX_READ], &data[data.len() - MAX_READ..]]
    };
    // Lower case, spaces and quotes out, so `new Blob (`, `a.download = "x"` and
    // `window["URL"]["createObjectURL"]` read alike.
    let packed: Vec<u8> = pieces
        .iter()
        .flat_map(|piece| piece.iter())
        .filter(|b| !b.is_ascii_whitespace() && !matches!(b, b'"' | b'\'' | b'`' | b'+'))
        .map(u8::to_ascii_lowercase)
        .collect();
    let has = |marker: &[u8]| memchr::memmem::find(&packed, marker).is_some();
    let builds_blob = has(b"blob");
    let saves = has(b"createobjecturl") || has(b"mssaveoropenblob") || has(b"mssaveblob");
    let downloads = has(b"download") || has(b"mssave");
    let carries = has(b"atob(")
        || pieces
            .iter()
            .any(|piece| payload_run(piece, is_base64) || payload_run(piece, is_byte_list));
    let data_link = has(b"download=") && has(b"href=data:application/");
    (builds_blob && saves && downloads && carries) || data_link
}

fn is_base64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/')
}

fn is_byte_list(b: u8) -> bool {
    b.is_ascii_digit() || matches!(b, b',' | b' ' | b'x' | b'X')
}

/// Whether a run of [`PAYLOAD_RUN`] bytes or more that `class` accepts stands outside a
/// `data:` link: saved pages carry their fonts and images as `data:…;base64,` links,
/// which a browser shows and never saves as a file.
fn payload_run(text: &[u8], class: fn(u8) -> bool) -> bool {
    let mut start: usize = 0;
    for at in 0..=text.len() {
        if text.get(at).is_some_and(|&b| class(b)) {
            continue;
        }
        let in_data_link = || {
            start
                .checked_sub(7)
                .is_some_and(|from| text[from..start].eq_ignore_ascii_case(b"base64,"))
        };
        if at - start >= PAYLOAD_RUN && !in_data_link() {
            return true;
        }
        start = at + 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(script: &str) -> Vec<u8> {
        format!(
            "<html><body><p>Your document is loading</p><script>{script}</script></body></html>"
        )
        .into_bytes()
    }

    const SAVE_ANCHOR: &str =
        "var u = window.URL.createObjectURL(b); var a = document.createElement('a');\n\
                               a.href = u; a.download = 'invoice.iso'; a.click();";

    #[test]
    fn a_page_that_saves_a_file_it_carries_smuggles() {
        let payload = "TVqQAAMAAAAEAAAA".repeat(200);
        let base64 = format!(
            "var d = atob('{payload}'); var b = new Blob([d], {{type: 'application/octet-stream'}});\n{SAVE_ANCHOR}"
        );
        assert!(smuggles_a_file(&page(&base64)));
        let bytes = (0..1000)
            .map(|i| (i % 256).to_string())
            .collect::<Vec<_>>()
            .join(",");
        let array = format!("var b = new Blob([new Uint8Array([{bytes}])]);\n{SAVE_ANCHOR}");
        assert!(smuggles_a_file(&page(&array)));
        // Old Edge and Internet Explorer save without an anchor.
        let ms = format!(
            "var b = new Blob([atob('{payload}')]); navigator.msSaveOrOpenBlob(b, 'x.zip');"
        );
        assert!(smuggles_a_file(&page(&ms)));
        // Names split and quoted to dodge a search.
        let split = format!(
            "var b = new window['Bl'+'ob']([atob(\"{payload}\")]); var u = window[\"URL\"][\"create\" + \"ObjectURL\"](b);\n\
             var a = document.createElement('a'); a['down'+'load'] = 'x.img'; a.href = u; a.click();"
        );
        assert!(smuggles_a_file(&page(&split)));
        // A link to the file itself, as data.
        let link = format!("</script><a href=\"data:application/x-iso9660-image;base64,{payload}\" download=\"x.iso\">open</a><script>");
        assert!(smuggles_a_file(&page(&link)));
    }

    #[test]
    fn pages_that_carry_no_file_or_save_none_do_not_smuggle() {
        // An export button building a Blob from the page's own table.
        let export =
            format!("var b = new Blob([table.innerText], {{type: 'text/csv'}});\n{SAVE_ANCHOR}");
        assert!(!smuggles_a_file(&page(&export)));
        // An inline image is base64 too, but the page saves nothing.
        let icon = format!(
            "</script><img src=\"data:image/png;base64,{}\"><script>",
            "iVBORw0KGgo".repeat(400)
        );
        assert!(!smuggles_a_file(&page(&icon)));
        // A saved chart page: its library offers a download of the chart as a Blob, and
        // its font comes as a data link, which is no payload.
        let chart = format!(
            "</script><style>@font-face {{src: url(data:font/woff2;base64,{})}}</style><script>\n\
             function save(svg) {{ var b = new Blob([svg]); var a = document.createElement('a');\n\
             a.href = URL.createObjectURL(b); a.download = 'chart.svg'; a.click(); }}",
            "d09GMgABAAAAA".repeat(300)
        );
        assert!(!smuggles_a_file(&page(&chart)));
        assert!(!smuggles_a_file(
            b"<html><body>Minutes of the meeting</body></html>"
        ));
        assert!(!smuggles_a_file(b""));
    }

    #[test]
    fn a_payload_in_the_middle_of_a_huge_page_still_shows_its_script() {
        let mut data =
            page("var d = atob(document.getElementById('p').textContent);\nvar b = new Blob([d]);");
        data.extend(b"<div id=p>");
        data.extend("QUJD".repeat(MAX_READ).as_bytes());
        data.extend(b"</div><script>");
        data.extend(SAVE_ANCHOR.as_bytes());
        data.extend(b"</script>");
        assert!(smuggles_a_file(&data));
    }

    #[test]
    fn html_files_are_known_by_name_or_by_a_named_html_part() {
        let none: [Option<String>; 0] = [];
        assert!(is_html_file(
            &[Some("html".to_string())],
            "application/octet-stream",
            true
        ));
        assert!(is_html_file(&[Some("htm".to_string())], "", true));
        assert!(is_html_file(&none, "text/html", true));
        assert!(!is_html_file(&none, "text/html", false));
        assert!(!is_html_file(
            &[Some("pdf".to_string())],
            "application/pdf",
            true
        ));
    }
}
