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
    let raw = b"Subject: Cheap meds\r\n\r\n<b> ABC aab xxy hello a{b zzz at the tail\r\n";
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
