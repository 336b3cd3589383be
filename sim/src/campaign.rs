//! Many seeds of one scenario on several threads: `wg-sim run` and `wg-sim fuzz`.
//!
//! A seed's outcome is a pure function of (scenario, seed, options), so the thread that runs it
//! changes nothing. Threads claim seeds in increasing order from one shared counter and finish
//! every seed they claim, so when a campaign ends every seed below the highest one claimed has
//! run: with one thread or many, the same seeds run give the same failures. Each thread builds
//! its own executor caches (they are thread-locals); only the counters are shared.

use crate::executor::{self, RunOptions};
use crate::runner::{self, Found};
use crate::scenario::Scenario;
use std::num::NonZeroUsize;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::ScopedJoinHandle;
use std::time::{Duration, Instant};

/// The progress callback is called at most this often: ten times a second, enough for a display
/// to look live, and nothing beside the seconds a seed takes.
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

/// What a campaign may spend.
#[derive(Clone, Debug)]
pub struct Budget {
    pub seeds: Range<u64>,
    pub jobs: NonZeroUsize,
    /// No seed starts at or after this instant; a seed already started finishes.
    pub deadline: Option<Instant>,
}

/// Counts so far, for a progress line.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub seeds_run: u64,
    pub failures: u64,
    pub elapsed: Duration,
}

/// What a campaign did.
#[derive(Debug)]
pub struct Outcome {
    pub seeds_run: u64,
    /// Failing seeds, shrunk, in seed order.
    pub failures: Vec<Found>,
    /// The first seed not started because the deadline passed; `None` when the range (or, for
    /// [`first_failure`], the failure) ended the campaign. Seeds below it all ran.
    pub out_of_time_at: Option<u64>,
    /// Orderings of conflicting commits seen (`crate::coverage`), over the seeds run.
    pub coverage: crate::coverage::Summary,
}

/// Runs `budget.seeds` of `scenario` until the lowest failing seed is known, and returns it
/// shrunk. Threads stop claiming seeds once one fails, but every lower seed still runs, so the
/// failure reported is the lowest in the seeds run whatever `budget.jobs` is. `tune` adjusts each
/// seed's options (scheduler, faults, a planted bug).
pub fn first_failure(
    scenario: &Scenario,
    budget: &Budget,
    tune: impl Fn(&mut RunOptions) + Sync,
    on_progress: impl Fn(Progress),
) -> Outcome {
    let mut outcome = campaign(scenario, budget, &tune, Stop::AtFirstFailure, &on_progress);
    outcome.failures.truncate(1);
    outcome
}

/// Runs `budget.seeds` of `scenario` (until the deadline, if any) and returns every failing
/// seed, shrunk, in seed order: the same set for the same seeds run, whatever `budget.jobs` is.
pub fn every_failure(
    scenario: &Scenario,
    budget: &Budget,
    tune: impl Fn(&mut RunOptions) + Sync,
    on_progress: impl Fn(Progress),
) -> Outcome {
    campaign(scenario, budget, &tune, Stop::AtEnd, &on_progress)
}

/// The deadline of the next of `scenarios_left` scenarios when all of them must end by `end`:
/// an equal share of the time left, so a scenario that ended early leaves its time to the rest.
pub fn share_of(end: Instant, now: Instant, scenarios_left: usize) -> Instant {
    let left = end.saturating_duration_since(now);
    let share = left / u32::try_from(scenarios_left.max(1)).unwrap_or(u32::MAX);
    now + share
}

/// The number of threads to use when the user names none: one per core.
pub fn default_jobs() -> NonZeroUsize {
    std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    AtFirstFailure,
    AtEnd,
}

/// What the threads of one campaign share.
struct Shared {
    next_seed: AtomicU64,
    /// Seeds at or above this are not claimed: a lower seed failed ([`Stop::AtFirstFailure`]).
    stop_at: AtomicU64,
    seeds_run: AtomicU64,
    failures: AtomicU64,
    coverage: std::sync::Mutex<crate::coverage::Coverage>,
    started: Instant,
}

impl Shared {
    fn new(seeds: &Range<u64>) -> Shared {
        Shared {
            next_seed: AtomicU64::new(seeds.start),
            stop_at: AtomicU64::new(u64::MAX),
            seeds_run: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            coverage: Default::default(),
            started: Instant::now(),
        }
    }

    /// The next seed to run, or `None` when the range is done, a lower seed failed or time is up.
    /// A claimed seed is always run: that keeps the seeds run a prefix of the range.
    fn claim(&self, budget: &Budget) -> Option<u64> {
        if budget.deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return None;
        }
        let limit = budget.seeds.end.min(self.stop_at.load(Ordering::Relaxed));
        self.next_seed
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |seed| (seed < limit).then_some(seed + 1))
            .ok()
    }

    fn progress(&self) -> Progress {
        Progress {
            seeds_run: self.seeds_run.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            elapsed: self.started.elapsed(),
        }
    }

    /// The first seed left unclaimed by the deadline, if the deadline is what ended the campaign.
    fn out_of_time_at(&self, budget: &Budget) -> Option<u64> {
        let next_seed = self.next_seed.load(Ordering::Relaxed);
        let limit = budget.seeds.end.min(self.stop_at.load(Ordering::Relaxed));
        (next_seed < limit).then_some(next_seed)
    }
}

fn campaign(
    scenario: &Scenario,
    budget: &Budget,
    tune: &(dyn Fn(&mut RunOptions) + Sync),
    stop: Stop,
    on_progress: &dyn Fn(Progress),
) -> Outcome {
    let shared = Shared::new(&budget.seeds);
    let mut failures = std::thread::scope(|scope| {
        // Nothing is sent: each worker holds a sender until it ends, so the receiver learns
        // when all have ended (and wakes at once, even in the middle of a progress interval).
        let (ended_sender, ended) = mpsc::channel::<()>();
        let workers: Vec<ScopedJoinHandle<'_, Vec<Found>>> = (0..budget.jobs.get())
            .map(|_| {
                let ended_sender = ended_sender.clone();
                let shared = &shared;
                scope.spawn(move || {
                    let _alive = ended_sender;
                    work(scenario, budget, tune, stop, shared)
                })
            })
            .collect();
        drop(ended_sender);
        report_progress_until_ended(&ended, &shared, on_progress);
        workers.into_iter().flat_map(join).collect::<Vec<Found>>()
    });
    failures.sort_by_key(|found| found.seed);
    let seeds_run = shared.seeds_run.load(Ordering::Relaxed);
    let coverage =
        shared.coverage.lock().expect("no worker panicked").summary(budget.seeds.start, budget.seeds.start + seeds_run);
    Outcome {
        coverage,
        seeds_run: shared.seeds_run.load(Ordering::Relaxed),
        failures,
        out_of_time_at: shared.out_of_time_at(budget),
    }
}

/// One thread's loop: claims seeds until none is left, shrinking each failure it finds.
fn work(
    scenario: &Scenario,
    budget: &Budget,
    tune: &(dyn Fn(&mut RunOptions) + Sync),
    stop: Stop,
    shared: &Shared,
) -> Vec<Found> {
    let _stop_others = StopOthersOnPanic(shared);
    let mut found = Vec::new();
    // Bounded: each pass claims a new seed of a finite range.
    while let Some(seed) = shared.claim(budget) {
        let mut options = RunOptions::for_scenario(scenario, seed);
        tune(&mut options);
        options.coverage = true;
        let mut report = executor::run(scenario, &options);
        shared.seeds_run.fetch_add(1, Ordering::Relaxed);
        let orderings = std::mem::take(&mut report.orderings);
        shared.coverage.lock().expect("no worker panicked").add(seed, orderings);
        if report.failure.is_none() {
            continue;
        }
        shared.failures.fetch_add(1, Ordering::Relaxed);
        if stop == Stop::AtFirstFailure {
            // Before shrinking, so the other threads stop claiming seeds at once.
            shared.stop_at.fetch_min(seed, Ordering::Relaxed);
        }
        found.push(runner::shrink_failure(scenario, &options, report));
    }
    found
}

/// Stops the other threads when this one panics (a bug in the simulator): the caller reports
/// the panic as soon as they end, instead of after the rest of the range.
struct StopOthersOnPanic<'a>(&'a Shared);

impl Drop for StopOthersOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.stop_at.store(0, Ordering::Relaxed);
        }
    }
}

/// Calls `on_progress` every [`PROGRESS_INTERVAL`] until every worker has ended.
fn report_progress_until_ended(ended: &mpsc::Receiver<()>, shared: &Shared, on_progress: &dyn Fn(Progress)) {
    // Bounded: the workers end (their seed range is finite), and with them every sender.
    while let Err(mpsc::RecvTimeoutError::Timeout) = ended.recv_timeout(PROGRESS_INTERVAL) {
        on_progress(shared.progress());
    }
}

/// A worker's failures; a worker's panic (a bug in the simulator) goes on in the caller.
fn join(worker: ScopedJoinHandle<'_, Vec<Found>>) -> Vec<Found> {
    worker.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

#[cfg(test)]
mod tests {
    use super::share_of;
    use std::time::{Duration, Instant};

    #[test]
    fn each_scenario_gets_an_equal_share_of_the_time_left() {
        let now = Instant::now();
        let end = now + Duration::from_secs(60);
        assert_eq!(share_of(end, now, 3), now + Duration::from_secs(20));
        assert_eq!(share_of(end, now, 1), end);
        assert_eq!(share_of(end, now + Duration::from_secs(90), 2), now + Duration::from_secs(90));
        assert_eq!(share_of(end, now, 0), end, "no scenario left: all of it");
    }
}
