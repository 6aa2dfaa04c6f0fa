//! Interop with SpamAssassin's stock rules (Debian package `spamassassin`, rules in
//! /usr/share/spamassassin): `mxguard check` loads them and says how many it evaluates and
//! skips; for GTUBE, hand-written messages, the lenient-base64 corpus messages and (when
//! present) a sample of 30 corpus messages, the header/body/uri/rawbody/full rules mxguard
//! hits agree with those `spamassassin -t -L` reports (Jaccard over the rules both evaluate
//! at least 0.99). Needs `spamassassin`: under `MXGUARD_INTEROP=1` a missing one fails, otherwise
//! the test prints `SKIP:`.

mod common;

use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

const SA_RULES: &str = "/usr/share/spamassassin";

/// Corpus sample: tens of messages, so the test stays CI-friendly (each `spamassassin -t`
/// run compiles the stock rules: about two seconds).
const CORPUS_SPAM: usize = 20;
const CORPUS_HAM: usize = 10;

/// Required agreement: Jaccard over all (message, rule) hits of the rules both evaluate.
const MIN_JACCARD: f64 = 0.99;

/// Corpus messages whose base64 data starts with a blank line (decoded leniently).
fn lenient_base64_messages() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/lenient-base64");
    let mut v: Vec<PathBuf> = fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|x| x == "eml"));
    v.sort();
    assert!(!v.is_empty(), "no messages in {}", dir.display());
    v
}

/// Rule kinds compared (eval rules, metas and network rules excluded).
const CONTENT_KINDS: [&str; 5] = ["header", "body", "rawbody", "uri", "full"];

fn text(out: &std::process::Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The stock rules files, or `None` (SKIP / panic under interop) when they are missing.
fn stock_rules() -> Option<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = fs::read_dir(SA_RULES)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "cf"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    if files.is_empty() {
        skip(&format!("no SpamAssassin rules in {SA_RULES}"));
        return None;
    }
    Some(files)
}

/// Names of the non-eval header/body/rawbody/uri/full rules defined in the stock files,
/// minus those flagged `net`.
fn content_rule_names(files: &[PathBuf]) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut net = BTreeSet::new();
    for f in files {
        let Ok(text) = fs::read_to_string(f) else {
            continue;
        };
        for line in text.lines() {
            let mut w = line.split_whitespace();
            let (Some(kind), Some(name)) = (w.next(), w.next()) else {
                continue;
            };
            let rest: Vec<&str> = w.collect();
            if kind == "tflags" && rest.contains(&"net") {
                net.insert(name.to_string());
            }
            if !CONTENT_KINDS.contains(&kind) || name.starts_with("__") {
                continue;
            }
            let first = rest.first().copied().unwrap_or("");
            if first.starts_with("eval:") || rest.iter().any(|r| r.starts_with("eval:")) {
                continue;
            }
            names.insert(name.to_string());
        }
    }
    names.retain(|n| !net.contains(n));
    names
}

/// Parses `mxguard check` output: (evaluated, skipped count, skipped rule names).
fn parse_check(stdout: &str) -> (usize, usize, BTreeSet<String>) {
    let number = |key: &str| -> usize {
        stdout
            .lines()
            .find_map(|l| {
                let mut w = l.split_whitespace();
                (w.next() == Some(key)).then(|| w.next()?.parse().ok())?
            })
            .unwrap_or_else(|| panic!("no `{key} N` line in check output:\n{stdout}"))
    };
    let mut skipped = BTreeSet::new();
    for line in stdout.lines() {
        // `FILE:LINE: skipped: KIND NAME: reason`
        let Some(pos) = line.find("skipped: ") else {
            continue;
        };
        let mut w = line[pos + "skipped: ".len()..].split_whitespace();
        if let (Some(kind), Some(name)) = (w.next(), w.next()) {
            if CONTENT_KINDS.contains(&kind) || kind == "meta" {
                skipped.insert(name.trim_end_matches(':').to_string());
            }
        }
    }
    (number("evaluated"), number("skipped"), skipped)
}

/// Rule names from a `spamassassin -t` report: the "Content analysis details" table
/// (`pts rule-name description`, continuation lines indented), falling back to the
/// `tests=` list of `X-Spam-Status`.
fn parse_sa_report(out: &str) -> Option<BTreeSet<String>> {
    let is_name =
        |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if let Some(pos) = out.rfind("Content analysis details:") {
        let mut names = BTreeSet::new();
        let mut in_table = false;
        for line in out[pos..].lines().skip(1) {
            let t = line.trim();
            if !in_table {
                if t.starts_with("----") {
                    in_table = true;
                }
                continue;
            }
            if t.is_empty() {
                break;
            }
            let mut w = t.split_whitespace();
            let (Some(pts), Some(name)) = (w.next(), w.next()) else {
                continue;
            };
            if pts.parse::<f64>().is_ok() && is_name(name) {
                names.insert(name.to_string());
            }
        }
        if in_table {
            return Some(names);
        }
    }
    // X-Spam-Status: Yes, score=... required=... tests=A,B,\n\tC autolearn=...
    let start = out.find("X-Spam-Status:")?;
    let mut header = String::new();
    for (i, line) in out[start..].lines().enumerate() {
        if i > 0 && !line.starts_with([' ', '\t']) {
            break;
        }
        header.push_str(line.trim());
        header.push(' ');
    }
    let tests = header.split("tests=").nth(1)?;
    let list = tests
        .split_whitespace()
        .take_while(|w| !w.contains('='))
        .collect::<String>();
    Some(
        list.split(',')
            .map(str::trim)
            .filter(|n| is_name(n) && *n != "none")
            .map(str::to_string)
            .collect(),
    )
}

fn run_spamassassin(sa: &Path, home: &Path, msg: &Path) -> BTreeSet<String> {
    let out = run_with_timeout(
        Command::new(sa)
            .args(["-t", "-L", "--configpath", SA_RULES, "--cf", "use_bayes 0"])
            .arg(msg)
            .env("HOME", home),
        Duration::from_secs(120),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    parse_sa_report(&stdout).unwrap_or_else(|| {
        panic!(
            "no rule report from spamassassin for {}: {}",
            msg.display(),
            text(&out)
        )
    })
}

/// Raw message bytes with CRLF line ends.
fn crlf(s: &str) -> String {
    s.replace("\r\n", "\n").replace('\n', "\r\n")
}

fn hand_written() -> Vec<(&'static str, String)> {
    vec![
        (
            "gtube.eml",
            crlf(&format!(
                "Received: from client.sender.test (client.sender.test [192.0.2.10])\n\
                 \tby mx.example.test with ESMTP id 1234; Mon, 1 Jan 2024 00:00:00 +0000\n\
                 From: Sender <sender@sender.test>\n\
                 To: <user@example.test>\n\
                 Subject: GTUBE test\n\
                 Message-ID: <gtube-test-0001@sender.test>\n\
                 Date: Mon, 1 Jan 2024 00:00:00 +0000\n\
                 \n\
                 This is the GTUBE, the\n\
                 \tGeneric\n\
                 \tTest for\n\
                 \tUnsolicited\n\
                 \tBulk\n\
                 \tEmail\n\
                 \n\
                 {GTUBE}\n"
            )),
        ),
        (
            "plain-ham.eml",
            crlf(
                "Received: from mail.sender.test (mail.sender.test [192.0.2.20])\n\
                 \tby mx.example.test with ESMTP id 5678; Tue, 2 Jan 2024 09:15:00 +0100\n\
                 From: Alice Example <alice@sender.test>\n\
                 To: Bob <user@example.test>\n\
                 Subject: Notes from Tuesday's meeting\n\
                 Message-ID: <20240102091500.4711@mail.sender.test>\n\
                 Date: Tue, 2 Jan 2024 09:15:00 +0100\n\
                 MIME-Version: 1.0\n\
                 Content-Type: text/plain; charset=us-ascii\n\
                 \n\
                 Hi Bob,\n\
                 \n\
                 attached are the notes from Tuesday. The next meeting is on\n\
                 Thursday at ten; please bring the budget figures for Q1.\n\
                 \n\
                 Thanks,\n\
                 Alice\n",
            ),
        ),
        (
            "money-spam.eml",
            crlf(
                "From: \"Best Deals\" <deals@cheap-offers.test>\n\
                 To: <user@example.test>\n\
                 Subject: FREE!!! Make MONEY fast - 100% GUARANTEED\n\
                 Message-ID: <abc@cheap-offers.test>\n\
                 Date: Mon, 1 Jan 2024 00:00:00 +0000\n\
                 X-Mailer: Mass Mailer Pro 5.0\n\
                 MIME-Version: 1.0\n\
                 Content-Type: text/plain; charset=us-ascii\n\
                 \n\
                 Dear Friend,\n\
                 \n\
                 You have been specially selected to receive this FREE offer!\n\
                 Make money fast working from home. 100% GUARANTEED! No risk!\n\
                 Earn $5000 per week! This is not spam. Act now! Limited time only!\n\
                 Buy cheap viagra and cialis online, no prescription needed.\n\
                 Lose weight fast with our miracle diet pills.\n\
                 Click here: http://192.0.2.55/offer.php?id=123\n\
                 Visit http://www.cheap-offers.test/buy-now and order today.\n\
                 \n\
                 To be removed from our mailing list, reply with REMOVE in the subject.\n\
                 This message is sent in compliance with the new e-mail bill\n\
                 Section 301, Paragraph (a)(2)(C) of S. 1618.\n",
            ),
        ),
        (
            "advance-fee.eml",
            crlf(
                "From: Barrister James Williams <jwilliams@lawfirm.test>\n\
                 Reply-To: <jw.private@freemail.test>\n\
                 To: <user@example.test>\n\
                 Subject: URGENT BUSINESS PROPOSAL\n\
                 Date: Mon, 1 Jan 2024 00:00:00 +0000\n\
                 MIME-Version: 1.0\n\
                 Content-Type: text/plain; charset=us-ascii\n\
                 \n\
                 Dear Sir/Madam,\n\
                 \n\
                 I am Barrister James Williams, the personal attorney to the late\n\
                 Mr. John Smith, a foreign contractor who died in a plane crash with\n\
                 his entire family. He left the sum of US$10,500,000.00 (Ten Million\n\
                 Five Hundred Thousand United States Dollars) in a bank here.\n\
                 I seek your consent to present you as the next of kin of the deceased\n\
                 so that the proceeds of this account can be paid to you. We shall\n\
                 share the money 60% for me and 40% for you. This transaction is 100%\n\
                 risk free. Please treat this as strictly confidential and reply\n\
                 with your full name, private telephone number and bank details.\n",
            ),
        ),
        (
            "html-spam.eml",
            crlf(
                "From: Pharmacy <sales@pharma.test>\n\
                 To: <user@example.test>\n\
                 Subject: Your order\n\
                 Message-ID: <order-99@pharma.test>\n\
                 Date: Mon, 1 Jan 2024 00:00:00 +0000\n\
                 MIME-Version: 1.0\n\
                 Content-Type: text/html; charset=\"iso-8859-1\"\n\
                 \n\
                 <html><body bgcolor=\"#ffffff\">\n\
                 <p><font color=\"red\" size=\"7\"><b>BEST PRICES ON VIAGRA</b></font></p>\n\
                 <p>Order <a href=\"http://pharma.test/shop?ref=mail\">here</a> and save 80%!</p>\n\
                 <p><a href=\"http://pharma.test/unsubscribe\">Click here to unsubscribe</a></p>\n\
                 <img src=\"http://pharma.test/img/pills.gif\" width=\"600\" height=\"400\">\n\
                 </body></html>\n",
            ),
        ),
    ]
}

/// A few corpus messages when `../shared/corpus/train.tar.gz` exists.
fn corpus_messages(dest: &Path) -> Vec<PathBuf> {
    let tarball = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/train.tar.gz");
    if !tarball.exists() {
        println!(
            "corpus: {} not found, using hand-written messages only",
            tarball.display()
        );
        return Vec::new();
    }
    let list = run_with_timeout(
        Command::new("tar").arg("-tzf").arg(&tarball),
        Duration::from_secs(120),
    );
    assert!(list.status.success(), "tar -t: {}", text(&list));
    let names: Vec<String> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter(|l| l.ends_with(".eml"))
        .map(str::to_string)
        .collect();
    let pick = |class: &str, n: usize| -> Vec<String> {
        let mut v: Vec<String> = names
            .iter()
            .filter(|l| l.contains(&format!("/{class}/")))
            .cloned()
            .collect();
        v.sort();
        // Spread over the set, deterministically.
        let step = (v.len() / n.max(1)).max(1);
        v.into_iter().step_by(step).take(n).collect()
    };
    let mut chosen = pick("spam", CORPUS_SPAM);
    chosen.extend(pick("ham", CORPUS_HAM));
    if chosen.is_empty() {
        println!("corpus: no .eml members in {}", tarball.display());
        return Vec::new();
    }
    let x = run_with_timeout(
        Command::new("tar")
            .arg("-xzf")
            .arg(&tarball)
            .arg("-C")
            .arg(dest)
            .args(&chosen),
        Duration::from_secs(120),
    );
    assert!(x.status.success(), "tar -x: {}", text(&x));
    println!(
        "corpus: comparing {} messages from {}: {chosen:?}",
        chosen.len(),
        tarball.display()
    );
    chosen.iter().map(|c| dest.join(c)).collect()
}

#[test]
fn stock_spamassassin_rules_agree_with_spamassassin() {
    let Some(sa) = interop_required("spamassassin") else {
        return;
    };
    let Some(files) = stock_rules() else {
        return;
    };
    let dir = tempfile::Builder::new()
        .prefix("mxguard-sa-")
        .tempdir()
        .unwrap();
    let root = dir.path();
    fs::create_dir_all(root.join("rules")).unwrap();
    for f in &files {
        std::os::unix::fs::symlink(f, root.join("rules").join(f.file_name().unwrap())).unwrap();
    }
    fs::write(
        root.join("mxguard.toml"),
        "[relay]\ndomains = [\"example.test\"]\ninternal = [\"127.0.0.1:2\"]\n\n\
         [spool]\ndir = \"spool\"\n\n[policy]\nrules_dir = \"rules\"\ngtube = true\n",
    )
    .unwrap();

    // check: loads, counts, exit 0.
    let out = run_mxguard(root, &["check", "--config", "mxguard.toml"]);
    assert!(
        out.status.success(),
        "check on the stock rules failed: {}",
        text(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (evaluated, skipped_count, skipped) = parse_check(&stdout);
    println!(
        "mxguard check on {} stock files: evaluated {evaluated}, skipped {skipped_count} \
         ({} header/body/uri/rawbody/full/meta rules named as skipped)",
        files.len(),
        skipped.len()
    );
    assert!(
        evaluated > 500,
        "only {evaluated} stock rules evaluated:\n{stdout}"
    );

    // Messages.
    let msgs_dir = root.join("msgs");
    fs::create_dir_all(&msgs_dir).unwrap();
    let mut messages: Vec<PathBuf> = Vec::new();
    for (name, body) in hand_written() {
        let p = msgs_dir.join(name);
        fs::write(&p, body).unwrap();
        messages.push(p);
    }
    let corpus_dir = root.join("corpus");
    fs::create_dir_all(&corpus_dir).unwrap();
    let corpus = corpus_messages(&corpus_dir);
    messages.extend(corpus.iter().cloned());
    let lenient = lenient_base64_messages();
    messages.extend(lenient.iter().cloned());

    // mxguard's hits.
    let mut args: Vec<String> = vec![
        "scan".into(),
        "--config".into(),
        "mxguard.toml".into(),
        "--json".into(),
    ];
    args.extend(messages.iter().map(|p| p.display().to_string()));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_mxguard(root, &argv);
    assert!(out.status.success(), "scan failed: {}", text(&out));
    let mut mx: BTreeMap<PathBuf, BTreeSet<String>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
    {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let file = PathBuf::from(v["file"].as_str().unwrap());
        let file = if file.is_absolute() {
            file
        } else {
            root.join(file)
        };
        mx.insert(file, scan_rules(&v).into_iter().collect());
    }
    assert_eq!(mx.len(), messages.len(), "scan output: {}", text(&out));

    // SpamAssassin's hits (a few in parallel: each run compiles the rules).
    let home = root.join("home");
    fs::create_dir_all(&home).unwrap();
    let sa_hits: Mutex<BTreeMap<PathBuf, BTreeSet<String>>> = Mutex::new(BTreeMap::new());
    thread::scope(|s| {
        for chunk in messages.chunks(messages.len().div_ceil(3)) {
            let (sa, home, sa_hits) = (&sa, &home, &sa_hits);
            s.spawn(move || {
                for m in chunk {
                    let hits = run_spamassassin(sa, home, m);
                    sa_hits.lock().unwrap().insert(m.clone(), hits);
                }
            });
        }
    });
    let sa_hits = sa_hits.into_inner().unwrap();

    // What is compared: non-eval content rules that mxguard evaluates.
    let content = content_rule_names(&files);
    let hit_by_mx: BTreeSet<String> = mx.values().flatten().cloned().collect();
    let comparable =
        |n: &String| content.contains(n) && (hit_by_mx.contains(n) || !skipped.contains(n));

    let mut failures = Vec::new();
    let mut totals = (0usize, 0usize, 0usize);
    for m in &messages {
        let name = m.strip_prefix(root).unwrap_or(m).display().to_string();
        let is_lenient = lenient.contains(m);
        let mine: BTreeSet<String> = mx[m].iter().filter(|n| comparable(n)).cloned().collect();
        let theirs: BTreeSet<String> = sa_hits[m]
            .iter()
            .filter(|n| comparable(n))
            .cloned()
            .collect();
        let both = mine.intersection(&theirs).count();
        let union = mine.union(&theirs).count();
        let jaccard = if union == 0 {
            1.0
        } else {
            both as f64 / union as f64
        };
        let only_mx: Vec<&String> = mine.difference(&theirs).collect();
        let only_sa: Vec<&String> = theirs.difference(&mine).collect();
        totals.0 += both;
        totals.1 += only_mx.len();
        totals.2 += only_sa.len();
        println!(
            "{name}: compared {} rules, jaccard {jaccard:.2}; mxguard all hits {:?}; \
             spamassassin all hits {:?}",
            union, mx[m], sa_hits[m]
        );
        if !only_mx.is_empty() || !only_sa.is_empty() {
            println!("  disagreement: only mxguard {only_mx:?}; only spamassassin {only_sa:?}");
        }
        if name.ends_with("gtube.eml") {
            if !mx[m].contains("GTUBE") || !sa_hits[m].contains("GTUBE") {
                failures.push(format!("{name}: GTUBE not hit by both"));
            }
            if mine != theirs {
                failures.push(format!(
                    "{name}: GTUBE message disagrees: only mxguard {only_mx:?}, only spamassassin {only_sa:?}"
                ));
            }
        }
        if is_lenient && (theirs.is_empty() || mine != theirs) {
            failures.push(format!(
                "{name} (lenient base64): only mxguard {only_mx:?}, only spamassassin {only_sa:?}"
            ));
        }
    }
    let union = totals.0 + totals.1 + totals.2;
    let jaccard = if union == 0 {
        1.0
    } else {
        totals.0 as f64 / union as f64
    };
    println!("overall jaccard over the rules both evaluate: {jaccard:.4} ({union} hits)");
    if jaccard < MIN_JACCARD {
        failures.push(format!(
            "overall jaccard {jaccard:.4} < {MIN_JACCARD}: {} in agreement, {} only mxguard, {} only spamassassin",
            totals.0, totals.1, totals.2
        ));
    }
    println!(
        "compared {} messages ({} from the corpus, {} lenient base64): {} rule hits in agreement, {} only mxguard, {} only spamassassin",
        messages.len(),
        corpus.len(),
        lenient.len(),
        totals.0,
        totals.1,
        totals.2
    );
    assert!(
        failures.is_empty(),
        "disagreements with spamassassin:\n{}",
        failures.join("\n")
    );
}
