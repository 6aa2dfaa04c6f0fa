//! The global budget for message bytes that sessions hold in memory while receiving
//! (`message_memory_total_bytes`): a session reserves what its buffer needs before it
//! grows it; when the budget is spent its message goes to disk instead, and a new
//! transfer waits for room. Memory for messages in flight is therefore bounded whatever
//! the number of sessions or the size of their messages.

use prometheus::IntGauge;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes per permit: reservations are rounded up to whole units.
const UNIT: usize = 1024;

/// The shared budget.
#[derive(Debug)]
pub struct MemoryBudget {
    permits: Arc<Semaphore>,
    /// Units the semaphore was given (it follows `message_memory_total_bytes` on reloads).
    capacity: Mutex<usize>,
    /// `mxguard_message_memory_bytes`, moved by every reservation as it grows, shrinks
    /// and is returned (a value set now and then would keep a past session's bytes).
    gauge: Option<IntGauge>,
}

/// Memory a session holds; returned to the budget on drop.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<Semaphore>,
    permit: Option<OwnedSemaphorePermit>,
    gauge: Option<IntGauge>,
}

fn gauge_add(gauge: &Option<IntGauge>, units: usize, sign: i64) {
    if let Some(g) = gauge {
        g.add(sign * i64::try_from(units * UNIT).unwrap_or(i64::MAX));
    }
}

fn units(bytes: usize) -> usize {
    bytes.div_ceil(UNIT)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means a panic elsewhere; the number is still right.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl MemoryBudget {
    /// A budget of `bytes`.
    pub fn new(bytes: usize) -> MemoryBudget {
        let n = units(bytes);
        MemoryBudget {
            permits: Arc::new(Semaphore::new(n)),
            capacity: Mutex::new(n),
            gauge: None,
        }
    }

    /// The same budget, keeping `gauge` at the bytes reserved.
    pub fn with_gauge(mut self, gauge: IntGauge) -> MemoryBudget {
        gauge.set(0);
        self.gauge = Some(gauge);
        self
    }

    /// Follows a reloaded budget: grows at once, shrinks as reservations are returned.
    pub fn resize(&self, bytes: usize) {
        let want = units(bytes);
        let mut capacity = lock(&self.capacity);
        if want > *capacity {
            self.permits.add_permits(want - *capacity);
            *capacity = want;
        } else if want < *capacity {
            *capacity -= self.permits.forget_permits(*capacity - want);
        }
    }

    /// Bytes reserved by sessions right now.
    pub fn in_use(&self) -> usize {
        let capacity = *lock(&self.capacity);
        capacity.saturating_sub(self.permits.available_permits()) * UNIT
    }

    /// Reserves `bytes`, waiting for room (fairly: first come, first served).
    pub async fn reserve(&self, bytes: usize) -> Reservation {
        let n = u32::try_from(units(bytes)).unwrap_or(u32::MAX);
        let permit = self.permits.clone().acquire_many_owned(n).await.ok();
        if let Some(p) = &permit {
            gauge_add(&self.gauge, p.num_permits(), 1);
        }
        Reservation {
            budget: self.permits.clone(),
            permit,
            gauge: self.gauge.clone(),
        }
    }

    /// An empty reservation, grown later with [`Reservation::grow_to`].
    pub fn empty(&self) -> Reservation {
        Reservation {
            budget: self.permits.clone(),
            permit: None,
            gauge: self.gauge.clone(),
        }
    }
}

impl Reservation {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.permit.as_ref().map_or(0, |p| p.num_permits()) * UNIT
    }

    /// Grows the reservation to at least `bytes` if the budget has room now; says whether
    /// it holds that much afterwards.
    pub fn grow_to(&mut self, bytes: usize) -> bool {
        let have = self.bytes() / UNIT;
        let want = units(bytes);
        if want <= have {
            return true;
        }
        let more = u32::try_from(want - have).unwrap_or(u32::MAX);
        match self.budget.clone().try_acquire_many_owned(more) {
            Ok(p) => {
                gauge_add(&self.gauge, p.num_permits(), 1);
                match self.permit.as_mut() {
                    Some(held) => held.merge(p),
                    None => self.permit = Some(p),
                }
                true
            }
            Err(_) => false,
        }
    }

    /// Returns everything past `bytes` to the budget.
    pub fn shrink_to(&mut self, bytes: usize) {
        let keep = units(bytes);
        if let Some(held) = self.permit.as_mut() {
            let extra = held.num_permits().saturating_sub(keep);
            if extra > 0 {
                drop(held.split(extra));
                gauge_add(&self.gauge, extra, -1);
            }
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(held) = &self.permit {
            gauge_add(&self.gauge, held.num_permits(), -1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reservations_come_back_and_bound_the_total() {
        let budget = MemoryBudget::new(10 * UNIT);
        let mut a = budget.reserve(3 * UNIT).await;
        assert_eq!(budget.in_use(), 3 * UNIT);
        assert!(a.grow_to(8 * UNIT));
        let mut b = budget.empty();
        assert!(!b.grow_to(3 * UNIT), "only 2 units are left");
        assert!(b.grow_to(2 * UNIT));
        a.shrink_to(UNIT);
        assert_eq!(budget.in_use(), 3 * UNIT);
        drop(a);
        drop(b);
        assert_eq!(budget.in_use(), 0);
        budget.resize(2 * UNIT);
        let c = budget.empty();
        let mut c = c;
        assert!(!c.grow_to(3 * UNIT));
    }

    /// Review: the gauge follows every reservation, and is 0 once they are all returned.
    #[tokio::test]
    async fn the_gauge_follows_the_reservations() {
        let gauge = IntGauge::new("g", "g").unwrap();
        let budget = MemoryBudget::new(10 * UNIT).with_gauge(gauge.clone());
        let mut a = budget.reserve(3 * UNIT).await;
        assert_eq!(gauge.get(), (3 * UNIT) as i64);
        assert!(a.grow_to(8 * UNIT));
        let mut b = budget.empty();
        assert!(b.grow_to(2 * UNIT));
        assert_eq!(gauge.get(), budget.in_use() as i64);
        a.shrink_to(UNIT);
        assert_eq!(gauge.get(), budget.in_use() as i64);
        drop(a);
        drop(b);
        assert_eq!(gauge.get(), 0);
    }
}
