//! mbox files (RFC 4155): messages one after another, each starting with a `From ` line
//! (`From sender asctime-date`). A mail client's folder (a Thunderbird "Junk" folder) is
//! one such file, and learning it as one message would teach the classifier one example
//! made of all of them.

use std::borrow::Cow;

/// Whether `line` (without its line ending) is an mbox separator: `From `, a sender
/// without blanks, then a date whose first word is a weekday. A body line that merely
/// starts with "From " (`From the desk of ...`) has no such shape.
pub fn is_separator(line: &[u8]) -> bool {
    const DAYS: [&[u8]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];
    let Some(rest) = line.strip_prefix(b"From ") else {
        return false;
    };
    let mut words = rest
        .split(|&b| b == b' ' || b == b'\t')
        .filter(|w| !w.is_empty());
    let (Some(_sender), Some(day)) = (words.next(), words.next()) else {
        return false;
    };
    DAYS.contains(&day)
}

/// `line` without its line ending.
fn text_of(line: &[u8]) -> &[u8] {
    let text = line.strip_suffix(b"\n").unwrap_or(line);
    text.strip_suffix(b"\r").unwrap_or(text)
}

/// The messages of `raw`, as the mail program that wrote them sent them: a file that
/// starts with a separator line is split before each separator line that follows a blank
/// line, and each message loses what the mbox format added to it (its `From ` line, the
/// blank line that ends it, and one `>` of a `>From ` line), so a message learned from a
/// folder has the body digest of the same message learned from its own file or by the
/// gateway. Any other file (a message without a `From ` line, whatever its body holds) is
/// one message, returned whole.
pub fn messages(raw: &[u8]) -> Vec<Cow<'_, [u8]>> {
    let first = raw.split(|&b| b == b'\n').next().unwrap_or_default();
    if !is_separator(first.strip_suffix(b"\r").unwrap_or(first)) {
        return vec![Cow::Borrowed(raw)];
    }
    let mut starts = vec![0];
    let mut at = 0;
    let mut blank_before = false;
    for line in raw.split_inclusive(|&b| b == b'\n') {
        let text = text_of(line);
        if at > 0 && blank_before && is_separator(text) {
            starts.push(at);
        }
        blank_before = text.is_empty();
        at += line.len();
    }
    starts.push(raw.len());
    starts
        .windows(2)
        .filter_map(|w| raw.get(w[0]..w[1]))
        .map(unwrapped)
        .collect()
}

/// One message of an mbox file, `From ` line included, without what mbox added to it.
fn unwrapped(stored: &[u8]) -> Cow<'_, [u8]> {
    let mut lines: Vec<&[u8]> = stored.split_inclusive(|&b| b == b'\n').skip(1).collect();
    // Writers end every message with a blank line, the last one of a file too.
    if lines
        .last()
        .is_some_and(|l| l.ends_with(b"\n") && text_of(l).is_empty())
    {
        lines.pop();
    }
    let mut out = Vec::with_capacity(stored.len());
    for line in lines {
        // mboxrd quotes every `>*From ` line with one more `>`, mboxo every `From ` line.
        let quotes = line.iter().take_while(|&&b| b == b'>').count();
        let quoted = quotes > 0 && line[quotes..].starts_with(b"From ");
        out.extend_from_slice(if quoted { &line[1..] } else { line });
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_splits_at_its_separators_and_a_message_stays_whole() {
        let folder = b"From a@b.test Mon Dec  2 10:00:00 2026\nSubject: one\n\nbody one\n\n\
From c@d.test Tue Dec  3 11:00:00 2026\nSubject: two\n\nbody two\n\n\n\
From e@f.test  Wed Dec  4 12:00:00 2026\nSubject: three\n\nbody three\n";
        let got = messages(folder);
        assert_eq!(got.len(), 3);
        assert_eq!(&*got[0], b"Subject: one\n\nbody one\n");
        // The message's own blank line stays; the one mbox added goes.
        assert_eq!(&*got[1], b"Subject: two\n\nbody two\n\n");
        assert_eq!(&*got[2], b"Subject: three\n\nbody three\n");
        // No blank line before it: a body line, not a separator.
        let glued = b"From a@b.test Mon Dec  2 10:00:00 2026\nSubject: x\n\nline\n\
From a@b.test Mon Dec  2 10:00:00 2026\n";
        assert_eq!(messages(glued).len(), 1);
        // A message file without a `From ` line is never split, whatever its body holds.
        let eml = b"Subject: x\n\nquoted:\n\nFrom a@b.test Mon Dec  2 10:00:00 2026\nmore\n";
        assert_eq!(messages(eml), vec![Cow::Borrowed(eml.as_slice())]);
    }

    #[test]
    fn a_message_from_a_folder_is_the_message_its_sender_wrote() {
        let sent = b"Subject: s\r\n\r\nFrom the desk of Bob\r\n>From quoted\r\n\r\n";
        let folder = b"From a@b.test Mon Dec  2 10:00:00 2026\r\nSubject: s\r\n\r\n\
>From the desk of Bob\r\n>>From quoted\r\n\r\n\r\n\
From c@d.test Tue Dec  3 11:00:00 2026\r\nSubject: s\r\n\r\n\
>From the desk of Bob\r\n>>From quoted\r\n\r\n\r\n";
        let got = messages(folder);
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|m| &**m == sent.as_slice()));
        // A folder of one message is unwrapped alike.
        let one = b"From a@b.test Mon Dec  2 10:00:00 2026\nSubject: one\n\nFrom the desk\n\n";
        assert_eq!(
            messages(one),
            vec![Cow::Borrowed(b"Subject: one\n\nFrom the desk\n".as_slice())]
        );
    }
}
