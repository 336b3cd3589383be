//! The default campaign: every scenario of `scenarios/` at its own `[sim] seeds`, exactly what
//! `wg-sim run scenarios/` runs. This is the test cargo-mutants relies on (`.cargo/mutants.toml`)
//! to tell whether a mutant of the core changes a behaviour a scenario pins.
//!
//! `WG_SIM_SEEDS_CAP=N` runs at most N seeds of each scenario (a quicker, weaker check).

mod common;

use common::scenarios_folder;
use wg_sim::runner;
use wg_sim::scenario;

#[test]
fn every_scenario_passes_at_its_default_seeds() {
    let cap: u64 = std::env::var("WG_SIM_SEEDS_CAP").ok().and_then(|n| n.parse().ok()).unwrap_or(u64::MAX);
    let files = scenario::scenario_files(&[scenarios_folder()]).expect("the scenarios folder is readable");
    assert!(!files.is_empty(), "no scenario in {}", scenarios_folder().display());
    for file in files {
        let scenario = scenario::parse(&file).unwrap_or_else(|error| panic!("{error}"));
        let seeds = scenario.sim.seeds.min(cap);
        if let Some(found) = runner::first_failure(&scenario, 0..seeds, |_| {}) {
            let path = runner::default_trace_path(None, &scenario, found.seed);
            panic!("{}", runner::render_failure(&scenario, &found, &path));
        }
    }
}
