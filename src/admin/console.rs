//! The tier console: one server-rendered HTML page at `/` (this gateway, its peers, the
//! queue, the last judged messages, the top rules) and `/message/ID` with the per-rule
//! explanation of one judged message, as `scan --explain` prints it. No script, no
//! external assets: it works in any browser and through any proxy.

use super::AdminState;
use crate::policy::Judged;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

/// Rules shown in the top-rules table.
const TOP_RULES: usize = 20;

/// The first 16 characters of a fingerprint, enough to tell two apart.
fn head(fingerprint: &str) -> &str {
    fingerprint
        .char_indices()
        .nth(16)
        .map_or(fingerprint, |(end, _)| &fingerprint[..end])
}

/// Escapes text for HTML element content and attribute values.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn rfc3339(at: SystemTime) -> String {
    time::OffsetDateTime::from(at)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta http-equiv=\"refresh\" content=\"15\"><title>{}</title>\
<style>body{{font-family:sans-serif;margin:1.5em}}table{{border-collapse:collapse;margin-bottom:1.5em}}\
td,th{{border:1px solid #ccc;padding:.2em .5em;text-align:left;vertical-align:top}}\
.down,.reject,.mismatch{{color:#b00}}.up,.accept{{color:#070}}.tag,.quarantine,.tempfail{{color:#a60}}\
code{{font-size:90%}}</style></head><body>\n{body}</body></html>\n",
        esc(title)
    )
}

/// `GET /`.
pub fn overview(state: &AdminState) -> String {
    let policy = state.policy.get();
    let config = policy.config();
    let (name, role) = match &state.tier {
        Some(t) => (t.name(), t.role().as_str().to_owned()),
        None => (config.server.hostname.clone(), "standalone".to_owned()),
    };
    let uptime = SystemTime::now()
        .duration_since(state.started)
        .unwrap_or_default();
    let backend = match &state.state {
        Some(s) if s.health().is_up() => format!("<span class=\"up\">{} up</span>", s.kind()),
        Some(s) => format!("<span class=\"down\">{} down</span>", s.kind()),
        None => "none".to_owned(),
    };
    let mut b = String::new();
    let _ = write!(
        b,
        "<h1>mxguard {}</h1>\n<table id=\"gateway\"><tr><th>role</th><td>{}</td></tr>\
<tr><th>version</th><td>{}</td></tr><tr><th>fingerprint</th><td><code>{}</code></td></tr>\
<tr><th>uptime</th><td>{}</td></tr><tr><th>state backend</th><td>{backend}</td></tr></table>\n",
        esc(&name),
        esc(&role),
        env!("CARGO_PKG_VERSION"),
        esc(policy.fingerprint()),
        human(uptime),
    );
    peers(&mut b, state, policy.fingerprint());
    let _ = write!(
        b,
        "<h2>Queue</h2>\n<table id=\"queue\"><tr><th>messages</th><td>{}</td></tr>\
<tr><th>oldest</th><td>{}</td></tr></table>\n",
        state.metrics.spool_messages.get(),
        human(Duration::from_secs(
            u64::try_from(state.metrics.spool_oldest_seconds.get()).unwrap_or(0)
        )),
    );
    recent(&mut b, &state.journal.recent());
    shadow(&mut b, state, policy.shadow().is_some());
    b.push_str("<h2>Top rules since start</h2>\n<table id=\"rules\"><tr><th>rule</th><th>messages</th><th>description</th></tr>\n");
    for (rule, hits) in state.journal.top_rules(TOP_RULES) {
        let description = policy
            .rules()
            .and_then(|r| r.description(&rule))
            .unwrap_or("");
        let _ = writeln!(
            b,
            "<tr><td>{}</td><td>{hits}</td><td>{}</td></tr>",
            esc(&rule),
            esc(description)
        );
    }
    b.push_str("</table>\n");
    page(&format!("mxguard {name}"), &b)
}

fn peers(b: &mut String, state: &AdminState, ours: &str) {
    b.push_str("<h2>Peers</h2>\n");
    let Some(tier) = &state.tier else {
        b.push_str("<p>Not part of a tier ([tier] is not configured).</p>\n");
        return;
    };
    b.push_str("<table id=\"peers\"><tr><th>peer</th><th>role</th><th>status</th><th>fingerprint</th><th>last seen</th><th>via</th></tr>\n");
    for p in tier.peers() {
        let status = if p.up {
            "<span class=\"up\">up</span>"
        } else {
            "<span class=\"down\">down</span>"
        };
        let fingerprint = fingerprint_cell(&p, ours);
        let seen = p
            .last_seen
            .map(|t| {
                let ago = SystemTime::now().duration_since(t).unwrap_or_default();
                format!("{} ago", human(ago))
            })
            .unwrap_or_else(|| "never".to_owned());
        let _ = writeln!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{status}</td><td>{fingerprint}</td><td>{seen}</td><td>{}</td></tr>",
            esc(&p.name),
            p.role.as_str(),
            p.source
        );
    }
    b.push_str("</table>\n");
}

fn recent(b: &mut String, messages: &[Judged]) {
    let _ = writeln!(b, "<h2>Last {} judged messages</h2>", messages.len());
    b.push_str("<table id=\"messages\"><tr><th>time</th><th>client</th><th>sender</th><th>recipients</th><th>verdict</th><th>score</th><th>rules</th></tr>\n");
    for m in messages {
        let rules: Vec<&str> = m.hits.iter().map(|(n, _)| n.as_str()).collect();
        let _ = writeln!(
            b,
            "<tr><td><a href=\"/message/{id}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td>\
<td class=\"{v}\">{v}</td><td>{}</td><td>{}</td></tr>",
            esc(&rfc3339(m.at)),
            m.client,
            esc(&m.from),
            esc(&m.to.join(", ")),
            crate::mail::score::hundredths_down(m.score),
            esc(&rules.join(" ")),
            id = esc(&m.id),
            v = m.verdict.as_str(),
        );
    }
    b.push_str("</table>\n");
}

fn shadow(b: &mut String, state: &AdminState, configured: bool) {
    let log = state
        .shadow_log
        .as_ref()
        .map(|l| l.recent())
        .unwrap_or_default();
    if !configured && log.is_empty() {
        return;
    }
    let _ = writeln!(
        b,
        "<h2>Shadow policy: last {} disagreements</h2>",
        log.len()
    );
    b.push_str("<table id=\"shadow\"><tr><th>time</th><th>client</th><th>sender</th><th>subject</th><th>live</th><th>shadow</th><th>only live</th><th>only shadow</th></tr>\n");
    for d in log.iter().rev() {
        let _ = writeln!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{lv}\">{lv} {}</td>\
<td class=\"{sv}\">{sv} {}</td><td>{}</td><td>{}</td></tr>",
            esc(&rfc3339(d.at)),
            d.client,
            esc(&d.from),
            esc(&d.subject),
            crate::mail::score::hundredths_down(d.live_score),
            crate::mail::score::hundredths_down(d.shadow_score),
            esc(&d.only_live.join(" ")),
            esc(&d.only_shadow.join(" ")),
            lv = d.live.as_str(),
            sv = d.shadow.as_str(),
        );
    }
    b.push_str("</table>\n");
}

/// `GET /message/ID`, or `None` when the message is not (or no longer) kept.
pub fn message(state: &AdminState, id: &str) -> Option<String> {
    let m = state.journal.find(id)?;
    let policy = state.policy.get();
    let mut b = String::new();
    let _ = write!(
        b,
        "<p><a href=\"/\">back</a></p><h1>Message {}</h1>\n<table id=\"envelope\">\
<tr><th>time</th><td>{}</td></tr><tr><th>client</th><td>{}</td></tr><tr><th>HELO</th><td>{}</td></tr>\
<tr><th>sender</th><td>{}</td></tr><tr><th>recipients</th><td>{}</td></tr>\
<tr><th>verdict</th><td class=\"{v}\">{v}</td></tr><tr><th>score</th><td>{}</td></tr></table>\n",
        esc(&m.id),
        esc(&rfc3339(m.at)),
        m.client,
        esc(&m.helo),
        esc(&m.from),
        esc(&m.to.join(", ")),
        crate::mail::score::hundredths_down(m.score),
        v = m.verdict.as_str(),
    );
    b.push_str("<h2>Explanation</h2>\n<table id=\"explanation\"><tr><th>pts</th><th>rule name</th><th>description</th></tr>\n");
    for (score, name, description) in policy.explain(&m.hits) {
        let _ = writeln!(
            b,
            "<tr><td>{score:.1}</td><td>{}</td><td>{}</td></tr>",
            esc(&name),
            esc(&description)
        );
    }
    b.push_str("</table>\n");
    Some(page(&format!("mxguard message {}", m.id), &b))
}

/// A peer's fingerprint as the console shows it.
fn fingerprint_cell(p: &crate::tier::PeerStatus, ours: &str) -> String {
    // As `mxguard_tier_fingerprint_match` says: a peer up that did not show its
    // policy this round may have reloaded another (review: shown as "same").
    match &p.fingerprint {
        Some(fp) if p.fingerprint_match => {
            format!("<code>{}</code> same", esc(head(fp)))
        }
        Some(fp) if fp == ours => format!(
            "<code>{}</code> same when last shown, not shown this round",
            esc(head(fp))
        ),
        Some(fp) => format!(
            "<code>{}</code> <span class=\"mismatch\">different</span>",
            esc(head(fp))
        ),
        None => "unknown".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_for_html() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    /// Regression (review): the console cut fingerprints at byte 16, which panicked on a
    /// multi-byte character there.
    #[test]
    fn a_fingerprint_is_cut_by_characters() {
        assert_eq!(head("0123456789abcde\u{e9}f"), "0123456789abcde\u{e9}");
        assert_eq!(head("abc"), "abc");
    }

    #[test]
    fn durations_read_like_an_operator_says_them() {
        assert_eq!(human(Duration::from_secs(5)), "5s");
        assert_eq!(human(Duration::from_secs(600)), "10m");
        assert_eq!(human(Duration::from_secs(3 * 86_400)), "3d");
    }

    /// Regression (review): the console compared the last fingerprint shown, so a peer
    /// up whose `/policy` timed out this round (it may have reloaded another policy) was
    /// shown "same" while `mxguard_tier_fingerprint_match` said 0.
    #[test]
    fn a_fingerprint_not_shown_this_round_is_not_called_the_same() {
        let config = crate::config::TierConfig::for_test(
            "gw1",
            crate::config::Role::Primary,
            &[("gw2", crate::config::Role::Primary)],
        );
        let mut p = crate::tier::PeerStatus::unknown(&config.peers[0]);
        p.up = true;
        p.fingerprint = Some("abc123".into());
        p.fingerprint_match = true;
        assert!(fingerprint_cell(&p, "abc123").ends_with(" same"));
        p.fingerprint_match = false;
        assert!(fingerprint_cell(&p, "abc123").contains("not shown this round"));
        assert!(fingerprint_cell(&p, "other").contains("different"));
    }
}
