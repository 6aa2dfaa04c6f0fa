//! End-to-end tests of the rules engine: parse → compile → evaluate on real message bytes.

use super::*;
use std::path::Path;

fn compile(text: &str) -> CompiledRules {
    RuleSet::parse_text(Path::new("test.cf"), text).compile()
}

fn hits(rules: &CompiledRules, raw: &[u8]) -> Vec<(String, f64, u32)> {
    rules
        .evaluate(&MessageView::parse(raw), &[])
        .into_iter()
        .map(|h| (h.name, h.score, h.count))
        .collect()
}

fn names(rules: &CompiledRules, raw: &[u8]) -> Vec<String> {
    hits(rules, raw).into_iter().map(|h| h.0).collect()
}

const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

const PLAIN: &[u8] = b"From: \"Alice Example\" <alice@example.com>\r\n\
To: bob@example.test\r\n\
Cc: carol@other.test\r\n\
Subject: Cheap meds\r\n\
Message-ID: <abc@example.com>\r\n\
\r\n\
Hello Bob,\r\n\
buy now buy now buy now buy now buy now\r\n";

#[test]
fn gtube_body_rule_hits() {
    let rules = compile(
        "body GTUBE /XJS\\*C4JDBQADN1\\.NSBN3\\*2IDNEN\\*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL\\*C\\.34X/\n\
         score GTUBE 1000\n\
         describe GTUBE Generic Test for Unsolicited Bulk Email\n",
    );
    assert!(!rules.has_errors(), "{:?}", rules.diagnostics());
    let raw = format!("Subject: test\r\n\r\nThis is the GTUBE, the\r\n{GTUBE}\r\n");
    assert_eq!(
        hits(&rules, raw.as_bytes()),
        vec![("GTUBE".to_string(), 1000.0, 1)]
    );
    assert_eq!(
        rules.description("GTUBE"),
        Some("Generic Test for Unsolicited Bulk Email")
    );
    assert!(names(&rules, PLAIN).is_empty());
}

#[test]
fn parser_errors_carry_file_and_line() {
    let set = RuleSet::parse_text(
        Path::new("local.cf"),
        "# comment\n\
         body OK_RULE /fine/\n\
         body BROKEN /unterminated\n\
         score OK_RULE 1.x\n\
         meta BAD_META (A && \n\
         header NOOP Subject ~ /x/\n\
         endif\n",
    );
    let errors: Vec<(usize, &str)> = set
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| (d.line, d.message.as_str()))
        .collect();
    let lines: Vec<usize> = errors.iter().map(|e| e.0).collect();
    assert_eq!(lines, vec![3, 4, 5, 6, 7], "{errors:?}");
    assert!(errors[0].1.contains("unterminated regex"));
    assert!(errors[1].1.contains("not a number"));
    let shown = set.diagnostics[0].to_string();
    assert!(
        shown.starts_with("local.cf:3: error: body BROKEN"),
        "{shown}"
    );
    assert!(set.has_errors());
    assert!(set.rule("OK_RULE").is_some());
    assert!(set.rule("BROKEN").is_none());
}

#[test]
fn header_operators_and_modifiers() {
    let rules = compile(
        r#"
header SUBJ_MEDS     Subject =~ /\bmeds\b/i
header SUBJ_NOT_MEDS Subject !~ /meds/
header HAS_MSGID     exists:Message-ID
header HAS_LISTID    exists:List-Id
header ALL_HEADERS   ALL =~ /^Cc: carol/m
header TOCC_CAROL    ToCc =~ /carol\@other\.test/
header FROM_ADDR     From:addr =~ /^alice\@example\.com$/
header FROM_NAME     From:name =~ /^Alice Example$/
header FROM_RAW_Q    From:raw =~ /^"Alice/
header NO_LIST_OK    List-Id !~ /./
header MISSING_EMPTY X-Missing =~ /^$/
header MISSING_UNSET X-Missing =~ /^NONE$/ [if-unset: NONE]
header MSGID_PSEUDO  MESSAGEID =~ /abc\@example/
"#,
    );
    assert!(!rules.has_errors(), "{:?}", rules.diagnostics());
    let got = names(&rules, PLAIN);
    for expected in [
        "ALL_HEADERS",
        "FROM_ADDR",
        "FROM_NAME",
        "FROM_RAW_Q",
        "HAS_MSGID",
        "MISSING_EMPTY",
        "MISSING_UNSET",
        "MSGID_PSEUDO",
        "NO_LIST_OK",
        "SUBJ_MEDS",
        "TOCC_CAROL",
    ] {
        assert!(
            got.contains(&expected.to_string()),
            "{expected} missing in {got:?}"
        );
    }
    assert!(!got.contains(&"SUBJ_NOT_MEDS".to_string()));
    assert!(!got.contains(&"HAS_LISTID".to_string()));
}

#[test]
fn missing_header_with_negated_match_hits() {
    // SpamAssassin reads a missing header as empty, so `!~ /./` hits and `=~ /./` does not.
    let rules = compile("header NO_DATE Date !~ /\\d/\nheader DATE_DIGIT Date =~ /\\d/\n");
    assert_eq!(
        names(&rules, b"Subject: x\r\n\r\nbody\r\n"),
        vec!["NO_DATE"]
    );
    assert_eq!(
        names(
            &rules,
            b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\nbody\r\n"
        ),
        vec!["DATE_DIGIT"]
    );
}

#[test]
fn body_covers_base64_text_and_rendered_html() {
    // "Claim your FREE prize" in base64 in the text part; the HTML part hides its words in markup.
    let raw = b"Subject: offer\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/alternative; boundary=\"b1\"\r\n\
\r\n\
--b1\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
Q2xhaW0geW91ciBGUkVFIHByaXplCg==\r\n\
--b1\r\n\
Content-Type: text/html; charset=utf-8\r\n\
\r\n\
<html><body><p>Act <b>now</b> for <i>lowest</i> rates</p></body></html>\r\n\
--b1--\r\n";
    let rules = compile(
        "body FREE_PRIZE /claim your free prize/i\n\
         body HTML_TEXT /Act now for lowest rates/\n\
         body NO_MARKUP /<b>/\n\
         body SUBJECT_LINE /^offer$/\n\
         rawbody RAW_MARKUP /<b>now<\\/b>/\n\
         rawbody RAW_NOT_BASE64 /Q2xhaW0/\n",
    );
    let got = names(&rules, raw);
    assert_eq!(
        got,
        vec!["FREE_PRIZE", "HTML_TEXT", "RAW_MARKUP", "SUBJECT_LINE"]
    );
}

#[test]
fn body_matches_do_not_span_paragraphs() {
    let rules = compile("body SPAN /buy\\s+now/\nbody LINE_START /^now/\n");
    let raw = b"Subject: s\r\n\r\nplease buy\r\n\r\nnow or never\r\n";
    assert_eq!(names(&rules, raw), vec!["LINE_START"]);
}

#[test]
fn uri_from_href_and_text() {
    let raw = b"Subject: s\r\nContent-Type: text/html\r\n\r\n\
<p>Click <a href=\"https://bad.example/login?x=1&amp;y=2\">here</a></p>\r\n";
    let rules = compile(
        "uri BAD_HOST /^https?:\\/\\/bad\\.example\\//\n\
         uri QUERY /x=1&y=2$/\n\
         uri OTHER /good\\.example/\n",
    );
    assert_eq!(names(&rules, raw), vec!["BAD_HOST", "QUERY"]);
}

#[test]
fn full_sees_raw_message() {
    let rules = compile(
        "full RAW_B64 /^Content-Transfer-Encoding: base64/m\nfull FULL_START /\\AFrom: /\n",
    );
    let raw = b"From: a@b.test\r\nContent-Transfer-Encoding: base64\r\n\r\naGk=\r\n";
    assert_eq!(names(&rules, raw), vec!["FULL_START", "RAW_B64"]);
}

#[test]
fn meta_arithmetic_and_negation() {
    let rules = compile(
        "body __A /alpha/\n\
         body __B /beta/\n\
         body __C /gamma/\n\
         meta TWO_OF_THREE (__A + __B + __C) >= 2\n\
         meta A_NOT_B __A && !__B\n\
         score TWO_OF_THREE 3\n",
    );
    let msg = |body: &str| format!("Subject: s\r\n\r\n{body}\r\n");
    assert_eq!(
        names(&rules, msg("alpha gamma").as_bytes()),
        vec!["A_NOT_B", "TWO_OF_THREE"]
    );
    assert_eq!(
        names(&rules, msg("alpha beta").as_bytes()),
        vec!["TWO_OF_THREE"]
    );
    assert_eq!(names(&rules, msg("alpha").as_bytes()), vec!["A_NOT_B"]);
    assert!(names(&rules, msg("beta").as_bytes()).is_empty());
    let h = hits(&rules, msg("alpha gamma").as_bytes());
    assert!(h.contains(&("TWO_OF_THREE".into(), 3.0, 1)));
}

#[test]
fn subrules_are_never_reported_or_scored() {
    let rules = compile("body __SUB /buy/\nscore __SUB 5\nmeta USES_SUB __SUB\n");
    assert_eq!(hits(&rules, PLAIN), vec![("USES_SUB".to_string(), 1.0, 1)]);
}

#[test]
fn tflags_multiple_counts_up_to_maxhits() {
    let rules = compile(
        "body BUY_NOW /buy now/\n\
         tflags BUY_NOW multiple maxhits=3\n\
         score BUY_NOW 0.5\n\
         body BUY_ONCE /buy now/\n\
         body __BUY_ALL /buy now/\n\
         tflags __BUY_ALL multiple\n\
         meta MANY_BUYS __BUY_ALL > 4\n",
    );
    let h = hits(&rules, PLAIN);
    assert!(h.contains(&("BUY_NOW".into(), 1.5, 3)), "{h:?}");
    assert!(h.contains(&("BUY_ONCE".into(), 1.0, 1)), "{h:?}");
    assert!(h.contains(&("MANY_BUYS".into(), 1.0, 1)), "{h:?}");
}

#[test]
fn nice_allows_negative_scores_others_are_disabled() {
    let set = RuleSet::parse_text(
        Path::new("t.cf"),
        "body GOOD /Hello Bob/\ntflags GOOD nice\nscore GOOD -2\n\
         body NOT_NICE /Hello/\nscore NOT_NICE -3\n\
         body NICE_DEFAULT /Bob/\ntflags NICE_DEFAULT nice\n",
    );
    let skipped: Vec<&Diagnostic> = set
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Skipped)
        .collect();
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].line, 5);
    assert!(skipped[0].message.contains("nice"));
    let rules = set.compile();
    assert_eq!(
        hits(&rules, PLAIN),
        vec![("GOOD".into(), -2.0, 1), ("NICE_DEFAULT".into(), -1.0, 1)]
    );
}

#[test]
fn score_zero_disables_and_default_score_is_one() {
    let rules = compile("body OFF /Hello/\nscore OFF 0\nbody ON /Hello/\nbody T_TEST /Hello/\n");
    assert_eq!(
        hits(&rules, PLAIN),
        vec![("ON".into(), 1.0, 1), ("T_TEST".into(), 0.01, 1)]
    );
    assert_eq!(rules.report().disabled, vec!["OFF"]);
}

#[test]
fn eval_rules_and_unknown_directives_are_reported_and_skipped() {
    let set = RuleSet::parse_text(
        Path::new("sa.cf"),
        "header SPF_FAIL eval:check_for_spf_fail()\n\
         body HTML_SHOUT eval:html_text_match('x')\n\
         freemail_domains example.test\n\
         body REAL /Hello/\n",
    );
    let skipped: Vec<(usize, &str)> = set
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Skipped)
        .map(|d| (d.line, d.message.as_str()))
        .collect();
    assert_eq!(skipped.len(), 3, "{skipped:?}");
    assert_eq!(skipped[0].0, 1);
    assert!(skipped[0].1.contains("check_for_spf_fail"));
    assert!(skipped[2]
        .1
        .contains("unknown directive `freemail_domains`"));
    assert!(!set.has_errors());
    let rules = set.compile();
    assert_eq!(rules.report().skipped, vec!["HTML_SHOUT", "SPF_FAIL"]);
    assert_eq!(names(&rules, PLAIN), vec!["REAL"]);
}

#[test]
fn external_symbols_feed_metas_and_take_file_scores() {
    let rules = compile(
        "header SPF_FAIL eval:check_for_spf_fail()\n\
         score SPF_FAIL 2.5\n\
         score BAYES_00 0\n\
         body __MEDS /meds/i\n\
         meta SPF_AND_MEDS SPF_FAIL && __MEDS\n\
         meta BAYES_CAP BAYES_99 && !GTUBE\n\
         score BAYES_CAP 1.5\n",
    );
    let view = MessageView::parse(PLAIN);
    let h = rules.evaluate(
        &view,
        &[("SPF_FAIL", 0.9), ("BAYES_00", -1.0), ("DKIM_OK", -0.1)],
    );
    let got: Vec<(&str, f64)> = h.iter().map(|h| (h.name.as_str(), h.score)).collect();
    assert_eq!(
        got,
        vec![("DKIM_OK", -0.1), ("SPF_AND_MEDS", 1.0), ("SPF_FAIL", 2.5)]
    );
    let h = rules.evaluate(&view, &[("BAYES_99", 3.5)]);
    let got: Vec<(&str, f64)> = h.iter().map(|h| (h.name.as_str(), h.score)).collect();
    assert_eq!(got, vec![("BAYES_99", 3.5), ("BAYES_CAP", 1.5)]);
    assert!(rules
        .report()
        .external_refs
        .contains(&"BAYES_99".to_string()));
}

#[test]
fn meta_cycles_are_errors() {
    let rules =
        compile("meta LOOP_A LOOP_B || __X\nmeta LOOP_B LOOP_A\nmeta FINE __X\nbody __X /Hello/\n");
    let errs: Vec<&Diagnostic> = rules
        .diagnostics()
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .collect();
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(errs[0].message.contains("cycle"));
    assert_eq!(names(&rules, PLAIN), vec!["FINE"]);
}

#[test]
fn include_is_relative_to_the_including_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::create_dir(dir.path().join("sub/more")).unwrap();
    std::fs::write(
        dir.path().join("10_main.cf"),
        "include sub/a.inc\nbody MAIN /Hello/\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("sub/a.inc"),
        "include more/b.inc\nbody FROM_A /Bob/\ninclude missing.inc\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("sub/more/b.inc"), "body FROM_B /buy/\n").unwrap();
    std::fs::write(dir.path().join("notes.txt"), "body IGNORED /x/\n").unwrap();
    let set = RuleSet::from_dir(dir.path()).unwrap();
    let errs: Vec<&Diagnostic> = set.diagnostics.iter().collect();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].file.ends_with("sub/a.inc"));
    assert_eq!(errs[0].line, 3);
    let rules = set.compile();
    assert_eq!(names(&rules, PLAIN), vec!["FROM_A", "FROM_B", "MAIN"]);
    assert!(matches!(
        RuleSet::from_dir(&dir.path().join("nope")),
        Err(RulesError::Io { .. })
    ));
}

#[test]
fn include_loops_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.cf"), "include b.inc\n").unwrap();
    std::fs::write(dir.path().join("b.inc"), "include a.cf\n").unwrap();
    let set = RuleSet::from_files(&[dir.path().join("a.cf")]).unwrap();
    assert!(set
        .diagnostics
        .iter()
        .any(|d| d.severity == Severity::Error && d.message.contains("include loop")));
}

#[test]
fn ifplugin_blocks_of_missing_plugins_are_skipped_and_reported() {
    let set = RuleSet::parse_text(
        Path::new("p.cf"),
        "ifplugin Mail::SpamAssassin::Plugin::FreeMail\n\
         header FREEMAIL_FROM eval:check_freemail_from()\n\
         body FM_PLAIN /Hello/\n\
         endif\n\
         if !plugin(Mail::SpamAssassin::Plugin::FreeMail)\n\
         body FALLBACK /Hello/\n\
         endif\n\
         if (version >= 3.004002)\n\
         body NEW_ENOUGH /Hello/\n\
         else\n\
         body TOO_OLD /Hello/\n\
         endif\n\
         if can(Mail::SpamAssassin::Conf::feature_unheard_of)\n\
         body UNKNOWN_FEATURE /Hello/\n\
         else\n\
         body UNKNOWN_ELSE /Hello/\n\
         endif\n\
         ifplugin Mail::SpamAssassin::Plugin::Check\n\
         body CORE /Hello/\n\
         endif\n",
    );
    let skipped: Vec<(usize, &str)> = set
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Skipped)
        .map(|d| (d.line, d.message.as_str()))
        .collect();
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert_eq!(skipped[0].0, 1);
    assert!(skipped[0].1.contains("FreeMail"));
    assert!(skipped[0].1.contains("FM_PLAIN"));
    assert_eq!(skipped[1].0, 13);
    assert!(skipped[1].1.contains("feature_unheard_of"));
    assert!(set.skipped.contains_key("FM_PLAIN"));
    let rules = set.compile();
    assert_eq!(names(&rules, PLAIN), vec!["CORE", "FALLBACK", "NEW_ENOUGH"]);
}

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
fn fingerprint_ignores_order_and_whitespace_but_not_scores() {
    let dir = tempfile::tempdir().unwrap();
    let a = "body RULE_A /alpha/\nscore RULE_A 2\n";
    let b = "header RULE_B Subject =~ /beta/i\nmeta RULE_C RULE_A&&RULE_B\n";
    std::fs::write(dir.path().join("1.cf"), a).unwrap();
    std::fs::write(dir.path().join("2.cf"), b).unwrap();
    let first = load_dir(dir.path()).unwrap().fingerprint();
    assert_eq!(first.len(), 64);

    // Same rules, files swapped, extra whitespace and comments.
    std::fs::write(
        dir.path().join("1.cf"),
        "# header rules\nheader   RULE_B   Subject =~ /beta/i\n\n  meta RULE_C ( RULE_A && RULE_B )\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("2.cf"),
        "score RULE_A 2.0   # two\nbody\tRULE_A\t/alpha/\n",
    )
    .unwrap();
    assert_eq!(load_dir(dir.path()).unwrap().fingerprint(), first);

    std::fs::write(
        dir.path().join("2.cf"),
        "score RULE_A 2.5\nbody RULE_A /alpha/\n",
    )
    .unwrap();
    assert_ne!(load_dir(dir.path()).unwrap().fingerprint(), first);
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

#[test]
fn lang_lines_and_ignored_directives_are_quiet() {
    let set = RuleSet::parse_text(
        Path::new("l.cf"),
        "lang de describe X Beschreibung\npriority X -100\nrequire_version 4.000000\nbody X /x/\ndescribe X the x\n",
    );
    assert!(set.diagnostics.is_empty(), "{:?}", set.diagnostics);
    assert_eq!(set.rule("X").unwrap().description.as_deref(), Some("the x"));
}

/// Parses SpamAssassin's shipped rules (`apt-get install spamassassin`) and prints what is
/// evaluated and skipped. Run with `cargo test --lib rules::tests::spamassassin -- --ignored --nocapture`.
#[test]
#[ignore]
fn spamassassin_stock_rules() {
    let dir = std::env::var("SA_RULES_DIR").unwrap_or_else(|_| "/usr/share/spamassassin".into());
    let set = RuleSet::from_dir(Path::new(&dir)).expect("SpamAssassin rules directory");
    let errors: Vec<&Diagnostic> = set
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .collect();
    let started = std::time::Instant::now();
    let rules = set.compile();
    let compile_time = started.elapsed();
    let report = rules.report();
    println!("rules defined: {}", set.rules.len());
    for kind in RuleKind::ALL {
        println!(
            "  active {kind}: {}",
            report.counts.get(&kind).copied().unwrap_or(0)
        );
    }
    println!("active total: {}", report.active());
    println!("backtracking: {}", report.backtracking.len());
    for (n, why) in &report.backtracking {
        println!("    {n}: {why}");
    }
    println!(
        "disabled (score 0 / unused sub-rules): {}",
        report.disabled.len()
    );
    println!("skipped rules: {}", report.skipped.len());
    println!("external refs: {}", report.external_refs.len());
    let mut reasons: std::collections::BTreeMap<String, usize> = Default::default();
    for d in rules.diagnostics() {
        let key = if d.message.starts_with("unknown directive") {
            d.message.clone()
        } else if d.message.contains("eval rule") {
            "eval rules".into()
        } else if d.message.contains("block skipped") {
            "skipped if/ifplugin blocks".into()
        } else {
            format!("{}: {}", d.severity, d.message)
        };
        *reasons.entry(key).or_default() += 1;
    }
    for (k, v) in &reasons {
        println!("  {v:5}  {k}");
    }
    println!("errors: {}", errors.len());
    println!("compile time: {compile_time:?}");
    println!("fingerprint: {}", rules.fingerprint());
    let view = MessageView::parse(
        format!("Subject: test\r\nFrom: a@b.test\r\n\r\n{GTUBE}\r\n").as_bytes(),
    );
    let hits = rules.evaluate(&view, &[]);
    println!("GTUBE message hits: {:?}", hits);
    if let Ok(corpus) = std::env::var("SA_CORPUS_DIR") {
        let mut files: Vec<_> = std::fs::read_dir(&corpus)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        let started = std::time::Instant::now();
        let (mut n, mut total_hits) = (0usize, 0usize);
        for f in files.iter().take(500) {
            if let Ok(raw) = std::fs::read(f) {
                let view = MessageView::parse(&raw);
                total_hits += rules.evaluate(&view, &[]).len();
                n += 1;
            }
        }
        let el = started.elapsed();
        println!(
            "corpus: {n} messages, {total_hits} hits, {:?} ({:.0} msg/s)",
            el,
            n as f64 / el.as_secs_f64()
        );
    }
}
