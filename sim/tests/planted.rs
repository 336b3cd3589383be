//! Negative tests: each planted bug (feature `planted-bugs`) is found by the fuzzer within a
//! stated number of seeds, by the checker that names it, and its trace shrinks.
//! Run: cargo test -p wg-sim --features planted-bugs --test planted

#![cfg(feature = "planted-bugs")]

mod common;

use common::{load, CAMPAIGNS};
use wg_core::settings::PlantedBug;
use wg_sim::runner;

const BUGS: [PlantedBug; 5] = [
    PlantedBug::UnconditionalRetry,
    PlantedBug::ReaperUnchecked,
    PlantedBug::DoubleCountRetries,
    // Found by S3 since the orphan sweep (3dc0e4b): see CAMPAIGNS in common.rs.
    PlantedBug::SplitReap,
    PlantedBug::SignalWithoutIdentity,
];

#[test]
fn fuzzing_finds_and_shrinks_every_planted_bug() {
    let mut summary = Vec::new();
    for (bug, (name, checker, seeds)) in BUGS.into_iter().zip(CAMPAIGNS) {
        let scenario = load(name);
        let found = runner::first_failure(&scenario, 0..seeds, |options| options.planted_bug = Some(bug))
            .unwrap_or_else(|| panic!("{bug:?} not found in {seeds} seeds of {name}"));
        let failure = found.shrunk.failure.clone().expect("the shrunk trace fails");
        assert_eq!(failure.checker, checker, "{bug:?}: {}", failure.detail);
        assert!(found.shrunk_trace.len() <= found.original.trace.len());
        summary.push(format!(
            "{bug:?}: {name} seed {} ({} seeds tried), {checker}, shrunk {} -> {} steps",
            found.seed,
            found.seed + 1,
            found.original.trace.len(),
            found.shrunk_trace.len()
        ));
    }
    println!("{}", summary.join("\n"));
}
