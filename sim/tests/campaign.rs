//! Campaigns on several threads give what one thread gives: the same verdicts, the same lowest
//! failing seed, the same shrunk trace. The failures to compare come from planted bugs
//! (feature `planted-bugs`): cargo test -p wg-sim --features planted-bugs --test campaign

mod common;

use common::load;
use std::num::NonZeroUsize;
use std::ops::Range;
use std::time::{Duration, Instant};
use wg_sim::campaign::{self, Budget, Outcome};
use wg_sim::executor::RunOptions;
use wg_sim::scenario::Scenario;

const JOBS: [usize; 2] = [1, 2];

fn budget(seeds: Range<u64>, jobs: usize) -> Budget {
    Budget { seeds, jobs: NonZeroUsize::new(jobs).expect("jobs > 0"), deadline: None }
}

/// What must not depend on the number of threads: seeds run, and each failure's seed, checker
/// and shrunk trace.
fn verdicts(outcome: &Outcome) -> (u64, Vec<(u64, String, usize)>) {
    let failures = outcome
        .failures
        .iter()
        .map(|found| {
            let checker = found.shrunk.failure.as_ref().expect("a found seed fails").checker.clone();
            (found.seed, checker, found.shrunk_trace.len())
        })
        .collect();
    (outcome.seeds_run, failures)
}

fn every_failure(
    scenario: &Scenario,
    seeds: Range<u64>,
    jobs: usize,
    tune: impl Fn(&mut RunOptions) + Sync,
) -> Outcome {
    campaign::every_failure(scenario, &budget(seeds, jobs), tune, |_| {})
}

#[test]
fn a_range_without_failures_passes_whole_with_one_thread_or_two() {
    for name in ["two_retries", "retry_vs_reaper", "kill_with_children"] {
        let scenario = load(name);
        for jobs in JOBS {
            let every = every_failure(&scenario, 0..60, jobs, |_| {});
            assert_eq!(verdicts(&every), (60, Vec::new()), "{name}, jobs {jobs}");
            let first = campaign::first_failure(&scenario, &budget(0..60, jobs), |_| {}, |_| {});
            assert_eq!(verdicts(&first), (60, Vec::new()), "{name}, jobs {jobs}");
            assert_eq!(first.out_of_time_at, None);
        }
    }
}

#[test]
fn a_deadline_stops_a_campaign_after_a_whole_prefix_of_its_seeds() {
    let scenario = load("two_retries");
    for jobs in JOBS {
        let deadline = Some(Instant::now() + Duration::from_millis(300));
        let budget = Budget { deadline, ..budget(1_000..u64::MAX, jobs) };
        let outcome = campaign::every_failure(&scenario, &budget, |_| {}, |_| {});
        let stopped_at = outcome.out_of_time_at.expect("the deadline, not the range, ended it");
        assert_eq!(outcome.seeds_run, stopped_at - 1_000, "jobs {jobs}: every seed claimed ran");
    }
    let past = Budget { deadline: Some(Instant::now()), ..budget(5..10, 2) };
    let outcome = campaign::first_failure(&scenario, &past, |_| {}, |_| {});
    assert_eq!((outcome.seeds_run, outcome.out_of_time_at), (0, Some(5)));
}

#[test]
fn a_panic_in_one_thread_stops_the_others_and_reaches_the_caller() {
    let scenario = load("two_retries");
    let started = Instant::now();
    // The deadline only bounds this test should the others not stop.
    let budget = Budget { deadline: Some(started + Duration::from_secs(30)), ..budget(0..u64::MAX, 2) };
    let panics_at_seed_3 = |options: &mut RunOptions| assert_ne!(options.seed, 3, "a simulator bug, planted");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        campaign::every_failure(&scenario, &budget, panics_at_seed_3, |_| {})
    }));
    assert!(result.is_err(), "the panic reaches the caller");
    assert!(started.elapsed() < Duration::from_secs(10), "the other thread stopped at once");
}

#[cfg(feature = "planted-bugs")]
mod planted {
    use super::*;
    use crate::common::planted::{plant, Campaign, CAMPAIGNS};
    use wg_sim::runner;

    /// Seeds past the lowest failure that `every_failure` compares: enough for a few failures,
    /// few enough that shrinking each stays quick in a debug build.
    const SEEDS_PAST_FIRST: u64 = 40;

    #[test]
    fn the_lowest_failing_seed_does_not_depend_on_the_number_of_threads() {
        for &Campaign { bug, scenario: name, seeds, .. } in &CAMPAIGNS {
            let scenario = load(name);
            let tune = plant(bug);
            let sequential = runner::first_failure(&scenario, 0..seeds, tune).expect("the bug is found");
            for jobs in JOBS {
                let outcome = campaign::first_failure(&scenario, &budget(0..seeds, jobs), tune, |_| {});
                let found = outcome.failures.first().unwrap_or_else(|| panic!("{bug:?}, jobs {jobs}: not found"));
                assert_eq!(found.seed, sequential.seed, "{bug:?}, jobs {jobs}");
                assert_eq!(found.shrunk_trace, sequential.shrunk_trace, "{bug:?}, jobs {jobs}");
                assert!(outcome.seeds_run > found.seed, "{bug:?}, jobs {jobs}: every lower seed ran");
            }
        }
    }

    #[test]
    fn every_failing_seed_is_the_same_set_with_one_thread_or_two() {
        for &Campaign { bug, scenario: name, checker, seeds } in &CAMPAIGNS {
            let scenario = load(name);
            let tune = plant(bug);
            let first = runner::first_failure(&scenario, 0..seeds, tune).expect("the bug is found");
            let range = 0..first.seed + SEEDS_PAST_FIRST;
            let [one, two] = JOBS.map(|jobs| verdicts(&every_failure(&scenario, range.clone(), jobs, tune)));
            assert_eq!(one, two, "{bug:?} in {name}");
            assert_eq!(one.0, range.end, "{bug:?}: the whole range ran");
            assert_eq!(one.1.first().map(|(seed, ..)| *seed), Some(first.seed), "{bug:?}: the lowest is first");
            assert!(one.1.iter().any(|(_, found_by, _)| found_by == checker), "{bug:?}: {checker} finds it");
            let failing: Vec<u64> = one.1.iter().map(|(seed, ..)| *seed).collect();
            println!("{bug:?}: {name} seeds {range:?}, failing {failing:?}, the same with jobs 1 and 2");
        }
    }
}
