//! Every configuration key is documented in README.md (product guide: "Every config key is
//! documented in README").
//!
//! Nothing else ties the "Configuration reference" tables to the serde structs, so a key
//! added to a raw struct could ship undocumented. There is no reflection over the structs;
//! instead each table is probed through the real parser: every raw struct denies unknown
//! fields, and a table holding only `zz_probe_key` makes serde answer
//! "unknown field `zz_probe_key`, expected one of `a`, `b`, ...", which lists the keys the
//! table accepts. Each key is then probed with a table as its value to find the nested
//! tables (`[server.limits]`, `[[tier.peers]]`, `[policy.domains."D"]`, ...), so a new
//! nested table is found without editing this file; it must then be given its README
//! section in [`SECTIONS`], and a table that cannot be probed must be named, with the
//! reason, in [`NOT_PROBED`].

use super::RawConfig;
use std::collections::BTreeMap;

/// The key put into every probed table; no table accepts it.
const PROBE: &str = "zz_probe_key";

/// The key a probe uses for a map whose keys are free-form (domains, rule names, ...).
const MAP_KEY: &str = "zz_map_key";

const README: &str = include_str!("../../README.md");

/// Which part of README documents a table.
#[derive(Clone, Copy, Debug)]
enum Region {
    /// The whole file.
    Whole,
    /// The key cells (first column) of the table rows from the line starting with this
    /// text to the next heading (fenced code skipped): each key has a row of its own, a
    /// mention in another key's row or in the prose does not count.
    Section(&'static str),
    /// The one line starting with this text (one table row, every cell).
    Row(&'static str),
}

/// Where a table's keys are documented: `needles` are the texts README writes a key as
/// (`{k}` stands for the key); one of them must occur in `region`.
struct Section {
    path: &'static str,
    region: Region,
    needles: &'static [&'static str],
}

/// In the section's own table, as `` `key` ``.
const PLAIN: &[&str] = &["`{k}`"];

/// Every table path the configuration has, with its place in README. Paths: `a.b` a
/// table, `a[]` each table of an array of tables, `a.*` each value of a map whose keys are
/// free-form. A key holding tables is documented by their own section, so the top
/// level's keys (all tables) need only their sections to be found.
const SECTIONS: &[Section] = &[
    Section {
        path: "",
        region: Region::Whole,
        needles: &["`[{k}]`", "`[[{k}]]`"],
    },
    Section {
        path: "server",
        region: Region::Section("### `[server]`"),
        needles: PLAIN,
    },
    Section {
        path: "server.limits",
        region: Region::Section("### `[server.limits]`"),
        needles: PLAIN,
    },
    Section {
        path: "server.tls",
        region: Region::Section("### `[server.tls]`"),
        needles: PLAIN,
    },
    Section {
        path: "relay",
        region: Region::Section("### `[relay]`"),
        needles: PLAIN,
    },
    Section {
        path: "relay.recipients",
        region: Region::Section("### `[relay.recipients]`"),
        needles: PLAIN,
    },
    Section {
        path: "policy",
        region: Region::Section("### `[policy]`"),
        needles: PLAIN,
    },
    // `[policy.domains."example.test"]`: one row of the `[policy]` table.
    Section {
        path: "policy.domains.*",
        region: Region::Row("| `domains.\"D\"."),
        needles: &["`domains.\"D\".{k}`", "`.{k}`"],
    },
    Section {
        path: "policy.dnsbl[]",
        region: Region::Section("| key of `[[policy.dnsbl]]` / `[[policy.uribl]]`"),
        needles: PLAIN,
    },
    Section {
        path: "policy.uribl[]",
        region: Region::Section("| key of `[[policy.dnsbl]]` / `[[policy.uribl]]`"),
        needles: PLAIN,
    },
    Section {
        path: "state",
        region: Region::Section("### `[state]`"),
        needles: PLAIN,
    },
    Section {
        path: "greylist",
        region: Region::Section("### `[greylist]`"),
        needles: PLAIN,
    },
    Section {
        path: "ratelimit[]",
        region: Region::Section("### `[[ratelimit]]`"),
        needles: PLAIN,
    },
    Section {
        path: "dns",
        region: Region::Section("### `[dns]`"),
        needles: PLAIN,
    },
    Section {
        path: "classifier",
        region: Region::Section("### `[classifier]`"),
        needles: PLAIN,
    },
    Section {
        path: "attachments",
        region: Region::Section("### `[attachments]`"),
        needles: PLAIN,
    },
    Section {
        path: "antivirus",
        region: Region::Section("### `[antivirus]`"),
        needles: PLAIN,
    },
    Section {
        path: "spool",
        region: Region::Section("### `[spool]`, `[metrics]`, `[log]`"),
        needles: &["`spool.{k}`"],
    },
    Section {
        path: "metrics",
        region: Region::Section("### `[spool]`, `[metrics]`, `[log]`"),
        needles: &["`metrics.{k}`"],
    },
    Section {
        path: "log",
        region: Region::Section("### `[spool]`, `[metrics]`, `[log]`"),
        needles: &["`log.{k}`"],
    },
    // The tier is documented with the MX tier, not in the configuration reference.
    Section {
        path: "tier",
        region: Region::Section("### Tier configuration"),
        needles: &["`tier.{k}`"],
    },
    Section {
        path: "tier.peers[]",
        region: Region::Row("| `tier.peers[]."),
        needles: &["`tier.peers[].{k}`", "`.{k}`"],
    },
    // Not reached by the walk (see `NOT_PROBED`): `RawCodeEntry` is probed on its own.
    Section {
        path: CODE_ENTRY,
        region: Region::Row("| `codes` |"),
        needles: &[" {k} = "],
    },
];

/// The table form of a `codes` entry, probed directly (see `NOT_PROBED`).
const CODE_ENTRY: &str = "policy.dnsbl[].codes.* (as a table)";

/// Table paths the walk cannot probe, and why. A path the walk meets that it cannot probe
/// and that is not named here fails the test.
const NOT_PROBED: &[(&str, &str)] = &[
    (
        "state.redis",
        "an untagged enum (one URL or a list of URLs): serde reports no field list; \
         it holds no table",
    ),
    (
        "policy.dnsbl[].codes",
        "a map whose values are an untagged enum (a symbol, or a table of symbol and \
         weight): serde reports no field list; the table form, RawCodeEntry, is probed \
         directly",
    ),
    (
        "policy.uribl[].codes",
        "the same type as policy.dnsbl[].codes, probed directly",
    ),
    (
        "policy.uribl[].lookup",
        "a string enum (\"domains\", \"ips\", \"both\"): serde reads a table as a variant \
         name and reports variants, not fields; it holds no table",
    ),
    (
        "policy.dnsbl[].lookup",
        "the same type as policy.uribl[].lookup (refused for a DNSBL by validation)",
    ),
];

/// One step from the top of the file to a table.
#[derive(Clone, Debug)]
enum Step {
    Key(String),
    /// Each element of an array of tables.
    Each,
    /// Each value of a map with free-form keys.
    Any,
}

fn path_name(steps: &[Step]) -> String {
    let mut name = String::new();
    for step in steps {
        match step {
            Step::Key(k) => {
                if !name.is_empty() {
                    name.push('.');
                }
                name.push_str(k);
            }
            Step::Each => name.push_str("[]"),
            Step::Any => name.push_str(".*"),
        }
    }
    name
}

/// A table holding only the probe key.
fn probe_table() -> toml::Value {
    toml::Value::Table(toml::Table::from_iter([(
        PROBE.to_owned(),
        toml::Value::Integer(1),
    )]))
}

/// Puts `leaf` at `steps` and parses the file as the gateway does; the serde message of
/// the refusal, or `None` when the text was taken.
fn parse_with(steps: &[Step], leaf: toml::Value) -> Option<String> {
    let mut value = leaf;
    for step in steps.iter().rev() {
        value = match step {
            Step::Key(k) => toml::Value::Table(toml::Table::from_iter([(k.clone(), value)])),
            Step::Each => toml::Value::Array(vec![value]),
            Step::Any => toml::Value::Table(toml::Table::from_iter([(MAP_KEY.to_owned(), value)])),
        };
    }
    let text = toml::to_string(&value).expect("the probe serialises");
    toml::from_str::<RawConfig>(&text)
        .err()
        .map(|e| e.message().to_owned())
}

/// The keys named by serde's refusal of the probe key, or `None` for another refusal.
fn accepted_keys(message: &str) -> Option<Vec<String>> {
    let rest = message.strip_prefix(&format!("unknown field `{PROBE}`"))?;
    // "expected `a`", "expected `a` or `b`", "expected one of `a`, `b`, ...", or
    // "there are no fields".
    Some(
        rest.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect(),
    )
}

/// What the walk found.
#[derive(Default)]
struct Found {
    /// Table path → the keys it accepts.
    tables: BTreeMap<String, Vec<String>>,
    /// Paths that could not be probed → serde's message.
    unprobed: BTreeMap<String, String>,
}

/// Probes the value at `steps` with a table and follows every table inside it.
fn walk(steps: &mut Vec<Step>, found: &mut Found) {
    assert!(steps.len() < 10, "runaway walk at {}", path_name(steps));
    let Some(message) = parse_with(steps, probe_table()) else {
        // Taken whole: a table without `deny_unknown_fields`, whose unknown keys are
        // ignored in silence, though README says they are errors.
        found.unprobed.insert(
            path_name(steps),
            "takes an unknown key in silence (no deny_unknown_fields?)".into(),
        );
        return;
    };
    let follow = |steps: &mut Vec<Step>, step: Step, found: &mut Found| {
        steps.push(step);
        walk(steps, found);
        steps.pop();
    };
    if let Some(keys) = accepted_keys(&message) {
        for key in &keys {
            follow(steps, Step::Key(key.clone()), found);
        }
        found.tables.insert(path_name(steps), keys);
    } else if message.starts_with("invalid type: map, expected a sequence") {
        follow(steps, Step::Each, found);
    } else if message.starts_with("invalid type: map") {
        // A string, number, duration, address, ...: no table.
    } else if message.starts_with("invalid type: integer `1`") {
        // A map took the probe key as one of its own keys and refused its value.
        follow(steps, Step::Any, found);
    } else {
        found.unprobed.insert(path_name(steps), message);
    }
}

fn find() -> Found {
    let mut found = Found::default();
    walk(&mut Vec::new(), &mut found);
    let message = toml::from_str::<super::dns_lists::RawCodeEntry>(&format!("{PROBE} = 1"))
        .err()
        .map(|e| e.message().to_owned())
        .unwrap_or_default();
    let keys = accepted_keys(&message)
        .unwrap_or_else(|| panic!("RawCodeEntry took or refused the probe key: {message}"));
    found.tables.insert(CODE_ENTRY.to_owned(), keys);
    found
}

/// The text of `region` in `readme`.
fn region_text(readme: &str, region: Region) -> Option<String> {
    let (start, one_line) = match region {
        Region::Whole => return Some(readme.to_owned()),
        Region::Section(start) => (start, false),
        Region::Row(start) => (start, true),
    };
    let mut lines = readme.lines().skip_while(|l| !l.starts_with(start));
    let first = lines.next()?;
    if one_line {
        return Some(first.to_owned());
    }
    let mut cells = Vec::new();
    let mut fenced = false;
    for (n, line) in std::iter::once(first).chain(lines).enumerate() {
        if line.starts_with("```") {
            fenced = !fenced;
        } else if fenced {
            continue;
        } else if n > 0 && line.starts_with('#') {
            break;
        } else if let Some(row) = line.strip_prefix('|') {
            cells.push(key_cell(row));
        }
    }
    Some(cells.join("\n"))
}

/// The first cell of a table row given without its leading `|`: up to the next `|` that
/// is neither escaped (`\|`) nor inside a code span.
fn key_cell(row: &str) -> &str {
    let mut in_code = false;
    let mut escaped = false;
    for (i, c) in row.char_indices() {
        match c {
            '`' if !escaped => in_code = !in_code,
            '|' if !escaped && !in_code => return &row[..i],
            _ => {}
        }
        escaped = c == '\\' && !escaped;
    }
    row
}

/// Whether `key` of the table at `path` holds a table the walk found (itself, each
/// element of its array, or each value of its map).
fn holds_a_table(found: &Found, path: &str, key: &str) -> bool {
    let child = if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    };
    [child.clone(), format!("{child}[]"), format!("{child}.*")]
        .iter()
        .any(|p| found.tables.contains_key(p))
}

fn section(path: &str) -> Option<&'static Section> {
    SECTIONS.iter().find(|s| s.path == path)
}

#[test]
fn every_table_is_probed_or_named_with_its_reason() {
    let found = find();
    let unexplained: Vec<String> = found
        .unprobed
        .iter()
        .filter(|(path, _)| !NOT_PROBED.iter().any(|(p, _)| p == path))
        .map(|(path, message)| format!("{path}: {message}"))
        .collect();
    assert!(
        unexplained.is_empty(),
        "tables that could not be probed; make them probeable or name them in NOT_PROBED:\n{}",
        unexplained.join("\n")
    );
    let stale: Vec<&str> = NOT_PROBED
        .iter()
        .map(|(path, _)| *path)
        .filter(|path| !found.unprobed.contains_key(*path))
        .collect();
    assert!(
        stale.is_empty(),
        "NOT_PROBED names paths not met: {stale:?}"
    );
    let without_section: Vec<&String> = found
        .tables
        .keys()
        .filter(|path| section(path).is_none())
        .collect();
    assert!(
        without_section.is_empty(),
        "tables without a README section in SECTIONS: {without_section:?}"
    );
    let unknown: Vec<&str> = SECTIONS
        .iter()
        .map(|s| s.path)
        .filter(|path| !found.tables.contains_key(*path))
        .collect();
    assert!(
        unknown.is_empty(),
        "SECTIONS names tables the config lacks: {unknown:?}"
    );
}

/// The keys of `found` that `readme` does not document, one line each.
fn undocumented(readme: &str, found: &Found) -> Vec<String> {
    let mut missing = Vec::new();
    for (path, keys) in &found.tables {
        let Some(section) = section(path) else {
            missing.push(format!("{path}: no README section in SECTIONS"));
            continue;
        };
        let Some(text) = region_text(readme, section.region) else {
            missing.push(format!("{path}: README has no {:?}", section.region));
            continue;
        };
        for key in keys {
            // A key holding tables (`limits`, `peers`, `domains`) is documented by their
            // own section, whose presence is checked above.
            if holds_a_table(found, path, key) {
                continue;
            }
            let documented = section
                .needles
                .iter()
                .any(|needle| text.contains(&needle.replace("{k}", key)));
            if !documented {
                missing.push(format!(
                    "{path}: {key} (looked for {:?} in README {:?})",
                    section.needles, section.region
                ));
            }
        }
    }
    missing
}

#[test]
fn every_config_key_is_documented_in_readme() {
    let found = find();
    // The walk must have seen the tables; an empty list would pass anything.
    assert!(
        found.tables.len() >= 20,
        "too few tables: {:?}",
        found.tables
    );
    assert!(found.tables["server.limits"].contains(&"max_sessions".to_owned()));
    let missing = undocumented(README, &found);
    assert!(
        missing.is_empty(),
        "configuration keys README.md does not document:\n{}",
        missing.join("\n")
    );
}

#[test]
fn a_key_without_its_row_is_found() {
    let found = find();
    let without = |row_start: &str| -> String {
        let readme: Vec<&str> = README
            .lines()
            .filter(|l| !l.starts_with(row_start))
            .collect();
        assert!(readme.len() < README.lines().count(), "no row {row_start}");
        readme.join("\n")
    };
    // Its row gone, though `message_memory_wait` is still named in another row.
    let missing = undocumented(&without("| `message_memory_wait` |"), &found);
    assert_eq!(
        missing
            .iter()
            .map(|m| m.split(' ').next())
            .collect::<Vec<_>>(),
        [Some("server.limits:")]
    );
    assert!(missing[0].contains(" message_memory_wait "), "{missing:?}");
    // Its row misspelt.
    let moved = README.replacen("| `callout_concurrency` |", "| `relay_concurrency` |", 1);
    let missing = undocumented(&moved, &found);
    assert!(missing.len() == 1 && missing[0].contains(" callout_concurrency "));
    // A table's heading gone: every key of it.
    let missing = undocumented(&without("### `[dns]`"), &found);
    assert!(missing.len() == 1 && missing[0].starts_with("dns: README has no"));
    assert!(undocumented(&without("| `tier.peers[]."), &found).len() == 1);
}

#[test]
fn the_probe_reads_serde_field_lists() {
    // The three forms serde writes the list in.
    let keys = |m: &str| accepted_keys(m).unwrap_or_default();
    assert_eq!(keys("unknown field `zz_probe_key`, expected `a`"), ["a"]);
    assert_eq!(
        keys("unknown field `zz_probe_key`, expected `a` or `b`"),
        ["a", "b"]
    );
    assert_eq!(
        keys("unknown field `zz_probe_key`, expected one of `a`, `b`, `c`"),
        ["a", "b", "c"]
    );
    assert_eq!(accepted_keys("missing field `zone`"), None);
    // And the parser gives it that way for a real table with required fields.
    let message = parse_with(&[Step::Key("ratelimit".into()), Step::Each], probe_table());
    let keys = accepted_keys(message.as_deref().unwrap_or_default());
    assert!(
        keys.is_some_and(|k| k.contains(&"per".to_owned())),
        "{message:?}"
    );
}
