//! The simulated `Clock` port: virtual time, which moves only when the executor says (no actor
//! can run) or a fault jumps it, and the timers due at given times.

use super::{Wait, World};
use std::collections::BTreeMap;
use wg_core::ports::Clock;
use wg_core::time::EpochMs;

/// Virtual time of the run's start: 2026-01-01T00:00:00Z.
pub const EPOCH_START_MS: EpochMs = 1_767_225_600_000;

/// What a timer does when it is due.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    ProcessExit { pid: i64, start_ticks: u64, code: Option<i32> },
    Step { index: usize },
    ServiceRestart,
}

/// The clock's state: the time now and the timers, in the order they fire (time, then the order
/// they were set in).
#[derive(Debug)]
pub struct ClockState {
    pub now_ms: EpochMs,
    pub timers: BTreeMap<(EpochMs, u64), Timer>,
    pub timer_seq: u64,
}

impl ClockState {
    pub fn new() -> ClockState {
        ClockState { now_ms: EPOCH_START_MS, timers: BTreeMap::new(), timer_seq: 0 }
    }

    pub fn add_timer(&mut self, at_ms: EpochMs, timer: Timer) {
        self.timer_seq += 1;
        self.timers.insert((at_ms, self.timer_seq), timer);
    }

    /// Removes and returns the earliest timer due now, if any.
    pub fn take_due(&mut self) -> Option<Timer> {
        let (&(at_ms, seq), _) = self.timers.first_key_value()?;
        if at_ms > self.now_ms {
            return None;
        }
        self.timers.remove(&(at_ms, seq))
    }

    /// When the earliest timer is due.
    pub fn next_due_ms(&self) -> Option<EpochMs> {
        self.timers.keys().next().map(|(at_ms, _)| *at_ms)
    }
}

impl Default for ClockState {
    fn default() -> ClockState {
        ClockState::new()
    }
}

impl World {
    pub fn now_ms(&self) -> EpochMs {
        self.inner.borrow().clock.now_ms
    }

    /// A sleep of an actor that is not a core operation (a scripted agent, a service loop).
    pub async fn sleep_ms_plain(&self, duration_ms: u64) {
        let until = self.now_ms() + duration_ms as i64;
        self.suspend(Wait::Until(until), "sleep").await;
    }
}

impl Clock for World {
    fn now_ms(&self) -> EpochMs {
        World::now_ms(self)
    }

    async fn sleep_ms(&self, duration_ms: u64) {
        let until = World::now_ms(self) + duration_ms as i64;
        self.suspend(Wait::Until(until), "sleep").await;
    }
}
