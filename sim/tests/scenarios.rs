//! Every scenario passes across a modest number of seeds; runs are deterministic; failures shrink;
//! a malformed scenario is reported with its line and column.

mod common;

#[cfg(not(feature = "planted-bugs"))]
use common::planted::{Campaign, CAMPAIGNS};
use common::{load, scenarios_folder};
use std::path::Path;
use wg_sim::executor::{self, RunOptions};
use wg_sim::runner;
use wg_sim::scenario::{self, SchedulerKind};

/// Seeds per scenario in `cargo test` (debug build, CI budget): the `run` command uses more.
const SEEDS_PER_SCENARIO: u64 = 40;

fn all_scenarios() -> Vec<scenario::Scenario> {
    let mut paths: Vec<_> = std::fs::read_dir(scenarios_folder())
        .expect("the scenarios folder exists")
        .map(|entry| entry.expect("readable").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 15, "the scenario set is complete");
    paths.iter().map(|path| scenario::parse(path).unwrap_or_else(|error| panic!("{error}"))).collect()
}

#[test]
fn every_scenario_passes_with_random_and_pct_schedules() {
    for scenario in all_scenarios() {
        for scheduler in [SchedulerKind::Random, SchedulerKind::Pct { depth: 3 }] {
            let found =
                runner::first_failure(&scenario, 0..SEEDS_PER_SCENARIO, |options| options.scheduler = scheduler);
            if let Some(found) = found {
                let path = runner::default_trace_path(None, &scenario, found.seed);
                panic!("{}", wg_sim::report::FailureRecord::new(&scenario, &found, &path).block());
            }
        }
    }
}

#[test]
fn swarm_fault_mixes_find_nothing_in_the_retry_race() {
    let scenario = load("retry_vs_reaper");
    let found = runner::first_failure(&scenario, 0..100, |options| options.faults = runner::swarm_faults(options.seed));
    assert!(found.is_none(), "{:?}", found.map(|found| found.shrunk.failure));
}

/// Ending the liveness phase once the world is quiescent changes no outcome: the same failures
/// (checker) and the same final files as running it to its bound.
#[test]
fn ending_at_quiescence_changes_no_outcome() {
    // More in release: WG_SIM_SEEDS=2000 cargo test --release -p wg-sim -- ending_at_quiescence
    let seeds: u64 = std::env::var("WG_SIM_SEEDS").ok().and_then(|n| n.parse().ok()).unwrap_or(15);
    for scenario in all_scenarios() {
        for seed in 0..seeds {
            let mut options = RunOptions { hash_steps: true, ..RunOptions::for_scenario(&scenario, seed) };
            if seed % 2 == 1 {
                options.faults = runner::swarm_faults(seed);
            }
            let early = executor::run(&scenario, &options);
            let full = executor::run(&scenario, &RunOptions { run_to_end: true, ..options });
            let checker = |report: &executor::RunReport| report.failure.as_ref().map(|f| f.checker.clone());
            assert_eq!(checker(&early), checker(&full), "{} seed {seed}", scenario.name);
            assert_eq!(early.final_files, full.final_files, "{} seed {seed}", scenario.name);
            assert!(early.trace.len() <= full.trace.len());
        }
    }
}

#[test]
fn same_seed_same_run_step_by_step() {
    for name in ["retry_vs_reaper", "kill_with_children", "heartbeat_timeout_reaped"] {
        let scenario = load(name);
        for seed in 0..10 {
            let options = RunOptions::for_scenario(&scenario, seed);
            runner::determinism_check(&scenario, &options).unwrap_or_else(|difference| panic!("{name}: {difference}"));
        }
    }
}

/// `two_retries` with an expectation that is wrong on purpose: fails on every seed.
fn two_retries_wrong() -> scenario::Scenario {
    let text = std::fs::read_to_string(scenarios_folder().join("two_retries.toml")).unwrap();
    let right = "\"t1.retry_count != 0 unless crash-cli, store-fail\"";
    assert!(text.contains(right), "two_retries.toml still holds the expectation this test breaks");
    let text = text.replace(right, "\"t1.retry_count = 7\"");
    scenario::parse_str(Path::new("two_retries_wrong.toml"), &text).unwrap()
}

#[test]
fn a_failure_is_found_shrunk_and_replayed_from_its_trace() {
    let scenario = two_retries_wrong();
    let found = runner::first_failure(&scenario, 0..1, |_| {}).expect("the wrong expectation fails");
    assert_eq!(found.shrunk.failure.as_ref().unwrap().checker, "expect");
    assert!(found.shrunk_trace.len() <= found.original.trace.len(), "shrinking never grows a trace");
    let file = std::env::temp_dir().join(format!("wg-sim-test-{}.jsonl", std::process::id()));
    runner::write_trace(&file, &scenario, found.seed, &found.shrunk_trace).unwrap();
    let (seed, trace) = runner::read_trace(&file).unwrap();
    assert_eq!(seed, Some(found.seed));
    let options = RunOptions::for_scenario(&scenario, found.seed);
    let replayed = runner::replay(&scenario, &options, trace, true);
    assert_eq!(replayed.failure.map(|failure| failure.checker), Some("expect".to_string()));
    let report = wg_sim::report::FailureRecord::new(&scenario, &found, &file).block();
    assert!(report.starts_with("FAIL scenario=two_retries_wrong seed=0 checker=expect step="), "{report}");
    assert!(report.contains("  replay: wg-sim replay "), "{report}");
    let _ = std::fs::remove_file(file);
}

#[test]
fn a_failing_trace_shrinks_to_fewer_steps() {
    // A scenario whose expectation is wrong on purpose fails on every seed; the shrinker must
    // cut the trace down while the same checker still fails.
    let scenario = two_retries_wrong();
    let options = RunOptions::for_scenario(&scenario, 3);
    let original = executor::run(&scenario, &options);
    assert_eq!(original.failure.as_ref().unwrap().checker, "expect");
    let shrunk = runner::shrink(&scenario, &options, &original);
    assert!(shrunk.len() < original.trace.len() / 2, "{} -> {}", original.trace.len(), shrunk.len());
    let replayed = runner::replay(&scenario, &options, shrunk, false);
    assert_eq!(replayed.failure.unwrap().checker, "expect");
}

#[test]
fn malformed_scenario_names_line_and_column() {
    let text = "[world]\nmax_agents = 2\n\n[[world.task]]\nid = \"t1\"\nexec = \"explode 3s\"\n";
    let error = scenario::parse_str(Path::new("bad.toml"), text).unwrap_err();
    assert_eq!((error.line, error.column), (6, 8), "{error}");
    assert!(error.to_string().starts_with("bad.toml:6:8: unknown behaviour"), "{error}");
    let error = scenario::parse_str(Path::new("bad.toml"), "[world]\nmax_agents = \"two\"\n").unwrap_err();
    assert_eq!(error.line, 2, "{error}");
    let text = "[world]\n[[step]]\nat = \"1s\"\nrun = \"wg retry\"\n";
    let error = scenario::parse_str(Path::new("bad.toml"), text).unwrap_err();
    assert_eq!((error.line, error.column), (4, 7), "{error}");
}

#[cfg(not(feature = "planted-bugs"))]
#[test]
fn planted_bug_campaigns_find_nothing_without_the_bugs() {
    for &Campaign { bug, scenario: name, seeds, .. } in &CAMPAIGNS {
        let scenario = load(name);
        let found = runner::first_failure(&scenario, 0..seeds, |_| {});
        assert!(found.is_none(), "{name} (the campaign for {bug:?}): {:?}", found.map(|found| found.shrunk.failure));
    }
}

/// Speed of the fuzz loop (run in release: `cargo test --release -p wg-sim -- --ignored speed`).
#[test]
#[ignore]
fn speed_of_retry_vs_reaper() {
    let scenario = load("retry_vs_reaper");
    let started = std::time::Instant::now();
    let seeds: u64 = std::env::var("WG_SIM_SEEDS").ok().and_then(|n| n.parse().ok()).unwrap_or(20_000);
    let mut failures = 0;
    for seed in 0..seeds {
        let report = executor::run(&scenario, &RunOptions::for_scenario(&scenario, seed));
        failures += usize::from(report.failure.is_some());
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "retry_vs_reaper: {seeds} seeds in {elapsed:.2}s = {:.0} seeds/s, {failures} failures",
        seeds as f64 / elapsed
    );
    assert_eq!(failures, 0);
}

/// The former known bug (3dc0e4b): the agent spawned just before the service crash never runs;
/// its gate closes and the entry is settled after the starting timeout, then one agent runs t1.
#[test]
fn a_service_crash_after_spawn_closes_the_gate() {
    let scenario = load("service_crash_after_spawn");
    for seed in 0..5 {
        let options = RunOptions { record_timeline: true, ..RunOptions::for_scenario(&scenario, seed) };
        let report = executor::run(&scenario, &options);
        assert_eq!(report.failure, None, "seed {seed}");
        let timeline = report.timeline.join("\n");
        assert!(timeline.contains("service crashed"), "seed {seed}:\n{timeline}");
        assert!(timeline.contains("gate closed"), "seed {seed}:\n{timeline}");
        assert!(timeline.contains("agent-1 ended: it never started"), "seed {seed}:\n{timeline}");
    }
}
