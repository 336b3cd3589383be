//! Negative tests: each planted bug (feature `planted-bugs`) is found by the fuzzer within a
//! stated number of seeds, by the checker that names it, and its trace shrinks.
//! Run: cargo test -p wg-sim --features planted-bugs --test planted

#![cfg(feature = "planted-bugs")]

mod common;

use common::load;
use common::planted::{plant, Campaign, CAMPAIGNS};
use wg_sim::executor::RunOptions;
use wg_sim::runner;

#[test]
fn fuzzing_finds_and_shrinks_every_planted_bug() {
    let mut summary = Vec::new();
    for &Campaign { bug, scenario: name, checker, seeds } in &CAMPAIGNS {
        let scenario = load(name);
        let found = runner::first_failure(&scenario, 0..seeds, plant(bug))
            .unwrap_or_else(|| panic!("{bug:?} not found in {seeds} seeds of {name}"));
        let failure = found.shrunk.failure.clone().expect("the shrunk trace fails");
        assert_eq!(failure.checker, checker, "{bug:?}: {}", failure.detail);
        assert!(found.shrunk_trace.len() <= found.original.trace.len());
        // Time to shrink (and replay with a timeline) the failing seed alone: goal < 10 s.
        let mut options = RunOptions::for_scenario(&scenario, found.seed);
        options.planted_bug = Some(bug);
        let started = std::time::Instant::now();
        let again = runner::run_and_shrink(&scenario, &options).expect("the seed fails again");
        let shrink_s = started.elapsed().as_secs_f64();
        assert_eq!(again.shrunk_trace, found.shrunk_trace, "shrinking is deterministic");
        assert!(shrink_s < 10.0, "{bug:?}: shrinking took {shrink_s:.2}s");
        summary.push(format!(
            "{bug:?}: {name} seed {} ({} seeds tried), {checker}, shrunk {} -> {} steps in {shrink_s:.3}s",
            found.seed,
            found.seed + 1,
            found.original.trace.len(),
            found.shrunk_trace.len()
        ));
    }
    println!("{}", summary.join("\n"));
}
