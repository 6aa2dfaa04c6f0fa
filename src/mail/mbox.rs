//! mbox files (RFC 4155): messages one after another, each starting with a `From ` line
//! (`From sender asctime-date`). A mail client's folder (a Thunderbird "Junk" folder) is
//! one such file, and learning it as one message would teach the classifier one example
//! made of all of them.

/// Whether `line` (without its line ending) is an mbox separator: `From `, a sender
/// without blanks, then a date whose first word is a weekday. A body line that merely
/// starts with "From " (`From the desk of ...`) has no such shape.
fn is_separator(line: &[u8]) -> bool {
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

/// The messages of `raw`: a file that starts with a separator line is split before each
/// separator line that follows a blank line, each message keeping its own `From ` line;
/// any other file (a message without a `From ` line, whatever its body holds) is one
/// message, returned whole.
pub fn messages(raw: &[u8]) -> Vec<&[u8]> {
    let first = raw.split(|&b| b == b'\n').next().unwrap_or_default();
    if !is_separator(first.strip_suffix(b"\r").unwrap_or(first)) {
        return vec![raw];
    }
    let mut starts = vec![0];
    let mut at = 0;
    let mut blank_before = false;
    for line in raw.split_inclusive(|&b| b == b'\n') {
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if at > 0 && blank_before && is_separator(text) {
            starts.push(at);
        }
        blank_before = text.is_empty();
        at += line.len();
    }
    if starts.len() == 1 {
        return vec![raw];
    }
    starts.push(raw.len());
    starts
        .windows(2)
        .filter_map(|w| raw.get(w[0]..w[1]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_splits_at_its_separators_and_a_message_stays_whole() {
        let one = b"From a@b.test Mon Dec  2 10:00:00 2026\nSubject: one\n\nFrom the desk of Bob\n\nbody\n";
        assert_eq!(messages(one), vec![one.as_slice()]);
        let folder = b"From a@b.test Mon Dec  2 10:00:00 2026\nSubject: one\n\nbody one\n\n\
From c@d.test Tue Dec  3 11:00:00 2026\nSubject: two\n\nbody two\n\n\
From e@f.test  Wed Dec  4 12:00:00 2026\nSubject: three\n\nbody three\n";
        let got = messages(folder);
        assert_eq!(got.len(), 3);
        assert!(got[0].starts_with(b"From a@b.test") && got[0].ends_with(b"body one\n\n"));
        assert!(got[1].starts_with(b"From c@d.test"));
        assert!(got[2].ends_with(b"body three\n"));
        // No blank line before it: a body line, not a separator.
        let glued = b"From a@b.test Mon Dec  2 10:00:00 2026\nSubject: x\n\nline\n\
From a@b.test Mon Dec  2 10:00:00 2026\n";
        assert_eq!(messages(glued).len(), 1);
        // A message file without a `From ` line is never split, whatever its body holds.
        let eml = b"Subject: x\n\nquoted:\n\nFrom a@b.test Mon Dec  2 10:00:00 2026\nmore\n";
        assert_eq!(messages(eml), vec![eml.as_slice()]);
    }
}
