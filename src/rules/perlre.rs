//! Perl → Rust regex translation: rewrites SpamAssassin (Perl) regex syntax into the dialect
//! shared by the `regex` and `fancy-regex` crates, noting constructs that need backtracking.
//!
//! What changes: `/i /m /s` become inline flags; `/x` whitespace and comments are removed here
//! (Perl keeps whitespace inside `[...]` under `/x`, the `regex` crate would not); `\Z` and a
//! non-multiline `$` become `\n?\z` (Perl's "end or before a final newline"); `\h \v \R \N \e
//! \cX`, octal escapes, one-digit `\xH`, `\Q...\E` and `(?#...)` are spelled out; escaped
//! punctuation that the `regex` crate reads differently (`\<`, `\>` are word boundaries there)
//! becomes a hex escape; a `[`, `&` or `~` inside a class is escaped (set operators in `regex`);
//! a `{` that is not a quantifier is literal. Lookaround, backreferences, atomic groups and
//! possessive quantifiers are passed through for `fancy-regex` and named in
//! [`Translated::backtracking`].

/// A translated pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Translated {
    /// The pattern, inline flags first.
    pub pattern: String,
    /// Constructs only the backtracking engine supports (empty: the `regex` crate may do).
    pub backtracking: Vec<&'static str>,
}

/// Characters that stay escaped (they are meta characters for the `regex` crate).
const META: &str = "\\.+*?()|[]{}^$#&-~";

/// Translates `source` with Perl `flags` (`imsx`). `line_mode` makes `^`/`$` match at every
/// line (used where each line is a separate subject joined with newlines), so `\A`, `\z`, `\Z`
/// also become line anchors.
pub(crate) fn translate(source: &str, flags: &str, line_mode: bool) -> Result<Translated, String> {
    let mut t = Translator {
        chars: source.chars().collect(),
        pos: 0,
        out: String::with_capacity(source.len() + 16),
        backtracking: Vec::new(),
        extended: flags.contains('x'),
        multiline: flags.contains('m') || line_mode,
        line_mode,
        groups: 0,
    };
    t.count_groups();
    t.run()?;
    let mut prefix = String::new();
    if flags.contains('i') {
        prefix.push('i');
    }
    if t.multiline {
        prefix.push('m');
    }
    if flags.contains('s') {
        prefix.push('s');
    }
    let pattern = if prefix.is_empty() {
        t.out
    } else {
        format!("(?{prefix}){}", t.out)
    };
    t.backtracking.sort_unstable();
    t.backtracking.dedup();
    Ok(Translated {
        pattern,
        backtracking: t.backtracking,
    })
}

struct Translator {
    chars: Vec<char>,
    pos: usize,
    out: String,
    backtracking: Vec<&'static str>,
    extended: bool,
    multiline: bool,
    line_mode: bool,
    /// Number of capture groups (to tell `\10` backreferences from octal).
    groups: usize,
}

impl Translator {
    fn peek(&self, off: usize) -> Option<char> {
        self.chars.get(self.pos + off).copied()
    }

    fn count_groups(&mut self) {
        let mut escaped = false;
        let mut in_class = false;
        for (i, &c) in self.chars.iter().enumerate() {
            if escaped {
                escaped = false;
                continue;
            }
            match c {
                '\\' => escaped = true,
                '[' if !in_class => in_class = true,
                ']' if in_class => in_class = false,
                '(' if !in_class => {
                    let next = self.chars.get(i + 1);
                    let capture = next != Some(&'?')
                        || matches!(
                            (self.chars.get(i + 2), self.chars.get(i + 3)),
                            (Some('P'), Some('<')) | (Some('\''), _)
                        )
                        || (self.chars.get(i + 2) == Some(&'<')
                            && !matches!(self.chars.get(i + 3), Some('=') | Some('!')));
                    if capture {
                        self.groups += 1;
                    }
                }
                _ => {}
            }
        }
    }

    fn run(&mut self) -> Result<(), String> {
        while let Some(c) = self.peek(0) {
            match c {
                '\\' => {
                    self.pos += 1;
                    self.escape(false)?;
                }
                '[' => self.class()?,
                '(' => self.group()?,
                '{' => self.brace(),
                '}' => {
                    self.out.push_str("\\}");
                    self.pos += 1;
                }
                '$' => {
                    self.pos += 1;
                    if self.multiline {
                        self.out.push('$');
                    } else {
                        self.out.push_str("(?:\\n?\\z)");
                    }
                }
                '*' | '+' | '?' => {
                    self.out.push(c);
                    self.pos += 1;
                    self.quantifier_suffix();
                }
                c if self.extended && c.is_whitespace() => self.pos += 1,
                '#' if self.extended => {
                    while let Some(c) = self.peek(0) {
                        self.pos += 1;
                        if c == '\n' {
                            break;
                        }
                    }
                }
                c => {
                    self.out.push(c);
                    self.pos += 1;
                }
            }
        }
        Ok(())
    }

    /// After a quantifier: a lazy `?` passes, a possessive `+` needs backtracking.
    fn quantifier_suffix(&mut self) {
        match self.peek(0) {
            Some('?') => {
                self.out.push('?');
                self.pos += 1;
            }
            Some('+') => {
                self.out.push('+');
                self.pos += 1;
                self.backtracking.push("possessive quantifier");
            }
            _ => {}
        }
    }

    /// `{n}`, `{n,}`, `{n,m}`, `{,m}` are quantifiers; any other `{` is literal.
    fn brace(&mut self) {
        let mut j = self.pos + 1;
        let mut body = String::new();
        while let Some(&c) = self.chars.get(j) {
            if c == '}' {
                break;
            }
            body.push(c);
            j += 1;
        }
        let closed = self.chars.get(j) == Some(&'}');
        let body_ok = {
            let t: String = body.chars().filter(|c| !c.is_whitespace()).collect();
            let (a, b) = match t.split_once(',') {
                Some((a, b)) => (a.to_string(), Some(b.to_string())),
                None => (t.clone(), None),
            };
            let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
            match b {
                None => digits(&a),
                Some(b) => {
                    (digits(&a) || a.is_empty())
                        && (b.is_empty() || digits(&b))
                        && !(a.is_empty() && b.is_empty())
                }
            }
        };
        if closed && body_ok {
            let t: String = body.chars().filter(|c| !c.is_whitespace()).collect();
            let t = if t.starts_with(',') {
                format!("0{t}")
            } else {
                t
            };
            self.out.push('{');
            self.out.push_str(&t);
            self.out.push('}');
            self.pos = j + 1;
            self.quantifier_suffix();
        } else {
            self.out.push_str("\\{");
            self.pos += 1;
        }
    }

    fn group(&mut self) -> Result<(), String> {
        if self.peek(1) != Some('?') {
            self.out.push('(');
            self.pos += 1;
            return Ok(());
        }
        // (?...
        let after = self.peek(2);
        match after {
            Some('#') => {
                // (?# comment )
                while let Some(c) = self.peek(0) {
                    self.pos += 1;
                    if c == ')' {
                        return Ok(());
                    }
                }
                Err("unterminated (?# comment".into())
            }
            Some(':') => {
                self.out.push_str("(?:");
                self.pos += 3;
                Ok(())
            }
            Some('=') | Some('!') => {
                self.backtracking.push("lookahead");
                self.out.push_str("(?");
                self.out.push(after.unwrap_or('='));
                self.pos += 3;
                Ok(())
            }
            Some('<') if matches!(self.peek(3), Some('=') | Some('!')) => {
                self.backtracking.push("lookbehind");
                self.out.push_str("(?<");
                self.out.push(self.peek(3).unwrap_or('='));
                self.pos += 4;
                Ok(())
            }
            Some('>') => {
                self.backtracking.push("atomic group");
                self.out.push_str("(?>");
                self.pos += 3;
                Ok(())
            }
            Some('<') | Some('\'') => {
                // named group (?<name>...) or (?'name'...)
                let close = if after == Some('<') { '>' } else { '\'' };
                let mut j = self.pos + 3;
                let mut name = String::new();
                while let Some(&c) = self.chars.get(j) {
                    if c == close {
                        break;
                    }
                    name.push(c);
                    j += 1;
                }
                if self.chars.get(j) != Some(&close) || name.is_empty() {
                    return Err("bad named group".into());
                }
                self.out.push_str("(?P<");
                self.out.push_str(&name);
                self.out.push('>');
                self.pos = j + 1;
                Ok(())
            }
            Some('P') if self.peek(3) == Some('<') => {
                self.out.push_str("(?P<");
                self.pos += 4;
                Ok(())
            }
            Some('P') if matches!(self.peek(3), Some('=') | Some('>')) => {
                self.backtracking.push("backreference");
                self.out.push_str("(?P");
                self.pos += 3;
                Ok(())
            }
            Some('|') => Err("branch reset groups `(?|...)` are not supported".into()),
            Some('{') | Some('?') => Err("Perl code in a regex is not supported".into()),
            Some(c) if c == 'R' || c.is_ascii_digit() || c == '+' || c == '&' => {
                self.backtracking.push("recursion");
                self.out.push_str("(?");
                self.pos += 2;
                Ok(())
            }
            _ => self.inline_flags(),
        }
    }

    /// `(?flags)` or `(?flags:...)`; `x` is applied here, `a u l d p o` are dropped.
    fn inline_flags(&mut self) -> Result<(), String> {
        let mut j = self.pos + 2;
        let mut on = String::new();
        let mut off = String::new();
        let mut negative = false;
        let terminator;
        loop {
            match self.chars.get(j) {
                Some(')') | Some(':') => {
                    terminator = self.chars[j];
                    break;
                }
                Some('-') => negative = true,
                Some('^') => {}
                Some(&c) if "imsx".contains(c) => {
                    if negative {
                        off.push(c)
                    } else {
                        on.push(c)
                    }
                }
                Some(&c) if "auldpo".contains(c) => {}
                Some(&c) => return Err(format!("unsupported group flag `{c}`")),
                None => return Err("unterminated group".into()),
            }
            j += 1;
        }
        if on.contains('x') {
            self.extended = true;
        }
        if off.contains('x') {
            self.extended = false;
        }
        let on: String = on.chars().filter(|&c| c != 'x').collect();
        let off: String = off.chars().filter(|&c| c != 'x').collect();
        let mut flags = on;
        if !off.is_empty() {
            flags.push('-');
            flags.push_str(&off);
        }
        self.pos = j + 1;
        match (terminator, flags.is_empty()) {
            (')', true) => {}
            (')', false) => {
                self.out.push_str("(?");
                self.out.push_str(&flags);
                self.out.push(')');
            }
            (_, _) => {
                self.out.push_str("(?");
                self.out.push_str(&flags);
                self.out.push(':');
            }
        }
        Ok(())
    }

    fn class(&mut self) -> Result<(), String> {
        self.out.push('[');
        self.pos += 1;
        if self.peek(0) == Some('^') {
            self.out.push('^');
            self.pos += 1;
        }
        if self.peek(0) == Some(']') {
            self.out.push_str("\\]");
            self.pos += 1;
        }
        loop {
            let Some(c) = self.peek(0) else {
                return Err("unterminated character class".into());
            };
            match c {
                ']' => {
                    self.out.push(']');
                    self.pos += 1;
                    return Ok(());
                }
                '\\' => {
                    self.pos += 1;
                    self.escape(true)?;
                }
                '[' if self.peek(1) == Some(':') => {
                    // POSIX class [:alpha:]
                    let start = self.pos;
                    let mut j = self.pos + 2;
                    while let Some(&c) = self.chars.get(j) {
                        if c == ':' && self.chars.get(j + 1) == Some(&']') {
                            break;
                        }
                        if !(c.is_ascii_alphabetic() || c == '^') {
                            break;
                        }
                        j += 1;
                    }
                    if self.chars.get(j) == Some(&':') && self.chars.get(j + 1) == Some(&']') {
                        let s: String = self.chars[start..j + 2].iter().collect();
                        self.out.push_str(&s);
                        self.pos = j + 2;
                    } else {
                        self.out.push_str("\\[");
                        self.pos += 1;
                    }
                }
                '[' | '&' | '~' => {
                    self.out.push('\\');
                    self.out.push(c);
                    self.pos += 1;
                }
                '-' if self.peek(1) == Some('-') => {
                    self.out.push_str("-\\-");
                    self.pos += 2;
                }
                c => {
                    self.out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    /// A code point or byte as an escape: `\xHH` up to 0xFF (a byte in the default ASCII
    /// mode; the braced form is refused inside classes there), `\x{...}` above.
    fn push_hex(&mut self, v: u32) {
        if v <= 0xFF {
            self.out.push_str(&format!("\\x{v:02X}"));
        } else {
            self.out.push_str(&format!("\\x{{{v:X}}}"));
        }
    }

    /// Handles the character after a backslash.
    fn escape(&mut self, in_class: bool) -> Result<(), String> {
        let Some(c) = self.peek(0) else {
            return Err("trailing backslash".into());
        };
        self.pos += 1;
        match c {
            'A' if !in_class => self.out.push_str(if self.line_mode { "^" } else { "\\A" }),
            'z' if !in_class => self.out.push_str(if self.line_mode { "$" } else { "\\z" }),
            'Z' if !in_class => self
                .out
                .push_str(if self.line_mode { "$" } else { "(?:\\n?\\z)" }),
            'h' => self.out.push_str(if in_class { "\\t " } else { "[\\t ]" }),
            'H' if !in_class => self.out.push_str("[^\\t ]"),
            'v' => self.out.push_str(if in_class {
                "\\n\\x0B\\x0C\\r"
            } else {
                "[\\n\\x0B\\x0C\\r]"
            }),
            'V' if !in_class => self.out.push_str("[^\\n\\x0B\\x0C\\r]"),
            'R' if !in_class => self.out.push_str("(?:\\r\\n|[\\n\\x0B\\x0C\\r])"),
            'N' if !in_class && self.peek(0) != Some('{') => self.out.push_str("[^\\n]"),
            'e' => self.out.push_str("\\x1B"),
            'a' => self.out.push_str("\\x07"),
            'b' if in_class => self.out.push_str("\\x08"),
            'c' => {
                let Some(x) = self.peek(0) else {
                    return Err("`\\c` at end of pattern".into());
                };
                self.pos += 1;
                let v = (x.to_ascii_uppercase() as u32) ^ 0x40;
                self.push_hex(v);
            }
            'x' => {
                if self.peek(0) == Some('{') {
                    let mut j = self.pos + 1;
                    let mut hex = String::new();
                    while let Some(&c) = self.chars.get(j) {
                        if c == '}' {
                            break;
                        }
                        hex.push(c);
                        j += 1;
                    }
                    let hex = hex.trim();
                    let v = if hex.is_empty() {
                        0
                    } else {
                        u32::from_str_radix(hex, 16).map_err(|_| format!("bad `\\x{{{hex}}}`"))?
                    };
                    self.pos = j + 1;
                    self.push_hex(v);
                } else {
                    let mut hex = String::new();
                    while hex.len() < 2 {
                        match self.peek(0) {
                            Some(c) if c.is_ascii_hexdigit() => {
                                hex.push(c);
                                self.pos += 1;
                            }
                            _ => break,
                        }
                    }
                    let v = u32::from_str_radix(&hex, 16).unwrap_or(0);
                    self.push_hex(v);
                }
            }
            'o' if self.peek(0) == Some('{') => {
                let mut j = self.pos + 1;
                let mut oct = String::new();
                while let Some(&c) = self.chars.get(j) {
                    if c == '}' {
                        break;
                    }
                    oct.push(c);
                    j += 1;
                }
                let v = u32::from_str_radix(oct.trim(), 8).map_err(|_| "bad `\\o{...}`")?;
                self.pos = j + 1;
                self.push_hex(v);
            }
            '0' => {
                let mut oct = String::from("0");
                while oct.len() < 3 {
                    match self.peek(0) {
                        Some(c) if ('0'..='7').contains(&c) => {
                            oct.push(c);
                            self.pos += 1;
                        }
                        _ => break,
                    }
                }
                let v = u32::from_str_radix(&oct, 8).unwrap_or(0);
                self.push_hex(v);
            }
            '1'..='9' => {
                let mut digits = String::from(c);
                while let Some(d) = self.peek(0).filter(char::is_ascii_digit) {
                    digits.push(d);
                    self.pos += 1;
                }
                let n: usize = digits.parse().unwrap_or(0);
                if !in_class && (n < 10 || n <= self.groups) {
                    self.backtracking.push("backreference");
                    self.out.push('\\');
                    self.out.push_str(&digits);
                } else {
                    // Octal (Perl reads up to three octal digits).
                    let oct: String = digits.chars().take(3).collect();
                    match u32::from_str_radix(&oct, 8) {
                        Ok(v) => {
                            self.push_hex(v);
                            for d in digits.chars().skip(3) {
                                self.out.push(d);
                            }
                        }
                        Err(_) => return Err(format!("bad escape `\\{digits}`")),
                    }
                }
            }
            'g' | 'k' if !in_class => {
                self.backtracking.push("backreference");
                self.out.push('\\');
                self.out.push(c);
            }
            'K' => {
                self.backtracking.push("\\K");
                self.out.push_str("\\K");
            }
            'Q' => {
                // Quote until \E.
                while let Some(c) = self.peek(0) {
                    if c == '\\' && self.peek(1) == Some('E') {
                        self.pos += 2;
                        break;
                    }
                    self.pos += 1;
                    self.literal(c);
                }
            }
            'E' => {}
            c if c.is_ascii_alphanumeric() => {
                self.out.push('\\');
                self.out.push(c);
            }
            c => self.literal(c),
        }
        Ok(())
    }

    /// Emits `c` as a literal, escaped if the `regex` crate would read it as syntax.
    fn literal(&mut self, c: char) {
        if META.contains(c) {
            self.out.push('\\');
            self.out.push(c);
        } else if c.is_ascii_alphanumeric() {
            self.out.push(c);
        } else if c.is_ascii() {
            self.push_hex(c as u32);
        } else {
            self.out.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tr(s: &str, f: &str) -> String {
        translate(s, f, false).unwrap().pattern
    }

    #[test]
    fn flags_become_inline() {
        assert_eq!(tr("abc", "i"), "(?i)abc");
        assert_eq!(tr("abc", "ims"), "(?ims)abc");
        assert_eq!(translate("^a$", "", true).unwrap().pattern, "(?m)^a$");
    }

    #[test]
    fn perl_specific_escapes() {
        assert_eq!(tr(r"a\Z", ""), r"a(?:\n?\z)");
        assert_eq!(tr(r"a$", ""), r"a(?:\n?\z)");
        assert_eq!(tr(r"a$", "m"), "(?m)a$");
        assert_eq!(tr(r"\<b\>", ""), r"\x3Cb\x3E");
        assert_eq!(tr(r"a\/b", ""), r"a\x2Fb");
        assert_eq!(tr(r"\xA", ""), r"\x0A");
        assert_eq!(tr(r"\012", ""), r"\x0A");
        assert_eq!(tr(r"[\x{E9}\x{456}]", ""), r"[\xE9\x{456}]");
        assert_eq!(tr(r"\Qa.b\E", ""), r"a\.b");
        assert_eq!(tr(r"foo{bar", ""), r"foo\{bar");
        assert_eq!(tr(r"a{,3}", ""), r"a{0,3}");
        assert_eq!(tr(r"[[a&&b~]", ""), r"[\[a\&\&b\~]");
        assert_eq!(tr(r"[[:alpha:]]", ""), r"[[:alpha:]]");
        assert_eq!(tr(r"[]a]", ""), r"[\]a]");
        assert_eq!(tr(r"a(?#c)b", ""), "ab");
        assert_eq!(tr("a b # c\n d", "x"), "abd");
        assert_eq!(tr("[a b]", "x"), "[a b]");
    }

    #[test]
    fn backtracking_constructs_are_named() {
        assert_eq!(
            translate("a(?=b)", "", false).unwrap().backtracking,
            vec!["lookahead"]
        );
        assert_eq!(
            translate(r"(a)\1", "", false).unwrap().backtracking,
            vec!["backreference"]
        );
        assert_eq!(
            translate(r"a++(?>b)", "", false).unwrap().backtracking,
            vec!["atomic group", "possessive quantifier"]
        );
        assert!(translate("a(?{ 1 })", "", false).is_err());
    }
}

/// A linear-engine superset of a translated backtracking pattern, used to prefilter it:
/// lookaround assertions are removed (an assertion only ever rejects matches), atomic groups
/// become plain groups and possessive quantifiers greedy ones. `None` when the pattern has
/// backreferences or recursion, which cannot be relaxed this way.
pub(crate) fn relax(pattern: &str, constructs: &[&str]) -> Option<String> {
    if constructs.contains(&"recursion") {
        return None;
    }
    let chars: Vec<char> = pattern.chars().collect();
    let groups = capture_groups(&chars);
    relax_chars(&chars, &groups, 0)
}

/// The source of each numbered capture group (index 0 is group 1).
fn capture_groups(chars: &[char]) -> Vec<String> {
    let mut groups = Vec::new();
    let mut i = 0;
    let mut in_class = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' {
            i += 2;
            continue;
        }
        if in_class {
            if c == ']' {
                in_class = false;
            }
        } else if c == '[' {
            in_class = true;
            if chars.get(i + 1) == Some(&'^') {
                i += 1;
            }
        } else if c == '(' {
            let capturing = chars.get(i + 1) != Some(&'?')
                || (chars.get(i + 2) == Some(&'P') && chars.get(i + 3) == Some(&'<'));
            if capturing {
                let content_start = if chars.get(i + 1) == Some(&'?') {
                    // (?P<name>
                    match chars[i..].iter().position(|&c| c == '>') {
                        Some(p) => i + p + 1,
                        None => return groups,
                    }
                } else {
                    i + 1
                };
                match skip_group(chars, i) {
                    Some(end) => groups.push(chars[content_start..end - 1].iter().collect()),
                    None => return groups,
                }
            }
        }
        i += 1;
    }
    groups
}

fn relax_chars(chars: &[char], groups: &[String], depth: usize) -> Option<String> {
    if depth > 4 {
        return None;
    }
    let mut out = String::with_capacity(chars.len());
    let mut i = 0;
    let mut in_class = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' {
            if chars.get(i + 1) == Some(&'K') {
                i += 2;
                continue;
            }
            if !in_class && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()) {
                // A backreference matches text its group matched: the group's pattern is a superset.
                let mut j = i + 1;
                let mut n = 0usize;
                while let Some(d) = chars.get(j).and_then(|d| d.to_digit(10)) {
                    n = n.checked_mul(10)?.checked_add(d as usize)?;
                    j += 1;
                }
                let source: Vec<char> = groups.get(n.checked_sub(1)?)?.chars().collect();
                out.push_str("(?:");
                out.push_str(&relax_chars(&source, groups, depth + 1)?);
                out.push(')');
                i = j;
                continue;
            }
            if !in_class && matches!(chars.get(i + 1), Some('g' | 'k')) {
                return None;
            }
            out.push(c);
            if let Some(&n) = chars.get(i + 1) {
                out.push(n);
            }
            i += 2;
            continue;
        }
        if in_class {
            if c == ']' {
                in_class = false;
            }
            out.push(c);
            i += 1;
            continue;
        }
        match c {
            '[' => {
                in_class = true;
                out.push(c);
                // A leading `]` or `^]` is literal.
                if chars.get(i + 1) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                i += 1;
                continue;
            }
            '(' if chars.get(i + 1) == Some(&'?') => {
                let look = matches!(
                    (chars.get(i + 2), chars.get(i + 3)),
                    (Some('=' | '!'), _) | (Some('<'), Some('=' | '!'))
                );
                if look {
                    i = skip_group(chars, i)?;
                    // A quantified assertion cannot be relaxed by deletion.
                    if matches!(chars.get(i), Some('*' | '+' | '?' | '{')) {
                        return None;
                    }
                    continue;
                }
                if chars.get(i + 2) == Some(&'>') {
                    out.push_str("(?:");
                    i += 3;
                    continue;
                }
                if chars.get(i + 2) == Some(&'P') && chars.get(i + 3) != Some(&'<') {
                    return None;
                }
                out.push(c);
                i += 1;
            }
            '*' | '+' | '?' | '}' => {
                out.push(c);
                i += 1;
                if chars.get(i) == Some(&'+') {
                    i += 1;
                }
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(out)
}

/// The index just past the group opening at `start`.
fn skip_group(chars: &[char], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = start;
    let mut in_class = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' {
            i += 2;
            continue;
        }
        if in_class {
            if c == ']' {
                in_class = false;
            }
        } else {
            match c {
                '[' => {
                    in_class = true;
                    if chars.get(i + 1) == Some(&'^') {
                        i += 1;
                    }
                    if chars.get(i + 1) == Some(&']') {
                        i += 1;
                    }
                }
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(i + 1);
                    }
                }
                _ => {}
            }
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod relax_tests {
    use super::*;

    #[test]
    fn relaxed_patterns_drop_assertions() {
        assert_eq!(
            relax(r"(?i)a(?!b(?:c))d(?<=x)e", &["lookahead"]).as_deref(),
            Some("(?i)ade")
        );
        assert_eq!(
            relax(r"a++(?>b)", &["atomic group"]).as_deref(),
            Some("a+(?:b)")
        );
        assert_eq!(relax(r"[(?=]x", &["lookahead"]).as_deref(), Some("[(?=]x"));
        assert_eq!(
            relax(r"(a(b))x\1\2", &["backreference"]).as_deref(),
            Some("(a(b))x(?:a(b))(?:b)")
        );
        assert_eq!(relax(r"(a)\k<x>", &["backreference"]), None);
        assert_eq!(relax(r"\3", &["backreference"]), None);
        assert_eq!(relax(r"a(?=b)?", &["lookahead"]), None);
    }
}
