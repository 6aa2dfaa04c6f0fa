//! Backslash escapes of the Perl → Rust regex translation: Perl-only escapes spelled out,
//! octal and backreference digits told apart, `\Q...\E` quoted.

use super::{PatternError, Translator};

impl Translator {
    /// Handles the character after a backslash.
    pub(super) fn escape(&mut self, in_class: bool) -> Result<(), PatternError> {
        let Some(c) = self.peek(0) else {
            return Err(PatternError::invalid("trailing backslash"));
        };
        self.pos += 1;
        match c {
            'A' if !in_class => self.out.push_str(if self.line_mode { "^" } else { "\\A" }),
            'z' if !in_class => self.out.push_str(if self.line_mode { "$" } else { "\\z" }),
            'Z' if !in_class => {
                let anchor = if self.line_mode {
                    "$"
                } else {
                    self.end_anchor()
                };
                self.out.push_str(anchor);
            }
            // Spelled out in a class, `\h` or `\v` before a `-` would start a range
            // (`[\h-_]` became `[\t -_]`, every character from space to `_`); Perl calls
            // that a false range and SpamAssassin, which makes warnings fatal, refuses it.
            'h' | 'v'
                if in_class
                    && self.peek(0) == Some('-')
                    && self.peek(1).is_some_and(|n| n != ']') =>
            {
                return Err(PatternError::invalid(format!(
                    "false range: `\\{c}` cannot start a range in a class"
                )));
            }
            'h' => self.out.push_str(if in_class { "\\t " } else { "[\\t ]" }),
            // Inside a class, a negated class nested in it (the `regex` crate takes the
            // union): left as it was, `\H` reached the engine, which reads "not a hex digit".
            'H' => self.out.push_str("[^\\t ]"),
            'v' => self.out.push_str(if in_class {
                "\\n\\x0B\\x0C\\r"
            } else {
                "[\\n\\x0B\\x0C\\r]"
            }),
            'V' => self.out.push_str("[^\\n\\x0B\\x0C\\r]"),
            'R' if !in_class => self.out.push_str("(?:\\r\\n|[\\n\\x0B\\x0C\\r])"),
            'N' if !in_class && self.peek(0) != Some('{') => self.out.push_str("[^\\n]"),
            'N' if self.peek(0) == Some('{') => {
                // `\N{U+41}` is a code point; `\N{LATIN SMALL LETTER A}` needs Perl's names.
                let body = self.braced()?;
                let v = body
                    .strip_prefix("U+")
                    .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                    .ok_or_else(|| {
                        PatternError::unsupported(format!("named character `\\N{{{body}}}`"))
                    })?;
                self.push_hex(v);
            }
            'p' | 'P' if self.peek(0) == Some('{') => {
                // A Unicode property: the braces belong to the escape, not a quantifier.
                let body = self.braced()?;
                self.mark_class_chars();
                self.out.push('\\');
                self.out.push(c);
                self.out.push('{');
                self.out.push_str(&body);
                self.out.push('}');
            }
            'b' | 'B' if !in_class && self.peek(0) == Some('{') => {
                let body = self.braced()?;
                return Err(PatternError::unsupported(format!(
                    "boundary type `\\{c}{{{body}}}`"
                )));
            }
            'e' => self.out.push_str("\\x1B"),
            'a' => self.out.push_str("\\x07"),
            'b' if in_class => self.out.push_str("\\x08"),
            'c' => {
                let Some(x) = self.peek(0) else {
                    return Err(PatternError::invalid("`\\c` at end of pattern"));
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
                        u32::from_str_radix(hex, 16)
                            .map_err(|_| PatternError::Invalid(format!("bad `\\x{{{hex}}}`")))?
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
                let v = u32::from_str_radix(oct.trim(), 8)
                    .map_err(|_| PatternError::invalid("bad `\\o{...}`"))?;
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
                if !in_class && (n < 10 || n <= self.groups()) {
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
                        Err(_) => {
                            return Err(PatternError::Invalid(format!("bad escape `\\{digits}`")))
                        }
                    }
                }
            }
            'g' | 'k' if !in_class => {
                self.backtracking.push("backreference");
                let at = self.pos - 2;
                let target = self.backreference_target(c)?;
                self.push_backreference(&target, at)?;
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
                if let Some(what) = perl_only_escape(c, self.peek(0), in_class) {
                    self.perl_only.push(what);
                }
                self.out.push('\\');
                self.out.push(c);
            }
            c => self.literal(c),
        }
        Ok(())
    }
}

impl Translator {
    /// The text of a `{...}` right after an escape letter (the position moves past it).
    fn braced(&mut self) -> Result<String, PatternError> {
        self.delimited('}')
            .map(|body| body.trim().to_string())
            .ok_or_else(|| PatternError::invalid("unterminated `{` after an escape"))
    }

    /// The text between the opening delimiter at the position and the next `close` (the
    /// position moves past it); `None` when nothing closes it.
    fn delimited(&mut self, close: char) -> Option<String> {
        let mut j = self.pos + 1;
        let mut body = String::new();
        while let Some(&c) = self.chars.get(j) {
            if c == close {
                self.pos = j + 1;
                return Some(body);
            }
            body.push(c);
            j += 1;
        }
        None
    }
}

impl Translator {
    /// What `\g` or `\k` (`letter`) refers to, as written: `\gN`, `\g-N`, `\g{N}`,
    /// `\g{-N}`, `\g{name}`, `\k<name>`, `\k'name'`, `\k{name}`.
    fn backreference_target(&mut self, letter: char) -> Result<String, PatternError> {
        let close = match self.peek(0) {
            Some('{') => return self.braced(),
            Some('<') if letter == 'k' => '>',
            Some('\'') if letter == 'k' => '\'',
            Some(d) if letter == 'g' && (d.is_ascii_digit() || d == '-') => {
                let mut target = String::from(d);
                self.pos += 1;
                while let Some(d) = self.peek(0).filter(char::is_ascii_digit) {
                    target.push(d);
                    self.pos += 1;
                }
                return Ok(target);
            }
            _ => {
                return Err(PatternError::invalid(format!(
                    "`\\{letter}` names no group"
                )))
            }
        };
        self.delimited(close)
            .ok_or_else(|| PatternError::invalid(format!("unterminated `\\{letter}`")))
    }

    /// Writes the backreference to `target` (a number, a negative number counted back
    /// from the escape at `at`, or a name) in the form the engines read as one: Perl's
    /// `\g1` passed on would be a subroutine call to fancy-regex, matching anything
    /// group 1 could match. Wrapped so a digit after it stays a literal.
    fn push_backreference(&mut self, target: &str, at: usize) -> Result<(), PatternError> {
        let bad = || PatternError::invalid(format!("backreference to no group `{target}`"));
        let group = match target.parse::<i64>() {
            Ok(n) if n > 0 => n.to_string(),
            Ok(n) if n < 0 => {
                let opened = i64::try_from(self.capture_groups_before(at)).map_err(|_| bad())?;
                let group = opened + 1 + n;
                if group < 1 {
                    return Err(bad());
                }
                group.to_string()
            }
            Ok(_) => return Err(bad()),
            Err(_) if is_group_name(target) => format!("k<{target}>"),
            Err(_) => return Err(bad()),
        };
        self.out.push_str("(?:\\");
        self.out.push_str(&group);
        self.out.push(')');
        Ok(())
    }
}

fn is_group_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_alphanumeric() || c == '_')
}

/// Escapes passed through unchanged that are valid Perl but that the engines may not read
/// (`next` is the character after the escape letter).
fn perl_only_escape(c: char, next: Option<char>, in_class: bool) -> Option<&'static str> {
    match (c, next) {
        ('X', _) if !in_class => Some("`\\X` (grapheme cluster)"),
        ('G', _) if !in_class => Some("`\\G`"),
        _ => None,
    }
}
