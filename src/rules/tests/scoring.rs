//! Scores, metas and tflags: what a hit adds, which rules are disabled, and the fingerprint
//! over the effective rule set.

use super::*;

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

/// Regression (review): a meta's value was forced to 1, so a counting sub-meta read as 1
/// by the metas above it; the shipped `SALES_PHRASES_3/5/8`, `NO_CONVERSATION_SIGNS` and
/// `HDR_ANOMALIES_2` (`__SALES_PHRASES >= 3` over a sum of rules) never fired on any
/// message. SpamAssassin keeps the meta's result as its value.
#[test]
fn a_meta_is_worth_its_result_to_the_metas_above_it() {
    let rules = compile(
        "body __A /alpha/\n\
         body __B /beta/\n\
         body __C /gamma/\n\
         meta __COUNT (__A + __B + __C)\n\
         meta TWO_OR_MORE __COUNT >= 2\n\
         meta __TWICE __A + __A\n\
         meta TWICE_ABOVE_ONE __TWICE > 1\n",
    );
    let msg = |body: &str| format!("Subject: s\r\n\r\n{body}\r\n");
    assert_eq!(
        names(&rules, msg("alpha gamma").as_bytes()),
        vec!["TWICE_ABOVE_ONE", "TWO_OR_MORE"]
    );
    assert!(names(&rules, msg("beta").as_bytes()).is_empty());
}

/// Regression (review): a meta whose result was negative passed that negative value up,
/// where SpamAssassin's `got_hit` records a true result of at most 0 as 1.
#[test]
fn a_negative_meta_result_is_worth_one_to_the_metas_above_it() {
    let rules = compile(
        "body __A /alpha/\n\
         meta __NEGATIVE (0 - __A)\n\
         meta READ_AS_ONE __NEGATIVE == 1\n\
         meta READ_AS_NEGATIVE __NEGATIVE < 0\n",
    );
    let msg = "Subject: s\r\n\r\nalpha\r\n";
    assert_eq!(names(&rules, msg.as_bytes()), vec!["READ_AS_ONE"]);
}

#[test]
fn subrules_are_never_reported_or_scored() {
    let rules = compile("body __SUB /buy/\nscore __SUB 5\nmeta USES_SUB __SUB\n");
    assert_eq!(hits(&rules, PLAIN), vec![("USES_SUB".to_string(), 1.0, 1)]);
}

#[test]
fn tflags_noautolearn_marks_rules_and_built_in_symbols() {
    let rules = compile(
        "body LOCAL_VIP /vip/\ntflags LOCAL_VIP nice noautolearn\nscore LOCAL_VIP -3\n\
         score VIRUS_FOUND 20\ntflags VIRUS_FOUND noautolearn\n\
         body PLAIN /plain/\ntflags PLAIN multiple\n",
    );
    let marked: Vec<&str> = rules
        .not_for_autolearn()
        .iter()
        .map(String::as_str)
        .collect();
    assert_eq!(marked, ["LOCAL_VIP", "VIRUS_FOUND"]);
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
fn external_symbols_feed_metas_and_take_file_scores() {
    // SPF_FAIL is an eval rule here, skipped, but a built-in check provides it.
    let options = compile::CompileOptions {
        provided: ["SPF_FAIL".to_string()].into(),
        ..Default::default()
    };
    let compile =
        |text: &str| RuleSet::parse_text(Path::new("test.cf"), text).compile_with(&options);
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

/// Regression (review): a rule or built-in symbol scored 0 was disabled even when
/// `policy.actions` tied an action to it, so the action never ran: README says an action
/// decides whatever the score.
#[test]
fn a_rule_scored_0_that_an_action_is_tied_to_still_hits() {
    let text = "body LISTED /meds/i\n\
                score LISTED 0\n\
                score ATTACH_BLOCKED_EXT 0\n\
                body UNTIED /meds/i\n\
                score UNTIED 0\n";
    let options = compile::CompileOptions {
        acted_on: ["LISTED".to_string(), "ATTACH_BLOCKED_EXT".to_string()].into(),
        ..Default::default()
    };
    let rules = RuleSet::parse_text(Path::new("test.cf"), text).compile_with(&options);
    let view = MessageView::parse(PLAIN);
    let h = rules.evaluate(&view, &[("ATTACH_BLOCKED_EXT", 3.0)]);
    let got: Vec<(&str, f64)> = h.iter().map(|h| (h.name.as_str(), h.score)).collect();
    assert_eq!(got, vec![("ATTACH_BLOCKED_EXT", 0.0), ("LISTED", 0.0)]);
    assert_eq!(rules.report().disabled, vec!["UNTIED"]);

    // Without the action, `score 0` disables both, as in SpamAssassin.
    let plain = RuleSet::parse_text(Path::new("test.cf"), text).compile();
    assert!(plain
        .evaluate(&view, &[("ATTACH_BLOCKED_EXT", 3.0)])
        .is_empty());
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
fn metas_reading_skipped_rules_are_skipped_by_default() {
    let text = "header __EVAL_RULE eval:check_for_something()\n\
                header __SUBJ Subject =~ /offer/\n\
                meta NEGATED_EVAL (__SUBJ && !__EVAL_RULE)\n\
                meta THROUGH_META (NEGATED_EVAL || __SUBJ)\n\
                meta PLAIN_META __SUBJ\n\
                score NEGATED_EVAL 2\nscore THROUGH_META 1\nscore PLAIN_META 1\n";
    let raw = b"Subject: an offer\r\n\r\nbody\r\n";
    let set = RuleSet::parse_text(Path::new("test.cf"), text);
    let skipping = set.compile();
    assert_eq!(names(&skipping, raw), vec!["PLAIN_META"]);
    let listed: Vec<&str> = skipping
        .report()
        .skipped_metas
        .iter()
        .map(|(m, _)| m.as_str())
        .collect();
    assert_eq!(listed, vec!["NEGATED_EVAL", "THROUGH_META"]);
    let evaluating = set.compile_with(&compile::CompileOptions {
        skipped_rule_metas: compile::SkippedRuleMetas::Evaluate,
        ..Default::default()
    });
    assert_eq!(
        names(&evaluating, raw),
        vec!["NEGATED_EVAL", "PLAIN_META", "THROUGH_META"]
    );
}

/// Regression (review): a meta reading a skipped `eval:` rule scored 0 was skipped, though
/// SpamAssassin never runs a rule scored 0 and reads it as not hit: that meta is decided.
#[test]
fn a_skipped_rule_scored_zero_reads_as_not_hit() {
    let text = "header SKIPPED_OFF eval:check_for_something()\n\
                score SKIPPED_OFF 0\n\
                header __SUBJ Subject =~ /offer/\n\
                meta TOP (__SUBJ && !SKIPPED_OFF)\n";
    let rules = compile(text);
    assert_eq!(
        names(&rules, b"Subject: an offer\r\n\r\nbody\r\n"),
        vec!["TOP"]
    );
    assert!(rules.report().skipped_metas.is_empty());
}

#[test]
fn broken_regex_in_a_disabled_rule_is_reported() {
    // Regression: rules switched off by `score X 0` and unused sub-rules were never
    // compiled, so their broken regexes went unnoticed until switched on.
    for text in [
        "body OFF /a(b/\nscore OFF 0\n",
        "body __UNUSED /[abc/\nbody USED /x/\n",
    ] {
        let rules = compile(text);
        assert!(rules.has_errors(), "{text}: {:?}", rules.diagnostics());
    }
    let fine = compile("body OFF /a(b)/\nscore OFF 0\n");
    assert!(!fine.has_errors(), "{:?}", fine.diagnostics());
}

/// Regression (review): `score NAME (1.5)` set 1.5 instead of adding it to the score set
/// before, as SpamAssassin does; and a score line of two or three values was taken,
/// where SpamAssassin wants one or four.
#[test]
fn relative_scores_add_and_score_lines_have_one_or_four_values() {
    let rules = compile("body REL /buy/\nscore REL 2\nscore REL (1.5)\n");
    assert_eq!(hits(&rules, PLAIN), vec![("REL".to_string(), 3.5, 1)]);
    for bad in [
        "body TWO /buy/\nscore TWO 3 2\n",
        "body THREE /buy/\nscore THREE 3 2 1\n",
        "body ALONE /buy/\nscore ALONE (1.5)\n",
    ] {
        let set = RuleSet::parse_text(Path::new("t.cf"), bad);
        assert!(set.has_errors(), "{bad:?}: {:?}", set.diagnostics);
    }
    let four = RuleSet::parse_text(Path::new("t.cf"), "body F /buy/\nscore F 1 2 3 4\n");
    assert!(!four.has_errors(), "{:?}", four.diagnostics);
    // The first of four, set 0, as `spamassassin -L` with no trained Bayes scores it.
    let rules = compile("body NET /buy/\nscore NET 1.5 0 2.5 3.5\n");
    assert_eq!(hits(&rules, PLAIN), vec![("NET".to_string(), 1.5, 1)]);
}

/// Regression (review): Perl's `a`, `u`, `l`, `d`, `p` and `n` modifiers were errors, and
/// one such rule kept its whole file from being activated; SpamAssassin reads them.
#[test]
fn perl_charset_modifiers_are_read() {
    let rules = compile("body FLAG_A /buy/a\nbody FLAG_U /buy/ui\n");
    assert!(!rules.has_errors(), "{:?}", rules.diagnostics());
    assert_eq!(names(&rules, PLAIN), vec!["FLAG_A", "FLAG_U"]);
}

/// Regression (carried from review): only a first value in parentheses made a score line
/// relative, where SpamAssassin makes the line relative when any value is; and values
/// SpamAssassin refuses (`.5`, `1e1`) were taken.
#[test]
fn any_value_in_parentheses_makes_the_line_relative_and_numbers_are_read_as_spamassassin_reads_them(
) {
    let rules = compile("body REL /buy/\nscore REL 2 2 2 2\nscore REL 1 (0) (0) (0)\n");
    assert_eq!(hits(&rules, PLAIN), vec![("REL".to_string(), 3.0, 1)]);
    for bad in [
        "body DOT /buy/\nscore DOT .5\n",
        "body EXP /buy/\nscore EXP 1e1\n",
        "body TRAIL /buy/\nscore TRAIL 1.\n",
        &format!("body HUGE /buy/\nscore HUGE {}\n", "9".repeat(400)),
    ] {
        let set = RuleSet::parse_text(Path::new("t.cf"), bad);
        assert!(set.has_errors(), "{bad:?}: {:?}", set.diagnostics);
    }
    let rules = compile("body NEG /buy/\ntflags NEG nice\nscore NEG -0.25\n");
    assert_eq!(hits(&rules, PLAIN), vec![("NEG".to_string(), -0.25, 1)]);
}

/// Regression (review): a rule defined but never compiled (its regex not supported, or
/// scored 0) had no line in the fingerprint, yet its score still scores a built-in check's
/// symbol of its name: rule sets judging `SPF_FAIL` at 9 and at 1, or silencing GTUBE or
/// not, showed one fingerprint.
#[test]
fn the_fingerprint_covers_scores_of_rules_never_compiled() {
    let msg = b"Subject: x\r\n\r\nhello\r\n";
    let a = compile("body SPF_FAIL /(?|a)/\nscore SPF_FAIL 9\n");
    let b = compile("body SPF_FAIL /(?|a)/\nscore SPF_FAIL 1\n");
    let judged = |r: &CompiledRules, symbol: &str, score: f64| {
        r.evaluate(&MessageView::parse(msg), &[(symbol, score)])
    };
    assert_ne!(judged(&a, "SPF_FAIL", 0.0), judged(&b, "SPF_FAIL", 0.0));
    assert_ne!(a.fingerprint(), b.fingerprint());
    let c = compile("body GTUBE /x/\nscore GTUBE 0\n");
    let d = compile("");
    assert_ne!(judged(&c, "GTUBE", 1000.0), judged(&d, "GTUBE", 1000.0));
    assert_ne!(c.fingerprint(), d.fingerprint());
}

/// Regression (review): a meta dividing by a rule that did not hit read the quotient as 0,
/// so a "ratio below" meta fired; Perl dies on the division, and SpamAssassin 4.0.1 does
/// not fire it (nor a meta above that reads it).
#[test]
fn a_division_by_zero_in_a_meta_does_not_fire_it() {
    let rules = compile(
        "body __A /apple/\ntflags __A multiple\nbody __Z /zebra/\n\
         meta M_RATIO (__A / __Z) < 1\nscore M_RATIO 1\n\
         meta M_NOT !M_RATIO\nscore M_NOT 1\n",
    );
    assert!(!rules.has_errors(), "{:?}", rules.diagnostics());
    assert_eq!(
        names(&rules, b"Subject: t\r\n\r\napple apple\r\n"),
        ["M_NOT"]
    );
    assert_eq!(names(&rules, b"Subject: t\r\n\r\nzebra\r\n"), ["M_RATIO"]);
}
