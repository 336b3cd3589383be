//! The planted-bug campaigns (FoundationDB's BUGGIFY; the hooks are in `wg-core`'s
//! `ops/planted.rs`): each bug, the scenario that must expose it, the checker that must catch it,
//! and the seeds the fuzzer may spend. The same scenarios, at the same budgets, must find nothing
//! without the bugs (`tests/scenarios.rs`).
//!
//! Here rather than in the `wg-sim` library: only the tests plant bugs, and the library's public
//! surface would otherwise carry a table nothing else reads.

use wg_core::settings::PlantedBug;

pub struct Campaign {
    pub bug: PlantedBug,
    pub scenario: &'static str,
    /// The invariant (docs/invariants.md) whose checker fuzzing's first failure names.
    pub checker: &'static str,
    /// Fuzzing finds the bug within seeds `0..seeds`.
    pub seeds: u64,
}

pub const CAMPAIGNS: [Campaign; 5] = [
    Campaign { bug: PlantedBug::UnconditionalRetry, scenario: "retry_vs_reaper", checker: "S6", seeds: 200 },
    Campaign { bug: PlantedBug::ReaperUnchecked, scenario: "retry_while_done", checker: "S4", seeds: 200 },
    Campaign { bug: PlantedBug::DoubleCountRetries, scenario: "two_retries", checker: "S3", seeds: 200 },
    // Split reap used to be found by S6 (a dead entry beside an in-progress task). Since 3dc0e4b
    // that state is legitimate and transient: `wg agents kill` leaves it on purpose and the
    // reaper's orphan sweep settles it. The bug's second transaction re-queues without checking
    // the task is still the dead agent's, and S3 catches it when a retry re-queued the task in
    // between (a second count with no re-queue); S6 or S1 would catch a dispatch in between.
    Campaign { bug: PlantedBug::SplitReap, scenario: "retry_vs_reaper", checker: "S3", seeds: 200 },
    Campaign { bug: PlantedBug::SignalWithoutIdentity, scenario: "pid_reuse_not_signalled", checker: "S2", seeds: 200 },
];

/// Plants `bug` in a run's options: the `tune` of the runner's seed loops.
#[cfg(feature = "planted-bugs")]
pub fn plant(bug: PlantedBug) -> impl Fn(&mut wg_sim::executor::RunOptions) + Copy + Sync {
    move |options| options.planted_bug = Some(bug)
}
