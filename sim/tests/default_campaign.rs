//! The default campaign: every scenario of `scenarios/` at its own `[sim] seeds`, at most
//! [`SEEDS_CAP_DEFAULT`] each. This is the test cargo-mutants relies on (`.cargo/mutants.toml`)
//! to tell whether a mutant of the core changes a behaviour a scenario pins.
//!
//! The scenarios' own seed counts are sized for `wg-sim run scenarios/` in release (about 10 s
//! on one core); in a debug build that is nearly two minutes, too long for every `cargo test` and
//! every mutant. The cap keeps it near 15 s; every mutant was killed at seed counts below it.
//! `WG_SIM_SEEDS_CAP=N` sets another cap (a large N runs exactly what `wg-sim run` runs).

mod common;

use common::scenarios_folder;
use wg_sim::runner;
use wg_sim::scenario;

/// Seeds per scenario unless `WG_SIM_SEEDS_CAP` says otherwise.
const SEEDS_CAP_DEFAULT: u64 = 500;

#[test]
fn every_scenario_passes_at_its_default_seeds() {
    let cap: u64 = std::env::var("WG_SIM_SEEDS_CAP").ok().and_then(|n| n.parse().ok()).unwrap_or(SEEDS_CAP_DEFAULT);
    let files = scenario::scenario_files(&[scenarios_folder()]).expect("the scenarios folder is readable");
    assert!(!files.is_empty(), "no scenario in {}", scenarios_folder().display());
    for file in files {
        let scenario = scenario::parse(&file).unwrap_or_else(|error| panic!("{error}"));
        let seeds = scenario.sim.seeds.min(cap);
        if let Some(found) = runner::first_failure(&scenario, 0..seeds, |_| {}) {
            let path = runner::default_trace_path(None, &scenario, found.seed);
            panic!("{}", wg_sim::report::FailureRecord::new(&scenario, &found, &path).block());
        }
    }
}
