//! The `if`/`ifplugin` condition language: which conditional blocks of a rules file are read,
//! skipped because they need something this engine lacks, or cannot be understood.

/// Plugins whose `ifplugin` blocks are evaluated: only the core rule runner.
const IMPLEMENTED_PLUGINS: &[&str] = &["Mail::SpamAssassin::Plugin::Check"];

/// `can(...)` features whose answer is known for this engine.
const KNOWN_FEATURES: &[(&str, bool)] = &[
    // The bug (rules misfiring on a Perl regex quirk) does not exist here.
    ("Mail::SpamAssassin::Conf::feature_bug6558_free", true),
    // `tflags nosubject` is honoured on body rules.
    ("Mail::SpamAssassin::Conf::has_tflags_nosubject", true),
    // Perl 5.10 regex syntax (possessive quantifiers, named groups) is translated.
    ("Mail::SpamAssassin::Conf::perl_min_version_5010000", true),
    // Naming only: both spellings of the list directives are equally unsupported.
    (
        "Mail::SpamAssassin::Conf::feature_welcomelist_blocklist",
        true,
    ),
    (
        "Mail::SpamAssassin::Conf::compat_welcomelist_blocklist",
        true,
    ),
    // DNS rules are built-in checks, not rules-file features.
    ("Mail::SpamAssassin::Conf::feature_dns_block_rule", false),
];

/// Features SpamAssassin has and this engine lacks: a block that needs one is skipped and
/// reported (its rules are SpamAssassin's, not absent), not read as false.
const MISSING_FEATURES: &[(&str, &str)] = &[(
    "Mail::SpamAssassin::Conf::feature_capture_rules",
    "captured tags `%{NAME}` in rules",
)];

/// Prefix of an unknown value that is really a missing feature.
const MISSING: &str = "not implemented: ";

/// The result of an `if` condition.
pub(super) enum Cond {
    /// The condition's value: the block (or its `else`) is read.
    Known(bool),
    /// False because a plugin this engine lacks is missing: SpamAssassin has the plugin, so
    /// the block holds its rules (skipped and reported, as an `ifplugin` block's are), while
    /// the `else` branch, the fallback written for a SpamAssassin without it, is read.
    MissingPlugin(String),
    /// A SpamAssassin feature this engine lacks (other than a plugin).
    Unsupported(String),
    /// Something the evaluator does not understand.
    Unknown(String),
}

/// Evaluates `ifplugin NAME` as `if plugin(NAME)`: read only for plugins this engine
/// implements.
pub(super) fn eval_ifplugin(plugin: &str) -> Cond {
    if plugin_implemented(plugin) {
        Cond::Known(true)
    } else {
        Cond::MissingPlugin(format!("ifplugin {plugin}: not implemented"))
    }
}

fn plugin_implemented(name: &str) -> bool {
    IMPLEMENTED_PLUGINS.contains(&name)
}

/// Evaluates an `if` condition: `version`, `perl_version`, `plugin(X)`, `can(X)`, `!`, `&&`, `||`,
/// comparisons and parentheses. `version` is treated as newer than any version named.
pub(super) fn eval_condition(text: &str) -> Cond {
    let tokens = match tokenize_condition(text) {
        Ok(t) => t,
        Err(e) => return Cond::Unknown(format!("if {}: {e}", text.trim())),
    };
    let mut p = CondParser {
        tokens,
        pos: 0,
        depth: 0,
    };
    match p.or() {
        Ok(v) if p.pos == p.tokens.len() => match v {
            CondVal::Bool(b) | CondVal::Missing(b @ true, _) => Cond::Known(b),
            CondVal::Missing(false, plugin) => {
                Cond::MissingPlugin(format!("if {}: not implemented: {plugin}", text.trim()))
            }
            CondVal::Num(n) => Cond::Known(n != 0.0),
            CondVal::Unknown(why) if why.starts_with(MISSING) => {
                Cond::Unsupported(format!("if {}: {why}", text.trim()))
            }
            CondVal::Unknown(why) => Cond::Unknown(format!("if {}: {why}", text.trim())),
        },
        Ok(_) => Cond::Unknown(format!("if {}: trailing tokens", text.trim())),
        Err(e) => Cond::Unknown(format!("if {}: {e}", text.trim())),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum CondTok {
    LParen,
    RParen,
    Not,
    And,
    Or,
    Cmp(String),
    Num(f64),
    Word(String),
    Call(String, String),
}

fn tokenize_condition(text: &str) -> Result<Vec<CondTok>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push(CondTok::LParen);
                i += 1
            }
            ')' => {
                out.push(CondTok::RParen);
                i += 1
            }
            '&' if next == Some('&') => {
                out.push(CondTok::And);
                i += 2
            }
            '|' if next == Some('|') => {
                out.push(CondTok::Or);
                i += 2
            }
            '!' if next == Some('=') => {
                out.push(CondTok::Cmp("!=".into()));
                i += 2
            }
            '!' => {
                out.push(CondTok::Not);
                i += 1
            }
            '>' | '<' | '=' => {
                let mut op = c.to_string();
                if next == Some('=') {
                    op.push('=');
                    i += 1;
                }
                out.push(CondTok::Cmp(op));
                i += 1
            }
            c if c.is_ascii_digit() || c == '.' => {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                    i += 1;
                }
                let s: String = chars[start..i].iter().collect();
                out.push(CondTok::Num(
                    s.parse().map_err(|_| format!("bad number `{s}`"))?,
                ));
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let mut j = i;
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
                if chars.get(j) == Some(&'(') && matches!(word.as_str(), "plugin" | "can" | "has") {
                    let close = chars[j..]
                        .iter()
                        .position(|&c| c == ')')
                        .ok_or("unclosed `(`")?;
                    let arg: String = chars[j + 1..j + close].iter().collect();
                    out.push(CondTok::Call(word, arg.trim().to_string()));
                    i = j + close + 1;
                } else {
                    match word.as_str() {
                        "and" => out.push(CondTok::And),
                        "or" => out.push(CondTok::Or),
                        "not" => out.push(CondTok::Not),
                        _ => out.push(CondTok::Word(word)),
                    }
                }
            }
            other => return Err(format!("unexpected `{other}`")),
        }
    }
    Ok(out)
}

#[derive(Debug, Clone)]
enum CondVal {
    Bool(bool),
    Num(f64),
    /// A truth value that rests on a plugin this engine lacks (named), as a SpamAssassin
    /// without that plugin computes it.
    Missing(bool, String),
    Unknown(String),
}

impl CondVal {
    /// The truth of a value that rests on nothing missing.
    fn truth(&self) -> Option<bool> {
        match self {
            CondVal::Bool(b) => Some(*b),
            CondVal::Num(n) => Some(*n != 0.0),
            CondVal::Missing(..) | CondVal::Unknown(_) => None,
        }
    }

    /// `a || b` (`or`) or `a && b`: a known value that decides it decides it, whatever the
    /// other side; otherwise a side resting on a missing plugin makes the result rest on it.
    fn combine(self, other: CondVal, or: bool) -> CondVal {
        if self.truth() == Some(or) || other.truth() == Some(or) {
            return CondVal::Bool(or);
        }
        let value = |v: &CondVal| match v {
            CondVal::Missing(b, _) => Some(*b),
            v => v.truth(),
        };
        match (value(&self), value(&other)) {
            (Some(a), Some(b)) => {
                let result = if or { a || b } else { a && b };
                match (self, other) {
                    (CondVal::Missing(_, plugin), _) | (_, CondVal::Missing(_, plugin)) => {
                        CondVal::Missing(result, plugin)
                    }
                    _ => CondVal::Bool(result),
                }
            }
            _ => unknown_of(&self, &other),
        }
    }
}

/// Deepest nesting of `!` and parentheses in a condition: the parser recurses once per
/// level, and a hostile rules file must get an error, not a stack overflow.
const MAX_DEPTH: usize = 200;

struct CondParser {
    tokens: Vec<CondTok>,
    pos: usize,
    depth: usize,
}

impl CondParser {
    fn peek(&self) -> Option<&CondTok> {
        self.tokens.get(self.pos)
    }

    fn or(&mut self) -> Result<CondVal, String> {
        let mut left = self.and()?;
        while self.peek() == Some(&CondTok::Or) {
            self.pos += 1;
            let right = self.and()?;
            left = left.combine(right, true);
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<CondVal, String> {
        let mut left = self.cmp()?;
        while self.peek() == Some(&CondTok::And) {
            self.pos += 1;
            let right = self.cmp()?;
            left = left.combine(right, false);
        }
        Ok(left)
    }

    fn cmp(&mut self) -> Result<CondVal, String> {
        let left = self.unary()?;
        if let Some(CondTok::Cmp(op)) = self.peek().cloned() {
            self.pos += 1;
            let right = self.unary()?;
            let (a, b) = match (&left, &right) {
                (CondVal::Num(a), CondVal::Num(b)) => (*a, *b),
                _ => return Ok(unknown_of(&left, &right)),
            };
            let v = match op.as_str() {
                ">=" => a >= b,
                ">" => a > b,
                "<=" => a <= b,
                "<" => a < b,
                "==" | "=" => a == b,
                "!=" => a != b,
                _ => return Err(format!("unknown operator `{op}`")),
            };
            return Ok(CondVal::Bool(v));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<CondVal, String> {
        self.depth += 1;
        let value = self.unary_at_depth();
        self.depth -= 1;
        value
    }

    fn unary_at_depth(&mut self) -> Result<CondVal, String> {
        if self.depth > MAX_DEPTH {
            return Err(format!("nested more than {MAX_DEPTH} deep"));
        }
        match self.peek().cloned() {
            Some(CondTok::Not) => {
                self.pos += 1;
                let v = self.unary()?;
                Ok(match v {
                    CondVal::Missing(b, plugin) => CondVal::Missing(!b, plugin),
                    v => match v.truth() {
                        Some(b) => CondVal::Bool(!b),
                        None => v,
                    },
                })
            }
            Some(CondTok::LParen) => {
                self.pos += 1;
                let v = self.or()?;
                if self.peek() != Some(&CondTok::RParen) {
                    return Err("missing `)`".into());
                }
                self.pos += 1;
                Ok(v)
            }
            Some(CondTok::Num(n)) => {
                self.pos += 1;
                Ok(CondVal::Num(n))
            }
            Some(CondTok::Word(w)) => {
                self.pos += 1;
                Ok(match w.as_str() {
                    // Newer than anything a rules file asks for.
                    "version" | "perl_version" => CondVal::Num(f64::INFINITY),
                    other => CondVal::Unknown(format!("unknown word `{other}`")),
                })
            }
            Some(CondTok::Call(f, arg)) => {
                self.pos += 1;
                Ok(match f.as_str() {
                    "plugin" if plugin_implemented(&arg) => CondVal::Bool(true),
                    "plugin" => CondVal::Missing(false, format!("plugin {arg}")),
                    _ => feature(&arg),
                })
            }
            other => Err(format!("unexpected {other:?}")),
        }
    }
}

fn unknown_of(a: &CondVal, b: &CondVal) -> CondVal {
    match (a, b) {
        (CondVal::Unknown(w), _) | (_, CondVal::Unknown(w)) => CondVal::Unknown(w.clone()),
        (CondVal::Missing(_, plugin), _) | (_, CondVal::Missing(_, plugin)) => {
            CondVal::Unknown(format!("{MISSING}{plugin} (compared as a number)"))
        }
        _ => CondVal::Unknown("type mismatch".into()),
    }
}

/// Answers `can(X)`: known features, and plugin methods (a missing plugin, as `plugin(X)`).
fn feature(name: &str) -> CondVal {
    if let Some((_, v)) = KNOWN_FEATURES.iter().find(|(n, _)| *n == name) {
        return CondVal::Bool(*v);
    }
    if let Some((_, what)) = MISSING_FEATURES.iter().find(|(n, _)| *n == name) {
        return CondVal::Unknown(format!("{MISSING}{what}"));
    }
    if let Some(rest) = name.strip_prefix("Mail::SpamAssassin::Plugin::") {
        let plugin = rest.rsplit_once("::").map(|(p, _)| p).unwrap_or(rest);
        let full = format!("Mail::SpamAssassin::Plugin::{plugin}");
        if !plugin_implemented(&full) {
            return CondVal::Missing(false, format!("plugin {full}"));
        }
    }
    CondVal::Unknown(format!("unknown feature `{name}`"))
}
