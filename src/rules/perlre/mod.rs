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
//!
//! Failures are typed ([`PatternError`]) because they decide whether a rules file is broken:
//! a malformed pattern (one Perl, and so SpamAssassin's lint, would refuse too) is
//! [`PatternError::Invalid`]; valid Perl that no engine here runs is
//! [`PatternError::Unsupported`]. Perl constructs passed through that the engines may lack are
//! listed in [`Translated::perl_only`], so a later compile failure can be blamed on them rather
//! than on the rules file.

mod escape;
mod relax;
#[cfg(test)]
mod tests;

pub(crate) use relax::relax;

/// A translated pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Translated {
    /// The pattern, inline flags first.
    pub pattern: String,
    /// Constructs only the backtracking engine supports (empty: the `regex` crate may do).
    pub backtracking: Vec<&'static str>,
    /// Valid Perl constructs passed through that neither engine may implement: when no engine
    /// compiles the pattern, these (not a broken rules file) are the likely reason.
    pub perl_only: Vec<&'static str>,
    /// When `pattern` writes bytes past ASCII in groups that turn Unicode off (see
    /// `push_hex`), the pattern with plain `\xHH` instead, which Unicode mode reads as
    /// characters: never matched with, only compiled to tell a valid pattern from a broken
    /// one where the backtracking engine cannot turn Unicode off inside a pattern.
    pub unwrapped: Option<String>,
}

/// Why a Perl pattern cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PatternError {
    /// Malformed: Perl would refuse it too, so the rules file is broken.
    #[error("{0}")]
    Invalid(String),
    /// Valid Perl that no engine here can run (a missing feature, or beyond the size limits).
    #[error("{0}")]
    Unsupported(String),
}

impl PatternError {
    fn invalid(message: impl Into<String>) -> PatternError {
        PatternError::Invalid(message.into())
    }

    fn unsupported(message: impl Into<String>) -> PatternError {
        PatternError::Unsupported(message.into())
    }
}

/// Characters that stay escaped (they are meta characters for the `regex` crate).
const META: &str = "\\.+*?()|[]{}^$#&-~";

/// Translates `source` with Perl `flags` (`imsx`). `line_mode` makes `^`/`$` match at every
/// line (used where each line is a separate subject joined with newlines), so `\A`, `\z`, `\Z`
/// also become line anchors.
pub(crate) fn translate(
    source: &str,
    flags: &str,
    line_mode: bool,
) -> Result<Translated, PatternError> {
    let mut translated = translate_as(source, flags, line_mode, true)?;
    if translated.pattern.contains(UNICODE_OFF) {
        translated.unwrapped = translate_as(source, flags, line_mode, false)
            .ok()
            .map(|t| t.pattern);
    }
    Ok(translated)
}

/// How a group that turns Unicode off begins (the translator writes bytes past ASCII in one).
const UNICODE_OFF: &str = "(?-u:";

/// [`translate`], with bytes past ASCII written in groups that turn Unicode off, or not.
fn translate_as(
    source: &str,
    flags: &str,
    line_mode: bool,
    wrap_bytes: bool,
) -> Result<Translated, PatternError> {
    let mut t = Translator {
        chars: source.chars().collect(),
        pos: 0,
        out: String::with_capacity(source.len() + 16),
        backtracking: Vec::new(),
        perl_only: Vec::new(),
        extended: flags.contains('x'),
        blanks_in_classes: flags.matches('x').count() >= 2,
        multiline: flags.contains('m') || line_mode,
        line_mode,
        group_opens: Vec::new(),
        scopes: Vec::new(),
        class: None,
        wrap_bytes,
    };
    t.find_groups();
    t.run()?;
    let mut prefix = String::new();
    if flags.contains('i') {
        prefix.push('i');
    }
    // The suffix's `m`, not where inline flags left it at the end.
    if flags.contains('m') || line_mode {
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
    t.perl_only.sort_unstable();
    t.perl_only.dedup();
    Ok(Translated {
        pattern,
        backtracking: t.backtracking,
        perl_only: t.perl_only,
        unwrapped: None,
    })
}

/// Perl's `Pattern_White_Space`, what `/x` ignores: other blanks (a no-break space, an
/// ideographic space) stay literal characters of the pattern.
fn is_pattern_white_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n'
            | '\u{b}'
            | '\u{c}'
            | '\r'
            | ' '
            | '\u{85}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{2028}'
            | '\u{2029}'
    )
}

struct Translator {
    chars: Vec<char>,
    pos: usize,
    out: String,
    backtracking: Vec<&'static str>,
    perl_only: Vec<&'static str>,
    extended: bool,
    /// `/xx`: blanks (space, tab) inside bracketed classes are ignored too.
    blanks_in_classes: bool,
    multiline: bool,
    line_mode: bool,
    /// Where each capture group opens, in order: their number tells `\10` backreferences
    /// from octal, and a relative `\g-1` counts those before it.
    group_opens: Vec<usize>,
    /// `extended`, `blanks_in_classes` and `multiline` outside each open group: inline
    /// flags (`(?m)`, `(?x:…)`) hold to the end of their group, as in Perl.
    scopes: Vec<(bool, bool, bool)>,
    /// What the bracketed class being written holds, while one is.
    class: Option<ClassContents>,
    /// Whether bytes past ASCII are written in groups that turn Unicode off.
    wrap_bytes: bool,
}

/// Whether a bracketed class holds bytes past ASCII (`\xE9`), characters past ASCII
/// (`é`, `\x{420}`, `\p{L}`), or both: no engine reads a class of both.
#[derive(Default)]
struct ClassContents {
    bytes: bool,
    chars: bool,
}

impl Translator {
    fn peek(&self, off: usize) -> Option<char> {
        self.chars.get(self.pos + off).copied()
    }

    /// Perl's end of the subject or before a final newline (`$` without `/m`, `\Z`), at
    /// the position just read. Where the pattern goes on after it, the newline must stay
    /// to be matched (`/end$\n/` matches "end\n" in Perl): a lookahead, which only the
    /// backtracking engine has. At the end of the pattern, an alternative or a group, the
    /// newline is consumed, which the linear engine can do (review: it was consumed
    /// everywhere, and `/d$\b/` never matched "end\n").
    fn end_anchor(&mut self) -> &'static str {
        let mut ahead = 0;
        while self.extended && self.peek(ahead).is_some_and(is_pattern_white_space) {
            ahead += 1;
        }
        match self.peek(ahead) {
            None | Some('|') | Some(')') => "(?:\\n?\\z)",
            Some(_) => {
                self.backtracking.push("`$` or `\\Z` before more pattern");
                "(?=\\n?\\z)"
            }
        }
    }

    /// Capture groups in the whole pattern.
    fn groups(&self) -> usize {
        self.group_opens.len()
    }

    /// Capture groups opened in the pattern before position `end` (one search: a pattern
    /// may hold thousands of relative backreferences).
    fn capture_groups_before(&self, end: usize) -> usize {
        self.group_opens.partition_point(|&open| open < end)
    }

    fn find_groups(&mut self) {
        let mut opens = Vec::new();
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
                        opens.push(i);
                    }
                }
                _ => {}
            }
        }
        self.group_opens = opens;
    }

    fn run(&mut self) -> Result<(), PatternError> {
        while let Some(c) = self.peek(0) {
            match c {
                '\\' => {
                    self.pos += 1;
                    self.escape(false)?;
                }
                '[' => self.class()?,
                '(' => {
                    let outside = (self.extended, self.blanks_in_classes, self.multiline);
                    if self.group()? {
                        self.scopes.push(outside);
                    }
                }
                ')' => {
                    self.out.push(')');
                    self.pos += 1;
                    if let Some((extended, blanks, multiline)) = self.scopes.pop() {
                        self.extended = extended;
                        self.blanks_in_classes = blanks;
                        self.multiline = multiline;
                    }
                }
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
                        let anchor = self.end_anchor();
                        self.out.push_str(anchor);
                    }
                }
                '*' | '+' | '?' => {
                    self.out.push(c);
                    self.pos += 1;
                    self.quantifier_suffix();
                }
                c if self.extended && is_pattern_white_space(c) => self.pos += 1,
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
        // Only digits, a comma and blanks can make a quantifier: the scan stops at any
        // other character (review: each `{` read to the next `}`, so `a{a{a{…` without
        // one was quadratic, tens of seconds for a 200 KB rule).
        while let Some(&c) = self.chars.get(j) {
            if c == '}' || !(c.is_ascii_digit() || c == ',' || c.is_whitespace()) {
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

    /// Translates a group's opening; `true` when a group stays open (its `)` comes later),
    /// `false` for a comment or a bare `(?flags)`, which end here.
    fn group(&mut self) -> Result<bool, PatternError> {
        if self.peek(1) == Some('*') && self.peek(2).is_some_and(|c| c.is_ascii_alphabetic()) {
            // `(*FAIL)`, `(*SKIP)`, `(*pla:...)`: passed through, `fancy-regex` knows a few.
            self.perl_only.push("backtracking control verb");
        }
        if self.peek(1) != Some('?') {
            self.out.push('(');
            self.pos += 1;
            return Ok(true);
        }
        // (?...
        let after = self.peek(2);
        match after {
            Some('#') => {
                // (?# comment )
                while let Some(c) = self.peek(0) {
                    self.pos += 1;
                    if c == ')' {
                        return Ok(false);
                    }
                }
                Err(PatternError::invalid("unterminated (?# comment"))
            }
            Some(':') => {
                self.out.push_str("(?:");
                self.pos += 3;
                Ok(true)
            }
            Some('=') | Some('!') => {
                self.backtracking.push("lookahead");
                self.out.push_str("(?");
                self.out.push(after.unwrap_or('='));
                self.pos += 3;
                Ok(true)
            }
            Some('<') if matches!(self.peek(3), Some('=') | Some('!')) => {
                self.backtracking.push("lookbehind");
                self.out.push_str("(?<");
                self.out.push(self.peek(3).unwrap_or('='));
                self.pos += 4;
                Ok(true)
            }
            Some('>') => {
                self.backtracking.push("atomic group");
                self.out.push_str("(?>");
                self.pos += 3;
                Ok(true)
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
                    return Err(PatternError::invalid("bad named group"));
                }
                self.out.push_str("(?P<");
                self.out.push_str(&name);
                self.out.push('>');
                self.pos = j + 1;
                Ok(true)
            }
            Some('P') if self.peek(3) == Some('<') => {
                self.out.push_str("(?P<");
                self.pos += 4;
                Ok(true)
            }
            Some('P') if matches!(self.peek(3), Some('=') | Some('>')) => {
                self.backtracking.push("backreference");
                self.out.push_str("(?P");
                self.pos += 3;
                Ok(true)
            }
            Some('|') => Err(PatternError::unsupported(
                "branch reset groups `(?|...)` are not supported",
            )),
            Some('{') | Some('?') => Err(PatternError::unsupported(
                "Perl code in a regex is not supported",
            )),
            Some('(') => Err(PatternError::unsupported(
                "conditionals `(?(...)...)` are not supported",
            )),
            Some('-') if self.peek(3).is_some_and(|c| c.is_ascii_digit()) => Err(
                PatternError::unsupported("relative recursion `(?-N)` is not supported"),
            ),
            Some(c) if c == 'R' || c.is_ascii_digit() || c == '+' || c == '&' => {
                self.backtracking.push("recursion");
                self.perl_only.push("recursion");
                self.out.push_str("(?");
                self.pos += 2;
                Ok(true)
            }
            _ => self.inline_flags(),
        }
    }

    /// `(?flags)` or `(?flags:...)`; `x` is applied here, `a u l d p o` are dropped.
    fn inline_flags(&mut self) -> Result<bool, PatternError> {
        let mut j = self.pos + 2;
        let mut on = String::new();
        let mut off = String::new();
        let mut negative = false;
        let mut caret = false;
        let terminator;
        loop {
            match self.chars.get(j) {
                Some(')') | Some(':') => {
                    terminator = self.chars[j];
                    break;
                }
                Some('-') => negative = true,
                // `(?^…)`: Perl's defaults first (`imsx` off), then the flags after it.
                Some('^') => caret = true,
                Some(&c) if "imsx".contains(c) => {
                    if negative {
                        off.push(c)
                    } else {
                        on.push(c)
                    }
                }
                Some(&c) if "auldpo".contains(c) => {}
                Some('n') => {
                    return Err(PatternError::unsupported(
                        "group flag `n` (no captures) is not supported",
                    ))
                }
                Some(&c) => return Err(PatternError::Invalid(format!("unknown group flag `{c}`"))),
                None => return Err(PatternError::invalid("unterminated group")),
            }
            j += 1;
        }
        if caret {
            let reset: String = "imsx".chars().filter(|&c| !on.contains(c)).collect();
            off = reset;
        }
        if on.contains('x') {
            self.extended = true;
            self.blanks_in_classes = on.matches('x').count() >= 2;
        }
        if off.contains('x') {
            self.extended = false;
            self.blanks_in_classes = false;
        }
        // `$` is translated by this flag (Perl's "end, or before a final newline" unless
        // `m`), so it must follow inline `m` as well as the suffix.
        if on.contains('m') {
            self.multiline = true;
        }
        if off.contains('m') && !self.line_mode {
            self.multiline = false;
        }
        let on: String = on.chars().filter(|&c| c != 'x').collect();
        // Where each line is a subject of its own (body and uri rules: Perl's paragraphs),
        // `(?-m)` anchors at its ends, which the line anchors already do: without `m`
        // they would anchor at the ends of the joined text.
        let off: String = off
            .chars()
            .filter(|&c| c != 'x' && !(c == 'm' && self.line_mode))
            .collect();
        let mut flags = on;
        if !off.is_empty() {
            flags.push('-');
            flags.push_str(&off);
        }
        self.pos = j + 1;
        match (terminator, flags.is_empty()) {
            (')', true) => Ok(false),
            (')', false) => {
                self.out.push_str("(?");
                self.out.push_str(&flags);
                self.out.push(')');
                Ok(false)
            }
            (_, _) => {
                self.out.push_str("(?");
                self.out.push_str(&flags);
                self.out.push(':');
                Ok(true)
            }
        }
    }

    fn class(&mut self) -> Result<(), PatternError> {
        let start = self.out.len();
        self.class = Some(ClassContents::default());
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
                return Err(PatternError::invalid("unterminated character class"));
            };
            match c {
                ']' => {
                    self.out.push(']');
                    self.pos += 1;
                    let contents = self.class.take().unwrap_or_default();
                    if contents.bytes && contents.chars {
                        return Err(PatternError::unsupported(
                            "a class of both bytes past ASCII (`\\xHH`) and characters past \
                             ASCII or Unicode properties",
                        ));
                    }
                    if contents.bytes && self.wrap_bytes {
                        // Bytes in a pattern the Unicode mode may read (see `push_hex`).
                        self.out.insert_str(start, UNICODE_OFF);
                        self.out.push(')');
                    }
                    return Ok(());
                }
                ' ' | '\t' if self.blanks_in_classes => self.pos += 1,
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
                    if !c.is_ascii() {
                        self.mark_class_chars();
                    }
                    self.out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    /// A code point or byte as an escape: `\xHH` up to 0xFF, `\x{...}` above (the braced
    /// form is refused inside classes in ASCII mode). Past ASCII, `\x80`–`\xFF` is a byte
    /// in Perl's reading of SpamAssassin's text, but the character U+0080–U+00FF in the
    /// `regex` crate's Unicode mode, which a pattern with `\p{…}` or a folded letter past
    /// ASCII is compiled in: so it is written in a group that turns Unicode off (a no-op
    /// in ASCII mode), and a class holding one is wrapped whole at its end.
    fn push_hex(&mut self, v: u32) {
        match (v, self.class.as_mut()) {
            (0..=0x7F, _) => self.out.push_str(&format!("\\x{v:02X}")),
            (0x80..=0xFF, None) if self.wrap_bytes => {
                self.out.push_str(&format!("{UNICODE_OFF}\\x{v:02X})"))
            }
            (0x80..=0xFF, None) => self.out.push_str(&format!("\\x{v:02X}")),
            (0x80..=0xFF, Some(class)) => {
                class.bytes = true;
                self.out.push_str(&format!("\\x{v:02X}"));
            }
            _ => {
                self.mark_class_chars();
                self.out.push_str(&format!("\\x{{{v:X}}}"));
            }
        }
    }

    /// Notes a character past ASCII (or a Unicode property) in the class being written.
    pub(super) fn mark_class_chars(&mut self) {
        if let Some(class) = self.class.as_mut() {
            class.chars = true;
        }
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
            self.mark_class_chars();
            self.out.push(c);
        }
    }
}
