//! The service's wake-up: threads that notice something (a child exited, a command committed a
//! change, SIGTERM) ring; the dispatcher loop waits for a ring, a stop, or its deadline.
//!
//! Rings are remembered while the loop is busy (one pending flag), so none is lost; several rings
//! during one sweep collapse into one more sweep, which is all the loop needs since a sweep looks
//! at everything. Model-checked with loom (`cli/tests/loom.rs`); under `cfg(loom)` the
//! primitives are loom's.

#[cfg(loom)]
use loom::sync::{Condvar, Mutex};
#[cfg(not(loom))]
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Why [`Doorbell::wait`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// Somebody rang since the last wait returned.
    Rung,
    /// A stop was asked for; it stays asked for.
    Stop,
    /// The deadline passed with no ring.
    TimedOut,
}

/// When a wait gives up. Production uses an [`Instant`]; the loom models use a flag that a timer
/// thread sets (loom has no time), followed by [`Doorbell::nudge`].
pub trait Deadline {
    fn has_passed(&self) -> bool;
    /// How long a condvar wait may block before looking again.
    fn remaining(&self) -> Duration;
}

impl Deadline for Instant {
    fn has_passed(&self) -> bool {
        Instant::now() >= *self
    }
    fn remaining(&self) -> Duration {
        self.saturating_duration_since(Instant::now())
    }
}

#[derive(Default)]
struct Bell {
    rung: bool,
    stop: bool,
}

#[derive(Default)]
pub struct Doorbell {
    bell: Mutex<Bell>,
    changed: Condvar,
    /// Loom models only: a bug to plant, to show the models can fail.
    #[cfg(loom)]
    pub planted: Option<PlantedBug>,
}

/// Bugs the loom models must find (`cli/tests/loom.rs`), hooked like the core's planted bugs
/// (`wg-core`'s `ops/planted.rs`) but local: they exist only under `cfg(loom)`, which the core's
/// `planted-bugs` feature knows nothing of.
#[cfg(loom)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlantedBug {
    /// `ring` notifies, then publishes the ring: a waiter between its check and its wait misses it.
    NotifyBeforePublish,
    /// `wait` looks at the deadline before the ring: a ring just before the deadline is lost.
    DeadlineFirst,
}

/// `planted!(doorbell, Bug => branch)`: runs `branch` when the loom model planted `Bug` in
/// `doorbell`. Expands to nothing outside loom.
#[cfg(loom)]
macro_rules! planted {
    ($doorbell:expr, $bug:ident => $branch:expr) => {
        if $doorbell.planted == Some(PlantedBug::$bug) {
            $branch;
        }
    };
}

#[cfg(not(loom))]
macro_rules! planted {
    ($doorbell:expr, $bug:ident => $branch:expr) => {};
}

#[cfg(loom)]
impl Doorbell {
    /// `NotifyBeforePublish`: the notification goes out before the ring is published.
    fn ring_notifying_first(&self) {
        self.changed.notify_all();
        self.bell.lock().expect("doorbell lock").rung = true;
    }
}

impl Doorbell {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn ring(&self) {
        planted!(self, NotifyBeforePublish => return self.ring_notifying_first());
        self.bell.lock().expect("doorbell lock").rung = true;
        self.changed.notify_all();
    }

    pub fn stop(&self) {
        self.bell.lock().expect("doorbell lock").stop = true;
        self.changed.notify_all();
    }

    /// Wakes waiters without ringing, so they look at their deadline again.
    pub fn nudge(&self) {
        let _bell = self.bell.lock().expect("doorbell lock");
        self.changed.notify_all();
    }

    /// Waits for a ring, a stop or the deadline, and consumes the ring. A stop wins over a ring,
    /// a ring over the deadline: what happened before the deadline is never reported as a timeout.
    pub fn wait(&self, deadline: &impl Deadline) -> Wake {
        let mut bell = self.bell.lock().expect("doorbell lock");
        loop {
            planted!(self, DeadlineFirst => if deadline.has_passed() { return Wake::TimedOut });
            if bell.stop {
                return Wake::Stop;
            }
            if bell.rung {
                bell.rung = false;
                return Wake::Rung;
            }
            if deadline.has_passed() {
                return Wake::TimedOut;
            }
            let (next, _) = self.changed.wait_timeout(bell, deadline.remaining()).expect("doorbell lock");
            bell = next;
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_ring_while_busy_is_kept_for_the_next_wait() {
        let doorbell = Doorbell::new();
        doorbell.ring();
        doorbell.ring();
        let far = Instant::now() + Duration::from_secs(60);
        assert_eq!(doorbell.wait(&far), Wake::Rung);
        assert_eq!(doorbell.wait(&Instant::now()), Wake::TimedOut, "two rings while busy make one wake");
    }

    #[test]
    fn a_ring_from_another_thread_wakes_the_waiter_before_its_deadline() {
        let doorbell = Arc::new(Doorbell::new());
        let ringer = Arc::clone(&doorbell);
        let started = Instant::now();
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            ringer.ring();
        });
        assert_eq!(doorbell.wait(&(started + Duration::from_secs(30))), Wake::Rung);
        assert!(started.elapsed() < Duration::from_secs(10));
        thread.join().unwrap();
    }

    #[test]
    fn stop_wins_and_stays() {
        let doorbell = Doorbell::new();
        doorbell.ring();
        doorbell.stop();
        let far = Instant::now() + Duration::from_secs(60);
        assert_eq!(doorbell.wait(&far), Wake::Stop);
        assert_eq!(doorbell.wait(&far), Wake::Stop);
    }
}
