//! Where each key of a configuration file is written: the line a problem is reported at,
//! and the entry to set aside so that one refused key does not hide the next.

use std::ops::Range;
use toml_edit::{ImDocument, Item, Table, Value};

/// One key as written: its dotted path and the bytes from its key to the end of its value
/// (a table header: to the end of its last key-value). Only a whole line's entry can be
/// blanked out: one inside an inline table or an array would leave a stray comma.
#[derive(Debug, Clone)]
struct Entry {
    path: String,
    span: Range<usize>,
    removable: bool,
}

/// A configuration file's text with the position of every key in it.
#[derive(Debug)]
pub(super) struct Source {
    text: String,
    entries: Vec<Entry>,
}

impl Source {
    /// Reads the positions of `text`'s keys; a file that does not parse as TOML has none
    /// (its parse error carries its own position).
    pub(super) fn new(text: &str) -> Source {
        let mut entries = Vec::new();
        if let Ok(doc) = ImDocument::parse(text) {
            walk_table(text, doc.as_table(), "", &mut entries);
        }
        Source {
            text: text.to_owned(),
            entries,
        }
    }

    /// The 1-based line of byte `offset`.
    pub(super) fn line_at(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        1 + self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
    }

    /// The line where `key` (as problems name it: `relay.internal`, `policy.dnsbl[0].zone`,
    /// `relay.recipients.lists.example.test`) is written; for a key left out, the line of
    /// the nearest table around it that is written (`[relay]` for a missing
    /// `relay.internal`), where it would go.
    pub(super) fn line_of_key(&self, key: &str) -> Option<usize> {
        let mut wanted = normalise(key);
        loop {
            if let Some(entry) = self.entries.iter().find(|e| normalise(&e.path) == wanted) {
                return Some(self.line_at(entry.span.start));
            }
            wanted.truncate(wanted.rfind('.')?);
        }
    }

    /// The innermost key written around byte `offset` (among those that can be blanked
    /// out, when `removable`).
    fn entry_at(&self, offset: usize, removable: bool) -> Option<&Entry> {
        self.entries
            .iter()
            .filter(|e| e.removable || !removable)
            .filter(|e| e.span.contains(&offset) || e.span.start == offset)
            .min_by_key(|e| e.span.len())
    }

    /// The text with the entry around `offset` blanked out (spaces, lines kept, so every
    /// other position stays where it was), and the path of the innermost key there;
    /// `None` when no key is written there.
    pub(super) fn without_entry_at(&self, offset: usize) -> Option<(String, String)> {
        let innermost = self.entry_at(offset, false)?;
        let entry = self.entry_at(offset, true)?;
        let mut bytes = self.text.clone().into_bytes();
        for b in bytes.get_mut(entry.span.clone())?.iter_mut() {
            if *b != b'\n' && *b != b'\r' {
                *b = b' ';
            }
        }
        // Every byte of a multi-byte character became a space: still UTF-8.
        let text = String::from_utf8(bytes).ok()?;
        Some((text, innermost.path.clone()))
    }
}

/// `a.b[0].c` and `a.b.0.c` alike, so a problem's key finds the entry of an array element;
/// in any case, as problems name the domains of recipient lists in lower case.
fn normalise(path: &str) -> String {
    path.replace('[', ".").replace(']', "").to_ascii_lowercase()
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

fn walk_table(text: &str, table: &Table, prefix: &str, entries: &mut Vec<Entry>) {
    for (key, item) in table.iter() {
        let path = join(prefix, key);
        // A dotted key (`recipients.lists = ...`) is blanked from its line's start.
        let key_start = table
            .key(key)
            .and_then(|k| k.span())
            .map(|s| line_start(text, s.start));
        match item {
            Item::Table(t) => walk_section(text, t, path.clone(), entries),
            Item::ArrayOfTables(tables) => {
                for (i, t) in tables.iter().enumerate() {
                    walk_section(text, t, format!("{path}.{i}"), entries);
                }
            }
            Item::Value(value) => {
                if let (Some(start), Some(span)) = (key_start, value.span()) {
                    entries.push(Entry {
                        path: path.clone(),
                        span: start..span.end,
                        removable: true,
                    });
                }
                walk_value(value, &path, entries);
            }
            Item::None => {}
        }
    }
}

/// A `[table]` or `[[array]]` element: its header (blanked with its own key-values), then
/// its keys. A table only implied by dotted keys has no header of its own.
fn walk_section(text: &str, table: &Table, path: String, entries: &mut Vec<Entry>) {
    if let Some(header) = table.span() {
        entries.push(Entry {
            path: path.clone(),
            span: header.start..own_values_end(table).max(header.end),
            removable: true,
        });
    }
    walk_table(text, table, &path, entries);
}

fn walk_value(value: &Value, prefix: &str, entries: &mut Vec<Entry>) {
    match value {
        Value::InlineTable(t) => {
            for (key, v) in t.iter() {
                let path = join(prefix, key);
                let key_start = t.key(key).and_then(|k| k.span()).map(|s| s.start);
                if let (Some(start), Some(span)) = (key_start, v.span()) {
                    entries.push(Entry {
                        path: path.clone(),
                        span: start..span.end,
                        removable: false,
                    });
                }
                walk_value(v, &path, entries);
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                let path = format!("{prefix}.{i}");
                if let Some(span) = v.span() {
                    entries.push(Entry {
                        path: path.clone(),
                        span,
                        removable: false,
                    });
                }
                walk_value(v, &path, entries);
            }
        }
        _ => {}
    }
}

/// Where `offset`'s line starts.
fn line_start(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .and_then(|before| before.rfind('\n'))
        .map_or(0, |nl| nl + 1)
}

/// Where a table's own key-values end (0 when it has none).
fn own_values_end(table: &Table) -> usize {
    table
        .iter()
        .filter_map(|(_, item)| match item {
            Item::Value(v) => v.span().map(|s| s.end),
            _ => None,
        })
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str =
        "[server]\nlisten = [\"127.0.0.1:2525\"]\n\n[relay]\ndomains = [\"a.test\"]\n\
                        recipients.lists = { \"example.test\" = \"lists/e\" }\n\
                        [[policy.dnsbl]]\nzone = \"zen.example\"\n";

    #[test]
    fn keys_are_found_at_their_lines() {
        let s = Source::new(TEXT);
        assert_eq!(s.line_of_key("server.listen"), Some(2));
        assert_eq!(s.line_of_key("relay.domains"), Some(5));
        assert_eq!(
            s.line_of_key("relay.recipients.lists.example.test"),
            Some(6)
        );
        assert_eq!(s.line_of_key("policy.dnsbl[0].zone"), Some(8));
        // Left out: the line of its table, or none when that is left out too.
        assert_eq!(s.line_of_key("relay.internal"), Some(4));
        assert_eq!(s.line_of_key("tier.secret_file"), None);
        let mixed = Source::new("[relay.recipients]\nlists = { \"Example.Test\" = \"l\" }\n");
        assert_eq!(
            mixed.line_of_key("relay.recipients.lists.example.test"),
            Some(2)
        );
    }

    #[test]
    fn an_entry_is_blanked_in_place() {
        let s = Source::new(TEXT);
        let at = TEXT.find("domains").unwrap() + 2;
        let (text, path) = s.without_entry_at(at).unwrap();
        assert_eq!(path, "relay.domains");
        assert_eq!(text.len(), TEXT.len());
        assert!(!text.contains("domains") && text.contains("recipients.lists"));
        let at = TEXT.find("[server]").unwrap();
        let (text, path) = s.without_entry_at(at).unwrap();
        assert_eq!(path, "server");
        assert!(!text.contains("listen") && text.contains("[relay]"));
    }
}
