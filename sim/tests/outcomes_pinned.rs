//! Speed-ups of the simulator must not change what a seed does. Each case below runs a fixed
//! range of seeds of one scenario (with faults: the scenario's own, or swarm faults at a higher
//! rate) and folds into one number everything a run shows: its decisions, its failure (checker,
//! detail, step, time), the faults fired, the orderings coverage saw, the per-step state hashes
//! the explorer and the determinism check rely on, and the final graph and registry files. The
//! expected numbers were recorded from the simulator before its throughput work (issue 14,
//! item 4); a mismatch means some seed now runs differently.
//!
//! To re-record after an intended change of behaviour, run with `PIN_PRINT=1` and
//! `--nocapture`, and say in the commit why outcomes changed.

mod common;

use common::load;
use wg_sim::executor::{self, RunOptions, RunReport};
use wg_sim::runner;

/// FNV-1a, 64 bits: stable across Rust releases (std's `DefaultHasher` is not promised to be).
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn bytes(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01B3);
        }
        // A separator, so that ("ab", "c") and ("a", "bc") differ.
        self.0 = (self.0 ^ 0xff).wrapping_mul(0x0000_0100_0000_01B3);
    }

    fn text(&mut self, text: &str) {
        self.bytes(text.as_bytes());
    }

    fn number(&mut self, number: u64) {
        self.bytes(&number.to_le_bytes());
    }
}

/// Folds one run's observable outcome into `hash`.
fn fold(hash: &mut Fnv, report: &RunReport) {
    for decision in &report.trace {
        hash.text(&serde_json::to_string(decision).expect("decisions serialize"));
    }
    match &report.failure {
        Some(failure) => {
            hash.text(&failure.checker);
            hash.text(&failure.detail);
            hash.number(failure.step as u64);
            hash.number(failure.tick_ms as u64);
        }
        None => hash.text("no failure"),
    }
    hash.number(u64::from(report.invalid));
    hash.number(u64::from(report.faults_fired));
    for kind in &report.fault_kinds {
        hash.text(&format!("{kind:?}"));
    }
    for ordering in &report.orderings {
        hash.text(ordering);
    }
    for step_hash in &report.step_hashes {
        hash.number(*step_hash);
    }
    if let Some((graph, registry)) = &report.final_files {
        hash.text(graph);
        hash.text(registry);
    }
}

/// How a case's seeds are run.
#[derive(Clone, Copy, Debug)]
// The planted-bug cases use only the scenarios' own faults.
#[cfg_attr(feature = "planted-bugs", allow(dead_code))]
enum Faults {
    /// The scenario's own fault kinds and rate.
    Scenario,
    /// `wg-sim fuzz --swarm`: a per-seed subset of every fault kind, at this rate.
    Swarm(f64),
}

/// (scenario, first seed, seeds, faults, expected hash).
type Case = (&'static str, u64, u64, Faults, u64);

/// Runs each seed twice: as `fuzz` does (coverage on), and with state hashes and final files
/// (as the determinism check does); both runs must take the same decisions.
/// Returns the hash and how many seeds failed.
fn outcome_hash(
    name: &str,
    seeds: std::ops::Range<u64>,
    faults: Faults,
    tune: impl Fn(&mut RunOptions),
) -> (u64, usize) {
    let scenario = load(name);
    let mut hash = Fnv::new();
    let mut failed = 0;
    for seed in seeds {
        let mut options = RunOptions::for_scenario(&scenario, seed);
        if let Faults::Swarm(rate) = faults {
            options.faults = runner::swarm_faults(seed);
            options.fault_rate = rate;
        }
        tune(&mut options);
        let fuzzed = executor::run(&scenario, &RunOptions { coverage: true, ..options.clone() });
        let hashed = executor::run(&scenario, &RunOptions { hash_steps: true, ..options });
        assert_eq!(fuzzed.trace, hashed.trace, "{name} seed {seed}: hashing steps changed the run");
        hash.number(seed);
        fold(&mut hash, &fuzzed);
        fold(&mut hash, &hashed);
        failed += usize::from(fuzzed.failure.is_some());
    }
    (hash.0, failed)
}

/// Checks every case; returns how many seeds failed in all.
fn check(cases: &[Case], tune: impl Fn(&mut RunOptions)) -> usize {
    let printing = std::env::var_os("PIN_PRINT").is_some();
    let mut mismatches = Vec::new();
    let mut failed = 0;
    for &(name, first, count, faults, expected) in cases {
        let (actual, failures) = outcome_hash(name, first..first + count, faults, &tune);
        failed += failures;
        if printing {
            println!("    (\"{name}\", {first}, {count}, Faults::{faults:?}, 0x{actual:016x}),");
        }
        if actual != expected {
            mismatches.push(format!(
                "{name} seeds {first}..{}: outcome hash 0x{actual:016x}, pinned 0x{expected:016x}",
                first + count
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "seeds now run differently from the pinned simulator (bisect the seeds of the case to find the \
         first one that moved):\n{}",
        mismatches.join("\n")
    );
    failed
}

#[cfg(not(feature = "planted-bugs"))]
const CASES: [Case; 8] = [
    ("retry_vs_reaper", 0, 60, Faults::Scenario, 0x082bd80006c8c541),
    ("retry_vs_reaper", 1000, 40, Faults::Swarm(0.2), 0x47a9ab01ba1553f2),
    ("two_retries", 0, 40, Faults::Swarm(0.2), 0x1d18ec069512548f),
    ("retry_while_done", 0, 40, Faults::Scenario, 0xa62f70ebcd2e8447),
    ("kill_reaper_respawn", 0, 30, Faults::Swarm(0.2), 0x50a467c10f8f8a02),
    ("pid_reuse_not_signalled", 0, 30, Faults::Scenario, 0x6ef35261a28a71c1),
    ("service_crash_after_spawn", 0, 30, Faults::Swarm(0.2), 0xb97d171ed556019b),
    ("retry_hung_agent", 0, 30, Faults::Swarm(0.3), 0x23cd0efdd5182e04),
];

#[cfg(not(feature = "planted-bugs"))]
#[test]
fn every_pinned_seed_runs_as_before() {
    let failed = check(&CASES, |_| {});
    assert_eq!(failed, 0, "without planted bugs every seed passes");
}

/// Runs cut short by a step bound fail ("steps"): their failures are pinned as well.
#[cfg(not(feature = "planted-bugs"))]
const SHORT_CASES: [Case; 2] = [
    ("retry_vs_reaper", 0, 30, Faults::Swarm(0.2), 0xb7144d9f818439c6),
    ("kill_with_children", 0, 30, Faults::Scenario, 0xe2a9036c4ef61d9e),
];

#[cfg(not(feature = "planted-bugs"))]
#[test]
fn every_pinned_seed_cut_short_fails_as_before() {
    let failed = check(&SHORT_CASES, |options| options.steps_max = 60);
    assert!(failed > 0, "a bound of 60 steps cuts some pinned runs short, so failures are pinned too");
}

/// With the planted bugs, runs fail: their failures (checker, detail, step) are pinned too.
#[cfg(feature = "planted-bugs")]
const PLANTED_CASES: [(Case, wg_core::settings::PlantedBug); 4] = [
    (("retry_vs_reaper", 0, 60, Faults::Scenario, 0xb293250bf3bd50ba), wg_core::settings::PlantedBug::ReaperUnchecked),
    (("two_retries", 0, 60, Faults::Scenario, 0xae9f8252d79867b5), wg_core::settings::PlantedBug::DoubleCountRetries),
    (
        ("pid_reuse_not_signalled", 0, 60, Faults::Scenario, 0xa77caa0c2f0b505c),
        wg_core::settings::PlantedBug::SignalWithoutIdentity,
    ),
    (
        ("retry_while_done", 0, 60, Faults::Scenario, 0x177429fc5f45e672),
        wg_core::settings::PlantedBug::UnconditionalRetry,
    ),
];

#[cfg(feature = "planted-bugs")]
#[test]
fn every_pinned_seed_with_a_planted_bug_fails_as_before() {
    let mut failed = 0;
    let mut mismatches = Vec::new();
    for (case, bug) in PLANTED_CASES {
        let run = std::panic::catch_unwind(|| check(&[case], |options| options.planted_bug = Some(bug)));
        match run {
            Ok(failures) => failed += failures,
            Err(_) => mismatches.push(format!("{bug:?} in {}", case.0)),
        }
    }
    assert!(mismatches.is_empty(), "pinned outcomes moved with planted bugs: {}", mismatches.join(", "));
    assert!(failed > 0, "the planted bugs fail some pinned seeds, so failures are pinned too");
}
