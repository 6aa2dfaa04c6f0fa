//! Directive parsers: the definition part of `header`/`body`/`rawbody`/`uri`/`full`/`meta`
//! lines and the `/regex/flags` syntax, each line judged broken (error) or unsupported (skipped).

use crate::rules::meta::{MetaError, MetaExpr};
use crate::rules::model::{
    AddrPart, HeaderOp, HeaderSource, HeaderTarget, Instance, Pattern, RuleKind, Test,
};

/// Why one line was not taken: broken ([`Severity::Error`](crate::rules::Severity::Error))
/// or valid but unsupported ([`Severity::Skipped`](crate::rules::Severity::Skipped)).
pub(super) enum LineError {
    Error(String),
    Skipped(String),
}

pub(super) fn check_name(name: &str) -> Result<(), LineError> {
    if name.is_empty() {
        return Err(LineError::Error("missing rule name".into()));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(LineError::Error(format!(
            "`{name}` is not a valid rule name"
        )));
    }
    // A meta would read `9BAD` as a number: SpamAssassin refuses such names too.
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(LineError::Error(format!(
            "`{name}` is not a valid rule name (it starts with a digit)"
        )));
    }
    Ok(())
}

/// Parses the part after `KIND NAME`.
pub(super) fn parse_definition(directive: &str, def: &str) -> Result<(RuleKind, Test), LineError> {
    if let Some(rest) = def
        .strip_prefix("eval:")
        .or_else(|| def.strip_prefix("rbleval:"))
    {
        let func = rest.split('(').next().unwrap_or(rest).trim();
        return Err(LineError::Skipped(format!(
            "eval rule `{func}` needs SpamAssassin plugin code"
        )));
    }
    let kind = match directive {
        "header" => return parse_header(def).map(|t| (RuleKind::Header, t)),
        "meta" => {
            let expr = MetaExpr::parse(def).map_err(|e| match e {
                MetaError::Unsupported(m) => LineError::Skipped(m),
                MetaError::Syntax(m) => LineError::Error(m),
            })?;
            return Ok((RuleKind::Meta, Test::Meta(expr)));
        }
        "body" => RuleKind::Body,
        "rawbody" => RuleKind::Rawbody,
        "uri" => RuleKind::Uri,
        _ => RuleKind::Full,
    };
    let (pattern, rest) = split_regex(def).map_err(LineError::Error)?;
    if !rest.trim().is_empty() {
        return Err(LineError::Error(format!(
            "unexpected text after the regex: `{}`",
            rest.trim()
        )));
    }
    captured_tags(&pattern)?;
    Ok((kind, Test::Pattern(pattern)))
}

/// SpamAssassin 4 fills `%{NAME}` in a pattern with a value another rule captured
/// (`tflags ... capture`); the engine has no captures, so such a rule is skipped rather than
/// matched against the literal text.
fn captured_tags(pattern: &Pattern) -> Result<(), LineError> {
    let s = &pattern.source;
    let uses_tag = s.match_indices("%{").any(|(i, _)| {
        let name: String = s[i + 2..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        !name.is_empty() && s[i + 2 + name.len()..].starts_with('}')
    });
    if uses_tag {
        return Err(LineError::Skipped(
            "captured tags `%{NAME}` are not supported".into(),
        ));
    }
    Ok(())
}

/// Pseudo-headers that need SpamAssassin's relay trust path.
fn is_trust_pseudo_header(name: &str) -> bool {
    let lc = name.to_ascii_lowercase();
    lc.starts_with("x-spam-relays-")
        || lc == "all-trusted"
        || lc == "all-untrusted"
        || lc == "all-internal"
        || lc == "all-external"
        || lc == "x-spam-untrusted"
}

fn parse_header(def: &str) -> Result<Test, LineError> {
    if let Some(name) = def.strip_prefix("exists:") {
        let name = name.trim();
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(LineError::Error(format!("bad `exists:{name}`")));
        }
        // Pseudo-headers and modifiers read as they do with `=~` (`exists:ToCc` is true
        // when a To or a Cc header is present).
        return Ok(Test::Header {
            target: parse_target(name)?,
            op: HeaderOp::Exists,
            pattern: None,
        });
    }
    // TARGET OP /re/flags [if-unset: X]
    let op_at = def
        .find("=~")
        .into_iter()
        .chain(def.find("!~"))
        .min()
        .ok_or_else(|| LineError::Error("expected `Header =~ /regex/` or `!~`".into()))?;
    let target_text = def[..op_at].trim();
    let op = if &def[op_at..op_at + 2] == "=~" {
        HeaderOp::Matches
    } else {
        HeaderOp::NotMatches
    };
    let mut target = parse_target(target_text)?;
    let (pattern, rest) = split_regex(def[op_at + 2..].trim_start()).map_err(LineError::Error)?;
    captured_tags(&pattern)?;
    let rest = rest.trim();
    if !rest.is_empty() {
        let inner = rest
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .and_then(|r| r.trim_start().strip_prefix("if-unset:"))
            .ok_or_else(|| {
                LineError::Error(format!("unexpected text after the regex: `{rest}`"))
            })?;
        target.if_unset = Some(inner.trim().to_string());
    }
    Ok(Test::Header {
        target,
        op,
        pattern: Some(pattern),
    })
}

/// The left-hand side of a header test: a header or pseudo-header (`ALL`, `ToCc`,
/// `MESSAGEID`, `EnvelopeFrom`) and its `:raw`, `:addr`, `:name`, `:first`, `:last`
/// modifiers.
fn parse_target(target_text: &str) -> Result<HeaderTarget, LineError> {
    if target_text.is_empty() || target_text.contains(char::is_whitespace) {
        return Err(LineError::Error(format!("bad header name `{target_text}`")));
    }
    // SpamAssassin takes a header name written with its colon (`Subject:`), though not
    // after modifiers.
    let target_text = match target_text.strip_suffix(':') {
        Some(bare) if !bare.contains(':') => bare,
        _ => target_text,
    };
    let mut parts = target_text.split(':');
    let name = parts.next().unwrap_or_default();
    if name.is_empty() {
        return Err(LineError::Error(format!("bad header name `{target_text}`")));
    }
    if is_trust_pseudo_header(name) {
        return Err(LineError::Skipped(format!(
            "pseudo-header `{name}` needs SpamAssassin's relay trust path"
        )));
    }
    // SpamAssassin matches `ALL` and `MESSAGEID` as written, `ToCc` and `EnvelopeFrom`
    // in any case.
    let source = match name {
        "ALL" => HeaderSource::All,
        "MESSAGEID" => HeaderSource::MessageId,
        n if n.eq_ignore_ascii_case("ToCc") => HeaderSource::ToCc,
        n if n.eq_ignore_ascii_case("EnvelopeFrom") => HeaderSource::EnvelopeFrom,
        other => HeaderSource::Named(other.to_ascii_lowercase()),
    };
    let mut target = HeaderTarget {
        source,
        raw: false,
        part: AddrPart::Whole,
        instance: Instance::All,
        if_unset: None,
    };
    for modifier in parts {
        match modifier.to_ascii_lowercase().as_str() {
            "raw" => target.raw = true,
            "addr" => target.part = AddrPart::Addr,
            "name" => target.part = AddrPart::Name,
            "first" => target.instance = Instance::First,
            "last" => target.instance = Instance::Last,
            "" => {
                return Err(LineError::Error(format!(
                    "empty modifier in `{target_text}`"
                )))
            }
            other => {
                return Err(LineError::Skipped(format!(
                    "header modifier `:{other}` is not supported"
                )))
            }
        }
    }
    Ok(target)
}

/// Splits `/re/flags rest` or `m{re}flags rest` into the pattern and what follows.
fn split_regex(s: &str) -> Result<(Pattern, &str), String> {
    let s = s.trim_start();
    let mut chars = s.char_indices();
    let (open, body_start) = match chars.next() {
        Some((_, '/')) => ('/', 1),
        Some((_, 'm')) => match chars.next() {
            Some((i, c)) if !c.is_alphanumeric() && !c.is_whitespace() && c != '_' => {
                (c, i + c.len_utf8())
            }
            _ => return Err("expected a regex: `/.../` or `m{...}`".into()),
        },
        _ => return Err("expected a regex: `/.../` or `m{...}`".into()),
    };
    let close = match open {
        '{' => '}',
        '(' => ')',
        '[' => ']',
        '<' => '>',
        c => c,
    };
    let mut depth = 0usize;
    let mut escaped = false;
    let mut end = None;
    for (i, c) in s[body_start..].char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        if c == '\\' {
            escaped = true;
        } else if c == close && depth == 0 {
            end = Some(body_start + i);
            break;
        } else if c == close {
            depth -= 1;
        } else if c == open && open != close {
            depth += 1;
        }
    }
    let end = end.ok_or_else(|| format!("unterminated regex (no closing `{close}`)"))?;
    let source = &s[body_start..end];
    if source.is_empty() {
        return Err("empty regex".into());
    }
    let after = &s[end + close.len_utf8()..];
    let flag_len = after
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(after.len());
    let mut flags: Vec<char> = Vec::new();
    for f in after[..flag_len].chars() {
        match f {
            'i' | 'm' | 's' | 'x' => flags.push(f),
            // Perl's match-once and global flags, and its character-set (`a`, `u`, `l`,
            // `d`), `p` and `n` modifiers, which change nothing the engine reports (it
            // matches Unicode text and never returns captures).
            'g' | 'o' | 'a' | 'u' | 'l' | 'd' | 'p' | 'n' => {}
            other => return Err(format!("unsupported regex flag `{other}`")),
        }
    }
    // `/xx` (blanks in classes ignored too) is not `/x`: a second `x` is kept.
    let double_x = flags.iter().filter(|&&f| f == 'x').count() >= 2;
    flags.sort_unstable();
    flags.dedup();
    if double_x {
        flags.push('x');
        flags.sort_unstable();
    }
    Ok((
        Pattern {
            source: source.to_string(),
            flags: flags.into_iter().collect(),
        },
        &after[flag_len..],
    ))
}
