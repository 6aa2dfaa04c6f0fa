//! The last judged messages and the rules they hit since start, kept in memory for the
//! tier console (`GET /` and `/message/ID` on the admin listener): what an operator looks
//! at first when a sender complains.

use super::Verdict;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

/// How many judged messages are kept.
pub const CAPACITY: usize = 100;

/// One judged message.
#[derive(Debug, Clone)]
pub struct Judged {
    /// The console's id: the queue id when the message was queued, else `r` and a number.
    pub id: String,
    /// When it was judged.
    pub at: SystemTime,
    /// The client address.
    pub client: IpAddr,
    /// The HELO name.
    pub helo: String,
    /// The envelope sender.
    pub from: String,
    /// The envelope recipients.
    pub to: Vec<String>,
    /// The verdict.
    pub verdict: Verdict,
    /// The total score.
    pub score: f64,
    /// Every symbol hit, with its score.
    pub hits: Vec<(String, f64)>,
}

#[derive(Debug, Default)]
struct Inner {
    recent: VecDeque<Judged>,
    rule_hits: HashMap<String, u64>,
    sequence: u64,
}

/// The journal, shared by the sessions (writers) and the admin listener (reader).
#[derive(Debug, Default)]
pub struct Journal {
    inner: Mutex<Inner>,
}

impl Journal {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock only means a panic elsewhere; the journal is still consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a judged message; `queue_id` when it was queued.
    pub fn record(&self, queue_id: Option<&str>, mut entry: Judged) {
        let mut inner = self.lock();
        inner.sequence += 1;
        entry.id = match queue_id {
            Some(id) => id.to_owned(),
            None => format!("r{}", inner.sequence),
        };
        for (name, _) in &entry.hits {
            *inner.rule_hits.entry(name.clone()).or_insert(0) += 1;
        }
        if inner.recent.len() == CAPACITY {
            inner.recent.pop_front();
        }
        inner.recent.push_back(entry);
    }

    /// The kept messages, newest first.
    pub fn recent(&self) -> Vec<Judged> {
        self.lock().recent.iter().rev().cloned().collect()
    }

    /// A kept message by its console id.
    pub fn find(&self, id: &str) -> Option<Judged> {
        self.lock().recent.iter().find(|j| j.id == id).cloned()
    }

    /// The `n` rules hit most often since start, most hits first.
    pub fn top_rules(&self, n: usize) -> Vec<(String, u64)> {
        let mut all: Vec<(String, u64)> = self
            .lock()
            .rule_hits
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        all.truncate(n);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(score: f64, hits: &[&str]) -> Judged {
        Judged {
            id: String::new(),
            at: SystemTime::now(),
            client: "192.0.2.1".parse().unwrap(),
            helo: "h".into(),
            from: "a@b.test".into(),
            to: vec!["u@example.test".into()],
            verdict: Verdict::Accept,
            score,
            hits: hits.iter().map(|h| (h.to_string(), 1.0)).collect(),
        }
    }

    #[test]
    fn keeps_the_last_hundred_newest_first_and_counts_rules() {
        let j = Journal::default();
        for i in 0..150 {
            let id = format!("Q{i}");
            let queued = (i % 2 == 0).then_some(id.as_str());
            j.record(queued, judged(i as f64, &["A", "B"]));
        }
        let recent = j.recent();
        assert_eq!(recent.len(), CAPACITY);
        assert_eq!(recent[0].score, 149.0);
        assert!(j.find("Q148").is_some() && j.find("Q0").is_none());
        assert!(recent.iter().any(|m| m.id.starts_with('r')));
        assert_eq!(j.top_rules(1), vec![("A".to_owned(), 150)]);
    }
}
