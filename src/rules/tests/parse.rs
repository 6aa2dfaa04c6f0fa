//! Reading rules files: broken lines with file:line, includes, `if`/`ifplugin` blocks,
//! skipped and ignored directives.

use super::*;

/// The line and message of each diagnostic of `severity`, in order.
fn reported(set: &RuleSet, severity: Severity) -> Vec<(usize, &str)> {
    set.diagnostics
        .iter()
        .filter(|d| d.severity == severity)
        .map(|d| (d.line, d.message.as_str()))
        .collect()
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
    let errors = reported(&set, Severity::Error);
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
fn eval_rules_and_unknown_directives_are_reported_and_skipped() {
    let set = RuleSet::parse_text(
        Path::new("sa.cf"),
        "header SPF_FAIL eval:check_for_spf_fail()\n\
         body HTML_SHOUT eval:html_text_match('x')\n\
         freemail_domains example.test\n\
         body REAL /Hello/\n",
    );
    let skipped = reported(&set, Severity::Skipped);
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
    // Regression (review): a `.cf` that is a dangling link (a deploy half done) was left
    // out silently, and a reload switched on the rule set without it.
    std::os::unix::fs::symlink(dir.path().join("gone.cf"), dir.path().join("20_new.cf")).unwrap();
    assert!(matches!(
        RuleSet::from_dir(dir.path()),
        Err(RulesError::Io { .. })
    ));
}

/// Regression (review): an emptied rules directory (a delete-then-copy deploy, a wrong
/// path) loaded as a policy of no rules, and a reload put it in force with no warning.
#[test]
fn a_rules_directory_without_rules_files_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("README"), "not rules\n").unwrap();
    std::fs::create_dir(dir.path().join("old.cf")).unwrap();
    assert!(matches!(
        RuleSet::from_dir(dir.path()),
        Err(RulesError::NoRules { .. })
    ));
    std::fs::write(dir.path().join("10_local.cf"), "# nothing yet\n").unwrap();
    assert!(RuleSet::from_dir(dir.path()).is_ok());
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
    let skipped = reported(&set, Severity::Skipped);
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

/// Regression (review of the rules docs): `if plugin(X)` and `if can(...Plugin::X::...)` of
/// a plugin this engine lacks read as false, silently: their rules were neither reported
/// nor known as skipped, so a meta reading `!RULE` fired where SpamAssassin, which has the
/// plugin, reads the rule. They are skipped and reported as `ifplugin X` is; `!plugin(X)`
/// fallbacks are still read.
#[test]
fn if_plugin_blocks_of_missing_plugins_are_skipped_like_ifplugin() {
    let set = RuleSet::parse_text(
        Path::new("p.cf"),
        "if plugin(Mail::SpamAssassin::Plugin::SPF)\n\
         body IN_PLUGIN /Hello/\n\
         endif\n\
         if can(Mail::SpamAssassin::Plugin::SPF::has_check_for_spf_errors)\n\
         body IN_CAN /Hello/\n\
         endif\n\
         if !plugin(Mail::SpamAssassin::Plugin::SPF)\n\
         body SPF_FALLBACK /Hello/\n\
         endif\n\
         if plugin(Mail::SpamAssassin::Plugin::Check)\n\
         body CORE_PLUGIN /Hello/\n\
         endif\n\
         meta NOT_IN_PLUGIN !IN_PLUGIN\n",
    );
    let skipped = reported(&set, Severity::Skipped);
    assert!(
        skipped
            .iter()
            .any(|(l, m)| *l == 1 && m.contains("IN_PLUGIN")),
        "{skipped:?}"
    );
    assert!(
        skipped.iter().any(|(l, m)| *l == 4 && m.contains("IN_CAN")),
        "{skipped:?}"
    );
    assert!(set.skipped.contains_key("IN_PLUGIN") && set.skipped.contains_key("IN_CAN"));
    let rules = set.compile();
    let hit = names(&rules, PLAIN);
    assert!(hit.contains(&"SPF_FALLBACK".to_string()), "{hit:?}");
    assert!(hit.contains(&"CORE_PLUGIN".to_string()), "{hit:?}");
    assert!(!hit.contains(&"NOT_IN_PLUGIN".to_string()), "{hit:?}");
}

/// Regression (review of the change above): an `else` after `if plugin(X)` of a missing
/// plugin was skipped with the block, though it is the fallback SpamAssassin without X
/// reads; `!(!plugin(X))` read as plain false, unreported; `!(plugin(X) || version >= 3)`
/// read as true, where every SpamAssassin reads false.
#[test]
fn conditions_on_missing_plugins_read_as_spamassassin_without_them() {
    let set = RuleSet::parse_text(
        Path::new("p.cf"),
        "if plugin(Mail::SpamAssassin::Plugin::SPF)\n\
         body SHARED /Hello/\n\
         else\n\
         body SHARED /Hello/\n\
         body ELSE_ONLY /Hello/\n\
         endif\n\
         if !(!plugin(Mail::SpamAssassin::Plugin::DKIM))\n\
         body DOUBLE_NOT /Hello/\n\
         endif\n\
         if !(plugin(Mail::SpamAssassin::Plugin::DKIM) || version >= 3.004)\n\
         body NEVER /Hello/\n\
         endif\n\
         if plugin(Mail::SpamAssassin::Plugin::DKIM) || version >= 3.004\n\
         body ALWAYS /Hello/\n\
         endif\n\
         if can(Mail::SpamAssassin::Conf::has_tflags_nosubject)\n\
         body NOSUBJECT_KNOWN /Hello/\n\
         endif\n",
    );
    let lines: Vec<usize> = reported(&set, Severity::Skipped)
        .into_iter()
        .map(|(line, _)| line)
        .collect();
    assert_eq!(lines, [1, 7], "{:?}", set.diagnostics);
    assert!(set.skipped.contains_key("DOUBLE_NOT"));
    assert!(!set.skipped.contains_key("SHARED"));
    let rules = set.compile();
    assert_eq!(
        names(&rules, PLAIN),
        vec!["ALWAYS", "ELSE_ONLY", "NOSUBJECT_KNOWN", "SHARED"]
    );
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

/// Regression (review): an `if` condition nested without bound (`if !!!…!1`, `((((…`)
/// recursed once per level and overflowed the stack: a rules file could abort the
/// gateway at load or reload. Such a condition is one the engine cannot evaluate: its
/// block is skipped and reported, like any other.
#[test]
fn a_condition_nested_too_deeply_is_reported_not_a_crash() {
    for text in [
        format!("if {}1\nbody INSIDE /x/\nendif\n", "!".repeat(100_000)),
        format!(
            "if {}1{}\nbody INSIDE /x/\nendif\n",
            "(".repeat(100_000),
            ")".repeat(100_000)
        ),
    ] {
        let set = RuleSet::parse_text(Path::new("deep.cf"), &text);
        let shown: Vec<String> = set.diagnostics.iter().map(|d| d.to_string()).collect();
        assert!(
            shown
                .iter()
                .any(|d| d.contains("nested more than 200 deep")),
            "{shown:?}"
        );
    }
    // Nesting as deep as people write stays fine.
    let set = RuleSet::parse_text(Path::new("ok.cf"), "if !(!(version >= 3.0))\nendif\n");
    assert!(set.diagnostics.is_empty(), "{:?}", set.diagnostics);
}

/// Regression (review of the rules docs): a misspelled `score` line was only a skipped
/// unknown directive, so `check` passed and the rule kept its default score; SpamAssassin's
/// lint fails on it. A plugin's directive far from every core one is still skipped.
#[test]
fn a_misspelled_core_directive_is_an_error() {
    let set = RuleSet::parse_text(
        Path::new("t.cf"),
        "body TYPO /x/\nscroe TYPO 3\ndescirbe TYPO words\nuridnsbl URIBL_X x.example. TXT\n",
    );
    let errors: Vec<&str> = reported(&set, Severity::Error)
        .into_iter()
        .map(|(_, message)| message)
        .collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].contains("a misspelled `score`"), "{errors:?}");
    assert!(errors[1].contains("a misspelled `describe`"), "{errors:?}");
    assert!(set
        .diagnostics
        .iter()
        .any(|d| d.severity == Severity::Skipped && d.message.contains("uridnsbl")));
}

/// Regression (review of the rules docs): `body 9BAD /x/` was taken, though a meta reads
/// `9BAD` as a number and SpamAssassin's lint refuses the name.
#[test]
fn a_rule_name_starting_with_a_digit_is_an_error() {
    let set = RuleSet::parse_text(Path::new("t.cf"), "body 9BAD /x/\nbody OK9 /x/\n");
    let errors: Vec<&str> = reported(&set, Severity::Error)
        .into_iter()
        .map(|(_, message)| message)
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("starts with a digit"), "{errors:?}");
}

/// `ifplugin X` is `if plugin(X)`: for a plugin this engine lacks, its `else` branch (the
/// fallback) is read, as after `if plugin(X)`.
#[test]
fn ifplugin_reads_its_else_as_if_plugin_does() {
    let set = RuleSet::parse_text(
        Path::new("p.cf"),
        "ifplugin Mail::SpamAssassin::Plugin::SPF\n\
         body WITH_PLUGIN /Hello/\n\
         else\n\
         body WITHOUT_PLUGIN /Hello/\n\
         endif\n",
    );
    assert!(set.skipped.contains_key("WITH_PLUGIN"));
    assert_eq!(names(&set.compile(), PLAIN), vec!["WITHOUT_PLUGIN"]);
}

/// Regression (review): a score of 10^300 (written out in digits) was accepted; a message's sum (kept in
/// thousandths) overflowed to infinity, which the spool's JSON record of the verdict
/// cannot hold, so an accepted message read back as corrupt at delivery.
#[test]
fn scores_out_of_range_are_errors() {
    let digits = |n: usize| format!("1{}", "0".repeat(n));
    for score in [
        digits(300),
        format!("-{}", digits(300)),
        digits(400),
        digits(12) + "1",
    ] {
        let set = RuleSet::parse_text(
            Path::new("big.cf"),
            &format!("body BIG /Hello/\nscore BIG {score}\n"),
        );
        let errors = reported(&set, Severity::Error);
        assert!(
            errors.iter().any(|e| e.1.contains("out of range")),
            "{score}: {errors:?}"
        );
    }
    let set = RuleSet::parse_text(
        Path::new("ok.cf"),
        "body OK /Hello/\nscore OK -10000000\nbody BIG /x/\nscore BIG 1000000000000\n",
    );
    assert!(!set.has_errors());
}
