//! Perl regexes in the two engines: translation, the backtracking engine and its limits,
//! multi-pattern sets.

use super::*;

#[test]
fn lookahead_goes_to_the_backtracking_engine() {
    let rules = compile(
        "body LOOKAHEAD /viagra(?!\\s+free)/i\nbody BACKREF /(\\w)\\1\\1\\1/\nbody PLAIN_RE /buy/\n",
    );
    let bt: Vec<&str> = rules
        .report()
        .backtracking
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(bt, vec!["BACKREF", "LOOKAHEAD"]);
    assert!(rules.report().backtracking[1].1.contains("lookahead"));
    let raw = b"Subject: s\r\n\r\nviagra now, zzzz\r\n";
    assert_eq!(names(&rules, raw), vec!["BACKREF", "LOOKAHEAD"]);
    let raw = b"Subject: s\r\n\r\nviagra free\r\n";
    assert!(names(&rules, raw).is_empty());
}

#[test]
fn hostile_input_is_bounded() {
    // Catastrophic for a naive backtracker; the limit turns it into "no match".
    let rules = compile("body EVIL /^(a+)+\\1b/\nbody EVIL_LINEAR /^(a+)+b/\n");
    let raw = format!("Subject: s\r\n\r\n{}c\r\n", "a".repeat(5000));
    assert!(names(&rules, raw.as_bytes()).is_empty());
}

#[test]
fn perl_regex_dialect_is_translated() {
    let rules = compile(
        r#"
body ANGLE /\<b\>/
body OCTAL /\101BC/
body POSSESSIVE /a++b/
body ATOMIC /(?>x+)y/
body EXTENDED /h e l l o (?\#c)/x
body XCLASS /the[ ]tail/x
body BRACE /a{b/
body DOLLAR_END /tail$/
header SUBJ_END Subject =~ /meds\Z/
body NAMED m{(?<w>zzz)}
"#,
    );
    assert!(!rules.has_errors(), "{:?}", rules.diagnostics());
    assert!(
        rules.report().skipped.is_empty(),
        "{:?}",
        rules.diagnostics()
    );
    let raw =
        b"Subject: Cheap meds\r\n\r\n<b> ABC aab xxy hello a{b zzz at the tail\r\n\r\nend\r\n";
    assert_eq!(
        names(&rules, raw),
        vec![
            "ANGLE",
            "ATOMIC",
            "BRACE",
            "DOLLAR_END",
            "EXTENDED",
            "NAMED",
            "OCTAL",
            "POSSESSIVE",
            "SUBJ_END",
            "XCLASS"
        ]
    );
}

#[test]
fn large_rule_sets_use_sets_and_agree_with_single_regexes() {
    let mut text = String::new();
    for i in 0..300 {
        text.push_str(&format!("body WORD_{i:03} /\\bword{i}\\b/i\n"));
        text.push_str(&format!("header HDR_{i:03} Subject =~ /subj{i}$/\n"));
    }
    let rules = compile(&text);
    assert_eq!(rules.report().counts.get(&RuleKind::Body), Some(&300));
    assert!(rules.body.sets.len() >= 2);
    let raw = b"Subject: about subj7\r\n\r\nWORD5 and word250\r\nword299x\r\n";
    assert_eq!(names(&rules, raw), vec!["HDR_007", "WORD_005", "WORD_250"]);
}

#[test]
fn regex_no_engine_compiles_is_an_error_naming_file_and_line() {
    // Regression: these were reported as "skipped", so `check` passed and a reload went ahead.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("local.cf"),
        "body GOOD /Hello/\n\
         body BAD /unclosed(/\n\
         header BAD_HDR Subject =~ /[z-a]/\n\
         uri BAD_CLASS /[abc/\n\
         body BAD_ESCAPE /a\\iq/\n",
    )
    .unwrap();
    let rules = load_dir(dir.path()).unwrap();
    let errors: Vec<&Diagnostic> = rules
        .diagnostics()
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .collect();
    let lines: Vec<usize> = errors.iter().map(|d| d.line).collect();
    assert_eq!(lines, vec![2, 3, 4, 5], "{errors:?}");
    for e in &errors {
        assert!(e.message.contains("invalid regex"), "{e}");
        assert!(e.file.ends_with("local.cf"), "{e}");
    }
    let shown = errors[0].to_string();
    assert!(
        shown.contains("local.cf:2: error: body BAD: invalid regex: unclosed group"),
        "{shown}"
    );
    // What `Policy::build` asks before it replaces a working policy.
    assert!(rules.has_errors());
    assert_eq!(names(&rules, PLAIN), vec!["GOOD"]);
}

/// Review of the byte escapes (above): the backtracking engine cannot turn Unicode off
/// inside a pattern, so bytes past ASCII beside what needs Unicode mode, in a pattern that
/// needs backtracking, made an opaque skip (`\p{L}`) or a silent fall back to ASCII mode
/// (a folded Cyrillic word lost its case folding). Such a rule is skipped by name; a
/// malformed pattern with a byte escape is still an error, and a class of a byte and an
/// escaped letter past ASCII is a mixed class.
#[test]
fn bytes_beside_unicode_in_a_backtracking_pattern_are_skipped_by_name() {
    let rules = compile(
        "body MIX_PROPERTY /caf\\xc3\\xa9(?= \\p{L})/\n\
         body MIX_FOLDED /привет(?=\\xc2\\xa0)/i\n\
         body MIX_CLASS /[\\xe9\\é]/\n\
         body BYTES_ONLY /(caf)\\xc3\\xa9(?= x)/\n",
    );
    assert!(!rules.has_errors(), "{:?}", rules.diagnostics());
    let skipped: Vec<&Diagnostic> = rules
        .diagnostics()
        .iter()
        .filter(|d| d.severity == Severity::Skipped)
        .collect();
    assert_eq!(skipped.len(), 3, "{skipped:?}");
    assert!(
        skipped[0].message.contains("no engine here reads both"),
        "{skipped:?}"
    );
    assert!(
        skipped[1].message.contains("no engine here reads both"),
        "{skipped:?}"
    );
    assert!(
        skipped[2].message.contains("a class of both bytes"),
        "{skipped:?}"
    );
    let broken = compile("body BROKEN /[\\xff-\\x80]/\n");
    assert!(broken.has_errors(), "{:?}", broken.diagnostics());
}

#[test]
fn valid_perl_the_engines_lack_is_skipped_not_an_error() {
    let rules = compile(
        r#"
body BRANCH_RESET /(?|a|b)/
body CONDITIONAL /(a)?(?(1)b|c)/
body NO_CAPTURE /(?n)(a)/
body GRAPHEME /\X/
body VERB /a(*SKIP)b/
body RECURSION /(a)(?1)/
body REL_RECURSION /(a)(?-1)/
body PROPERTY /\p{Latin}/
body PROPERTY_L /^\p{L}+$/
body TOO_BIG /\w{100000}/
body GOOD /Hello/
"#,
    );
    assert!(!rules.has_errors(), "{:?}", rules.diagnostics());
    let skipped: Vec<&Diagnostic> = rules
        .diagnostics()
        .iter()
        .filter(|d| d.severity == Severity::Skipped)
        .collect();
    assert_eq!(skipped.len(), 8, "{skipped:?}");
    assert!(skipped
        .iter()
        .all(|d| d.message.contains("regex not supported")));
    assert_eq!(
        rules.report().skipped,
        vec![
            "BRANCH_RESET",
            "CONDITIONAL",
            "GRAPHEME",
            "NO_CAPTURE",
            "RECURSION",
            "REL_RECURSION",
            "TOO_BIG",
            "VERB"
        ]
    );
    // `\p{...}` is read by the engines now (it used to be skipped).
    assert_eq!(names(&rules, PLAIN), vec!["GOOD", "PROPERTY"]);
}

/// Regression (review): the prefilter of a backreference copied its group outside the
/// group's flags, so with three or more rules on one header (where prefilters sit in a
/// set) `(?i:(abc))x\1` never ran on `ABCxABC`, which Perl and SpamAssassin match.
#[test]
fn a_backreference_under_flags_hits_among_prefiltered_rules() {
    let rules = compile(
        r#"
header BACKREF Subject =~ /(?i:(abc))x\1/
header OTHER_A Subject =~ /zzz/
header OTHER_B Subject =~ /yyy/
header OTHER_C Subject =~ /www/
"#,
    );
    assert!(!rules.has_errors(), "{:?}", rules.diagnostics());
    let msg = b"From: a@b.test\r\nSubject: ABCxABC\r\n\r\nbody\r\n";
    assert_eq!(names(&rules, msg), vec!["BACKREF"]);
    let other = b"From: a@b.test\r\nSubject: ABCxabd\r\n\r\nbody\r\n";
    assert!(names(&rules, other).is_empty());
}

/// Regression (review): Perl-syntax differences read silently another way, each checked
/// against `perl -e` / `spamassassin -t -L` on the same text: `(?^…)` (Perl's defaults:
/// `imsx` off) was ignored; `/xx` (blanks in classes ignored too) read as `/x`; `/x`
/// dropped every Unicode blank where Perl ignores only `Pattern_White_Space` (a no-break
/// space stays a character); `maxhits=0` (no limit) counted one hit; `(?-m)` in a body
/// rule anchored at the ends of the whole body instead of each paragraph.
#[test]
fn perl_flag_forms_read_as_perl_reads_them() {
    let rules = compile(
        "header CARET_I Subject =~ /(?^:HELLO)/i\n\
         header CARET_X Subject =~ /q(?^)r s/x\n\
         header XX_CLASS Subject =~ /q[r s]+t/xx\n\
         header X_CLASS Subject =~ /q[r s]+t/x\n\
         header X_NBSP Subject =~ /a\u{a0}b/x\n\
         body BODY_END /(?-m)foo$/\n\
         body BODY_START /(?-m)^bar/\n\
         body MANY /foo/\n\
         tflags MANY multiple maxhits=0\n\
         score MANY 0.1\n\
         full FULL_ONCE /foo/\n\
         tflags FULL_ONCE multiple maxhits=0\n\
         score FULL_ONCE 0.1\n\
         header HEAD_ONCE Received =~ /x/\n\
         tflags HEAD_ONCE multiple maxhits=0\n\
         score HEAD_ONCE 0.1\n",
    );
    assert!(!rules.has_errors(), "{:?}", rules.diagnostics());
    let subject = |s: &str| format!("From: a@b.test\r\nSubject: {s}\r\n\r\nnothing\r\n");
    assert!(names(&rules, subject("hello").as_bytes()).is_empty());
    assert_eq!(names(&rules, subject("HELLO").as_bytes()), ["CARET_I"]);
    assert_eq!(names(&rules, subject("qr s").as_bytes()), ["CARET_X"]);
    assert_eq!(names(&rules, subject("q t").as_bytes()), ["X_CLASS"]);
    assert_eq!(
        names(&rules, subject("qrst").as_bytes()),
        ["XX_CLASS", "X_CLASS"]
    );
    assert_eq!(names(&rules, subject("a\u{a0}b").as_bytes()), ["X_NBSP"]);
    assert!(names(&rules, subject("ab").as_bytes()).is_empty());
    let body = b"From: a@b.test\r\nSubject: s\r\n\r\nzzz foo\r\n\r\nbar zzz foo foo\r\n";
    let found = hits(&rules, body);
    assert!(found.iter().any(|h| h.0 == "BODY_END"), "{found:?}");
    assert!(found.iter().any(|h| h.0 == "BODY_START"), "{found:?}");
    assert!(found.iter().any(|h| h.0 == "MANY" && h.2 == 3), "{found:?}");
    // A later review: in `header` and `full` rules SpamAssassin stops after the first hit
    // (`last if ++$hits >= 0`), whatever follows.
    assert!(
        found.iter().any(|h| h.0 == "FULL_ONCE" && h.2 == 1),
        "{found:?}"
    );
    let received = b"Received: x\r\nReceived: x\r\nReceived: x\r\nSubject: s\r\n\r\nbody\r\n";
    let found = hits(&rules, received);
    assert!(
        found.iter().any(|h| h.0 == "HEAD_ONCE" && h.2 == 1),
        "{found:?}"
    );
}

/// Regression (review): `\H` inside a class reached the engine, which reads it as "not a
/// hex digit" (`/^[\H]+$/` failed on `abc`), and `[\V]`, which Perl takes, was an error
/// that made `check` refuse the whole file. Both are Perl's "not horizontal / vertical
/// white space" there too, also in a backtracking pattern.
#[test]
fn negated_blank_classes_inside_brackets() {
    let rules = compile(
        "header NOT_H Subject =~ /^[\\H]+$/\n\
         header NOT_V Subject =~ /^[\\Vx]+$/\n\
         header NOT_H_LOOK Subject =~ /^(?=a)[\\H]+$/\n",
    );
    assert!(!rules.has_errors(), "{:?}", rules.diagnostics());
    let subject = |s: &str| format!("From: a@b.test\r\nSubject: {s}\r\n\r\nbody\r\n");
    assert_eq!(
        names(&rules, subject("abc").as_bytes()),
        ["NOT_H", "NOT_H_LOOK", "NOT_V"]
    );
    assert_eq!(names(&rules, subject("x y").as_bytes()), ["NOT_V"]);
}

/// Regression (review): `$` and `\Z` without `/m` were `(?:\n?\z)`, which consumes the
/// final newline: what follows them could not match it, where Perl's `/end$\n/` and
/// `/d$\b/` match "end\n". Where the pattern goes on, the newline stays (a lookahead).
#[test]
fn an_end_anchor_leaves_the_final_newline_to_what_follows() {
    let rules = compile(
        "full T_NL /end$\\n/\nfull T_B /d$\\b/\nfull T_Z /end\\Z\\n/\n\
         full T_END /end$/\nfull T_ALT /x$|end$/\n",
    );
    assert!(!rules.has_errors(), "{:?}", rules.diagnostics());
    let mut found = names(&rules, b"end\n");
    found.sort();
    assert_eq!(found, ["T_ALT", "T_B", "T_END", "T_NL", "T_Z"]);
    assert!(names(&rules, b"end\nmore\n").is_empty());
}
