//! `format=flowed; delsp=yes` text (RFC 3676) as a client shows it: a line that ends in a
//! space is a soft break, and with `delsp=yes` that space is the sender's, added only to
//! mark the break, so the client joins the two lines with nothing between them. A link or
//! word split there (`http://spam.exa␠⏎mple/`) reads whole on screen and must be read whole
//! by the checks. Without `delsp=yes` the space stays, so nothing split there reads as one
//! word, and the text needs no joining for the checks.

use mail_parser::{MessagePart, MimeHeaders};

/// Whether `part` is `text/plain` flowed with `delsp=yes`.
pub fn deletes_soft_break_spaces(part: &MessagePart<'_>) -> bool {
    let Some(ct) = part.content_type() else {
        return false;
    };
    let is = |name: &str, want: &str| {
        ct.attribute(name)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case(want))
    };
    ct.ctype().eq_ignore_ascii_case("text")
        && ct.subtype().is_none_or(|s| s.eq_ignore_ascii_case("plain"))
        && is("format", "flowed")
        && is("delsp", "yes")
}

/// `text` (lines ending in `\n` or `\r\n`; the result's in `\n`) with its soft breaks joined
/// as RFC 3676 §4.2 says for `delsp=yes`: a line ending in a space, other than the
/// signature separator `-- `, loses that space and runs on into the next line when both
/// have the same quote depth; the space that stuffs a line is dropped.
pub fn unflow_delsp(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    // The quote depth of the paragraph being joined, while one is open.
    let mut open: Option<usize> = None;
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let depth = line.bytes().take_while(|&b| b == b'>').count();
        let content = &line[depth..];
        let content = content.strip_prefix(' ').unwrap_or(content);
        match open {
            Some(d) if d == depth => {}
            Some(_) => out.push('\n'),
            None => {}
        }
        if open != Some(depth) {
            out.push_str(&line[..depth]);
            if depth > 0 {
                out.push(' ');
            }
        }
        let soft = content.ends_with(' ') && content != "-- ";
        if soft {
            out.push_str(&content[..content.len() - 1]);
            open = Some(depth);
        } else {
            out.push_str(content);
            out.push('\n');
            open = None;
        }
    }
    // `split` gives one empty line after the text's last `\n`.
    if open.is_none() && out.ends_with("\n\n") {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_breaks_join_without_their_space() {
        let text = "Visit http://spam.exa \nmple/buy now \nor never.\n-- \nsig\n";
        assert_eq!(
            unflow_delsp(text),
            "Visit http://spam.example/buy nowor never.\n-- \nsig\n"
        );
    }

    #[test]
    fn crlf_lines_read_as_lf_lines() {
        let text = "Visit http://spam.exa \r\nmple/buy\r\n";
        assert_eq!(unflow_delsp(text), "Visit http://spam.example/buy\n");
    }

    #[test]
    fn quote_depths_are_not_joined_and_stuffing_is_dropped() {
        let text = "> quoted \n>> deeper \n>> still\n  From here\nplain\n";
        assert_eq!(
            unflow_delsp(text),
            "> quoted\n>> deeperstill\n From here\nplain\n"
        );
    }

    #[test]
    fn a_flowed_part_is_known_by_its_parameters() {
        let parse = |ct: &str| {
            let raw = format!("Content-Type: {ct}\r\n\r\nbody\r\n");
            let message = mail_parser::MessageParser::default()
                .parse(raw.as_bytes())
                .map(|m| deletes_soft_break_spaces(&m.parts[0]));
            message.unwrap_or(false)
        };
        assert!(parse("text/plain; format=flowed; delsp=yes"));
        assert!(parse("TEXT/PLAIN; Format=\"Flowed\"; DelSp=\"Yes\""));
        assert!(!parse("text/plain; format=flowed"));
        assert!(!parse("text/plain; format=flowed; delsp=no"));
        assert!(!parse("text/html; format=flowed; delsp=yes"));
    }
}
