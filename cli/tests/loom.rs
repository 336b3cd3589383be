//! loom model checks of the service's concurrency: the doorbell that the signal watcher, the
//! wake-socket watcher and the dispatcher loop share (`cli/src/service/doorbell.rs`).
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test -p wg-cli --release --test loom`
//!
//! Preemption bound: `LOOM_MAX_PREEMPTIONS` (default 3 here). Each model has at most three
//! threads and every property is violated, if at all, by one badly placed switch between a check
//! and a wait or between a publish and a notify; a bound of 2 already reaches every such
//! interleaving, so 3 leaves a margin while keeping each model to seconds.
#![cfg(loom)]

use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;
use std::time::Duration;
use wg_cli::service::doorbell::{Deadline, Doorbell, PlantedBug, Wake};

/// Never passes: a wait that can only end by a ring or a stop. A lost wake-up is then a deadlock,
/// which loom reports.
struct Never;

impl Deadline for Never {
    fn has_passed(&self) -> bool {
        false
    }
    fn remaining(&self) -> Duration {
        Duration::from_secs(3600)
    }
}

/// A deadline that a timer thread trips, as the clock would.
#[derive(Default)]
struct Timer(AtomicBool);

impl Deadline for Timer {
    fn has_passed(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
    fn remaining(&self) -> Duration {
        Duration::from_secs(3600)
    }
}

fn model(body: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(body);
}

fn doorbell(planted: Option<PlantedBug>) -> Doorbell {
    let mut doorbell = Doorbell::new();
    doorbell.planted = planted;
    doorbell
}

/// An exit (SIGCHLD) or a command's poke that arrives while the dispatcher is busy, or at any
/// point of its wait, is seen: the wait returns.
fn no_lost_wakeup(planted: Option<PlantedBug>) {
    model(move || {
        let bell = Arc::new(doorbell(planted));
        let exit_watcher = {
            let bell = Arc::clone(&bell);
            thread::spawn(move || bell.ring())
        };
        assert_eq!(bell.wait(&Never), Wake::Rung);
        exit_watcher.join().unwrap();
    });
}

#[test]
fn a_ring_is_never_lost() {
    no_lost_wakeup(None);
}

#[test]
fn two_watchers_ringing_at_once_wake_the_loop_and_a_stop_is_always_seen() {
    model(|| {
        let bell = Arc::new(Doorbell::new());
        let signals = {
            let bell = Arc::clone(&bell);
            thread::spawn(move || {
                bell.ring();
                bell.stop();
            })
        };
        let socket = {
            let bell = Arc::clone(&bell);
            thread::spawn(move || bell.ring())
        };
        // The dispatcher loop: sweep after each ring until the stop; rings may collapse, but
        // the stop always ends the loop, within three waits.
        let mut stopped = false;
        for _ in 0..3 {
            if bell.wait(&Never) == Wake::Stop {
                stopped = true;
                break;
            }
        }
        assert!(stopped, "the stop was seen");
        signals.join().unwrap();
        socket.join().unwrap();
    });
}

/// A wait with a deadline returns Rung or TimedOut, never hangs, and a ring that happened before
/// the deadline passed is reported as Rung.
fn deadline_never_hides_an_earlier_ring(planted: Option<PlantedBug>) {
    model(move || {
        let bell = Arc::new(doorbell(planted));
        let timer = Arc::new(Timer::default());
        let exit_then_deadline = {
            let (bell, timer) = (Arc::clone(&bell), Arc::clone(&timer));
            thread::spawn(move || {
                bell.ring(); // the exit happens just before the deadline...
                timer.0.store(true, Ordering::SeqCst); // ...then the deadline passes
                bell.nudge();
            })
        };
        let woke = bell.wait(&*timer);
        if timer.has_passed() && woke == Wake::TimedOut {
            panic!("the ring before the deadline was reported as a timeout");
        }
        exit_then_deadline.join().unwrap();
    });
}

#[test]
fn a_wait_with_a_deadline_returns_and_never_misses_an_earlier_ring() {
    deadline_never_hides_an_earlier_ring(None);
}

#[test]
fn loom_finds_the_planted_notify_before_publish() {
    let found = std::panic::catch_unwind(|| no_lost_wakeup(Some(PlantedBug::NotifyBeforePublish)));
    assert!(found.is_err(), "loom must find the lost wake-up of a notify before the publish");
}

#[test]
fn loom_finds_the_planted_deadline_first() {
    let found = std::panic::catch_unwind(|| deadline_never_hides_an_earlier_ring(Some(PlantedBug::DeadlineFirst)));
    assert!(found.is_err(), "loom must find the ring reported as a timeout");
}
