//! Delivery scheduling: which queued message goes to a worker next, and when deferred ones are due.
//!
//! A pure data structure, driven by the delivery loop: every message the relay knows is
//! in exactly one slot (queued, deferred until an instant, or in flight), so the same id
//! is never handed to two workers at once. Deferred messages sit in a min-heap by due time.

use crate::spool::QueueId;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::time::Duration;
use tokio::time::Instant;

/// One unit of work for a delivery worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The message.
    pub id: QueueId,
    /// Found in the spool at start: respect its stored `next_attempt` instead of trying
    /// at once (a restart must not turn into a retry storm).
    pub honor_next_attempt: bool,
}

/// What a worker reports after handling a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobResult {
    /// Every recipient is settled and the message left the spool.
    Finished,
    /// Some recipients failed temporarily; try again after this delay.
    Deferred(Duration),
    /// The message could not be read (gone or corrupt); forget it.
    Abandoned,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Queued,
    /// Deferred; the number tells heap entries of this deferral from stale ones.
    Deferred(u64),
    InFlight,
}

/// The relay's view of its queue.
#[derive(Debug)]
pub struct Scheduler {
    slots: BTreeMap<QueueId, Slot>,
    due: VecDeque<Job>,
    heap: BinaryHeap<Reverse<(Instant, u64, QueueId)>>,
    generation: u64,
    in_flight: usize,
    capacity: usize,
}

impl Scheduler {
    /// A scheduler that keeps at most `capacity` jobs in flight (one per worker).
    pub fn new(capacity: usize) -> Scheduler {
        Scheduler {
            slots: BTreeMap::new(),
            due: VecDeque::new(),
            heap: BinaryHeap::new(),
            generation: 0,
            in_flight: 0,
            capacity: capacity.max(1),
        }
    }

    /// A message to deliver now: stored, found at start, or found in the directory. A
    /// deferred message becomes due at once; the attempt then waits out its saved retry
    /// time when `honor_next_attempt` says so. One queued or in flight is left alone.
    pub fn add(&mut self, id: QueueId, honor_next_attempt: bool) {
        match self.slots.get(&id) {
            None | Some(Slot::Deferred(_)) => {
                self.slots.insert(id.clone(), Slot::Queued);
                self.due.push_back(Job {
                    id,
                    honor_next_attempt,
                });
            }
            Some(Slot::Queued) | Some(Slot::InFlight) => {}
        }
    }

    /// Makes every deferred message due now (`mxguard queue flush`).
    pub fn flush(&mut self) {
        for Reverse((_, generation, id)) in std::mem::take(&mut self.heap) {
            if self.slots.get(&id) == Some(&Slot::Deferred(generation)) {
                self.slots.insert(id.clone(), Slot::Queued);
                self.due.push_back(Job {
                    id,
                    honor_next_attempt: false,
                });
            }
        }
    }

    /// Moves deferred messages whose time has come to the due queue.
    pub fn promote(&mut self, now: Instant) {
        while let Some(Reverse((at, generation, _))) = self.heap.peek() {
            if *at > now {
                break;
            }
            let generation = *generation;
            let Some(Reverse((_, _, id))) = self.heap.pop() else {
                break;
            };
            if self.slots.get(&id) == Some(&Slot::Deferred(generation)) {
                self.slots.insert(id.clone(), Slot::Queued);
                self.due.push_back(Job {
                    id,
                    honor_next_attempt: false,
                });
            }
        }
    }

    /// The next job for a worker, if one is due and a worker is free.
    pub fn next_job(&mut self) -> Option<Job> {
        if self.in_flight >= self.capacity {
            return None;
        }
        let job = self.due.pop_front()?;
        self.slots.insert(job.id.clone(), Slot::InFlight);
        self.in_flight += 1;
        Some(job)
    }

    /// Puts back a job that could not be handed to a worker after all.
    pub fn unsend(&mut self, job: Job) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.slots.insert(job.id.clone(), Slot::Queued);
        self.due.push_front(job);
    }

    /// Records what a worker did with a job.
    pub fn complete(&mut self, id: QueueId, outcome: JobResult, now: Instant) {
        if self.slots.get(&id) == Some(&Slot::InFlight) {
            self.in_flight = self.in_flight.saturating_sub(1);
        }
        match outcome {
            JobResult::Finished | JobResult::Abandoned => {
                self.slots.remove(&id);
            }
            JobResult::Deferred(delay) => {
                self.generation += 1;
                self.slots
                    .insert(id.clone(), Slot::Deferred(self.generation));
                // A delay read from a state file may be anything: never past the clock's end.
                let at = now
                    .checked_add(delay.min(super::LONGEST_WAIT))
                    .unwrap_or(now);
                self.heap.push(Reverse((at, self.generation, id)));
            }
        }
    }

    /// Forgets deferred messages that `listed` (the queue directory, as just listed) no
    /// longer holds: deleted by `mxguard queue delete`, which the gateway kept counting
    /// until their next retry, up to an hour (review). Queued and in-flight messages are
    /// left alone: one stored after the listing was taken is not in it.
    /// The ids forgotten.
    pub fn forget_deferred_missing(
        &mut self,
        listed: &std::collections::BTreeSet<QueueId>,
    ) -> Vec<QueueId> {
        let mut forgotten = Vec::new();
        self.slots.retain(|id, slot| {
            let keep = !matches!(slot, Slot::Deferred(_)) || listed.contains(id);
            if !keep {
                forgotten.push(id.clone());
            }
            keep
        });
        // Their heap entries are stale now: skipped when they come due.
        forgotten
    }

    /// When the earliest deferred message becomes due.
    pub fn next_wakeup(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// The message is queued, deferred or in flight.
    pub fn knows(&self, id: &QueueId) -> bool {
        self.slots.contains_key(id)
    }

    /// Messages known (queued, deferred or in flight).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// No message is known.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Jobs handed out and not yet completed.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// The oldest known message (ids sort by arrival).
    pub fn oldest(&self) -> Option<&QueueId> {
        self.slots.keys().next()
    }
}

/// Arrival time of a message in Unix seconds, read from its id (generated ids start with
/// 14 hex digits of microseconds since the epoch); `None` for ids of another shape.
pub fn arrival_from_id(id: &QueueId) -> Option<u64> {
    let hex = id.as_str().get(..14)?;
    u64::from_str_radix(hex, 16)
        .ok()
        .map(|micros| micros / 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> QueueId {
        QueueId::parse(s).unwrap()
    }

    #[test]
    fn an_id_is_never_handed_out_twice_at_once() {
        let mut s = Scheduler::new(4);
        s.add(id("A"), false);
        s.add(id("A"), false);
        let job = s.next_job().unwrap();
        assert_eq!(job.id, id("A"));
        s.add(id("A"), false);
        assert!(s.next_job().is_none());
        s.complete(id("A"), JobResult::Finished, Instant::now());
        assert!(s.is_empty());
        assert_eq!(s.in_flight(), 0);
    }

    #[test]
    fn capacity_bounds_jobs_in_flight() {
        let mut s = Scheduler::new(2);
        for name in ["A", "B", "C"] {
            s.add(id(name), false);
        }
        assert!(s.next_job().is_some());
        assert!(s.next_job().is_some());
        assert!(s.next_job().is_none());
        s.complete(id("A"), JobResult::Finished, Instant::now());
        assert_eq!(s.next_job().unwrap().id, id("C"));
    }

    #[test]
    fn deferred_messages_come_back_in_due_order_or_on_flush() {
        let mut s = Scheduler::new(4);
        let now = Instant::now();
        for name in ["A", "B"] {
            s.add(id(name), false);
            s.next_job();
        }
        s.complete(id("A"), JobResult::Deferred(Duration::from_secs(20)), now);
        s.complete(id("B"), JobResult::Deferred(Duration::from_secs(10)), now);
        assert_eq!(s.next_wakeup(), Some(now + Duration::from_secs(10)));
        s.promote(now);
        assert!(s.next_job().is_none());
        s.promote(now + Duration::from_secs(15));
        assert_eq!(s.next_job().unwrap().id, id("B"));
        assert!(s.next_job().is_none());
        s.flush();
        assert_eq!(s.next_job().unwrap().id, id("A"));
        // The stale heap entry of A does not bring it back a second time.
        s.promote(now + Duration::from_secs(30));
        assert!(s.next_job().is_none());
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn an_announcement_makes_a_deferred_message_due() {
        let mut s = Scheduler::new(1);
        s.add(id("A"), true);
        assert!(s.next_job().unwrap().honor_next_attempt);
        s.complete(
            id("A"),
            JobResult::Deferred(Duration::from_secs(60)),
            Instant::now(),
        );
        s.add(id("A"), false);
        assert!(!s.next_job().unwrap().honor_next_attempt);
    }

    #[test]
    fn deferred_messages_gone_from_the_queue_are_forgotten() {
        let mut s = Scheduler::new(4);
        let now = Instant::now();
        let (gone, kept, fresh) = (id("AAAA01"), id("AAAA02"), id("AAAA03"));
        for i in [&gone, &kept] {
            s.add(i.clone(), false);
            let job = s.next_job().unwrap();
            s.complete(job.id, JobResult::Deferred(Duration::from_secs(3600)), now);
        }
        s.add(fresh.clone(), false);
        let listed = [kept.clone()].into_iter().collect();
        assert_eq!(
            s.forget_deferred_missing(&listed),
            std::slice::from_ref(&gone)
        );
        assert!(!s.knows(&gone));
        assert!(s.knows(&kept));
        assert!(
            s.knows(&fresh),
            "a queued message stored after the listing was forgotten"
        );
        s.flush();
        let due: Vec<QueueId> = std::iter::from_fn(|| s.next_job().map(|j| j.id)).collect();
        assert_eq!(due, [fresh, kept]);
    }

    #[test]
    fn arrival_time_is_read_from_generated_ids() {
        let before = crate::spool::unix_now();
        let t = arrival_from_id(&QueueId::generate()).unwrap();
        assert!(t >= before && t <= crate::spool::unix_now());
        assert_eq!(arrival_from_id(&id("short")), None);
    }
}
