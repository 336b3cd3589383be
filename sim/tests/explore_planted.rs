//! Negative tests of `wg-sim check`: each planted bug (feature `planted-bugs`) is found by the
//! explorer on its campaign scenario, by the checker that names it, with a counterexample no
//! longer than the one random fuzzing shrinks to.
//! Run: cargo test --release -p wg-sim --features planted-bugs --test explore_planted (about 10 s;
//! several times that unoptimised)

#![cfg(feature = "planted-bugs")]

mod common;

use common::load;
use common::planted::{plant, Campaign, CAMPAIGNS};
use wg_sim::executor::RunOptions;
use wg_sim::explore::{self, Bounds};
use wg_sim::runner;

/// The bounds the explorer gets: what `wg-sim check` uses by default (2 preemptions, no fault).
const BOUNDS: Bounds = Bounds { preemptions: 2, faults: 0, deadline: None, prune: true };

#[test]
fn check_finds_every_planted_bug_with_a_counterexample_no_longer_than_fuzzings() {
    let mut summary = Vec::new();
    for &Campaign { bug, scenario: name, checker, seeds } in &CAMPAIGNS {
        let scenario = load(name);
        let fuzzed = runner::first_failure(&scenario, 0..seeds, plant(bug))
            .unwrap_or_else(|| panic!("{bug:?} not found by fuzzing {seeds} seeds of {name}"));
        let mut options = RunOptions::for_scenario(&scenario, explore::report::CHECK_SEED);
        options.planted_bug = Some(bug);
        let checked = explore::explore(&scenario, &BOUNDS, &options, false);
        let found = checked.failure.clone().unwrap_or_else(|| panic!("{bug:?} not found by check on {name}"));
        let failure = found.shrunk.failure.clone().expect("the shrunk trace fails");
        // The checker may differ from fuzzing's: one bug can break more than one invariant, and
        // the explorer meets its schedules in another order. Without the bug these scenarios
        // pass `check` at these bounds (tests/explore.rs, docs/simulation.md, Exhaustive checking).
        // The counterexample replays: the same checker fails on the trace as written.
        let replayed = runner::replay(&scenario, &options, found.shrunk_trace.clone(), false);
        assert_eq!(replayed.failure.map(|f| f.checker), Some(failure.checker.clone()));
        // The report is `fuzz`'s failure block, and its trace file replays to the same failure.
        let trace_path = std::env::temp_dir().join(format!("wg-sim-explore-planted-{bug:?}.jsonl"));
        runner::write_trace(&trace_path, &scenario, found.seed, &found.shrunk_trace).expect("the trace is written");
        let text = explore::report::render(&scenario, &BOUNDS, &checked, &trace_path);
        assert!(text.starts_with(&format!("FAIL scenario={name} seed=0 checker={}", failure.checker)), "{text}");
        // The trace's header names the scenario and the seed: the trace alone replays it.
        assert!(text.contains(&format!("replay: wg-sim replay --trace {}", trace_path.display())), "{text}");
        assert!(text.contains("a violation within the bounds (2 preemptions, 0 faults)"), "{text}");
        let (seed, read) = runner::read_trace(&trace_path).expect("the trace reads back");
        assert_eq!((seed, &read), (Some(found.seed), &found.shrunk_trace));
        std::fs::remove_file(&trace_path).expect("the trace is removed");
        assert!(
            found.shrunk_trace.len() <= fuzzed.shrunk_trace.len(),
            "{bug:?}: check's counterexample has {} steps, fuzzing's {}",
            found.shrunk_trace.len(),
            fuzzed.shrunk_trace.len()
        );
        summary.push(format!(
            "{bug:?}: {name}: check {} ({} steps) after {} schedules ({} cut) in {:.2}s; fuzzing {checker} ({} steps)",
            failure.checker,
            found.shrunk_trace.len(),
            checked.explored,
            checked.pruned,
            checked.elapsed.as_secs_f64(),
            fuzzed.shrunk_trace.len()
        ));
    }
    println!("{}", summary.join("\n"));
}
