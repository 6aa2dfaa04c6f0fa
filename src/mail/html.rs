//! HTML read as a browser reads it, where both renderers (the rules' `html_text` and the
//! classifier's) must agree: a sender hides text from whichever of them reads it otherwise.

/// The length of a comment's rest, `after_open` being the text after its `<!--`: up to and
/// including its end, or all of it when the comment is never closed (it then runs to the
/// end of the document). HTML5 ends a comment at `-->`, at `--!>`, and at once at an
/// abrupt `>` or `->` (`<!-->`, `<!--->` are empty comments, and what follows them shows).
pub fn comment_len(after_open: &str) -> usize {
    if after_open.starts_with('>') {
        return 1;
    }
    if after_open.starts_with("->") {
        return 2;
    }
    let closed = after_open.find("-->").map(|e| e + 3);
    let bang = after_open.find("--!>").map(|e| e + 4);
    match (closed, bang) {
        (Some(a), Some(b)) => a.min(b),
        (Some(end), None) | (None, Some(end)) => end,
        (None, None) => after_open.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_end_where_a_browser_ends_them() {
        for (after_open, rest) in [
            (" note -->shown", "shown"),
            ("> shown", " shown"),
            ("-> shown", " shown"),
            (" note --!>shown", "shown"),
            (" a --!> b -->c", " b -->c"),
            (" never closed", ""),
            ("", ""),
        ] {
            assert_eq!(
                &after_open[comment_len(after_open)..],
                rest,
                "{after_open:?}"
            );
        }
    }
}
