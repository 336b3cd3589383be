//! Running scenarios across seeds, fuzzing, shrinking failing traces, the determinism
//! self-check, traces as JSONL and the failure report.

use crate::executor::{self, Decision, RunOptions, RunReport};
use crate::scenario::{FaultKind, Scenario};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};

/// A failing seed: the original run and its shrunk replay (with a timeline).
#[derive(Clone, Debug)]
pub struct Found {
    pub seed: u64,
    pub original: RunReport,
    pub shrunk_trace: Vec<Decision>,
    pub shrunk: RunReport,
}

/// The most replays one shrink may spend: shrinking is a convenience, not a search.
pub const SHRINK_REPLAYS_MAX: usize = 400;

/// Fault kinds for one seed in swarm mode: each kind is on with probability one half, so that
/// some runs concentrate on a few faults instead of diluting all of them.
pub fn swarm_faults(seed: u64) -> Vec<FaultKind> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5741_524D);
    FaultKind::ALL.into_iter().filter(|_| rng.gen_bool(0.5)).collect()
}

/// Runs `options` (one seed); on failure, shrinks it and replays the result with a timeline.
pub fn run_and_shrink(scenario: &Scenario, options: &RunOptions) -> Option<Found> {
    let original = executor::run(scenario, options);
    original.failure.as_ref()?;
    Some(shrink_failure(scenario, options, original))
}

/// Shrinks `original`, the failing run of `options`, and replays the result with a timeline;
/// for a caller that already ran the seed and need not run it again.
pub fn shrink_failure(scenario: &Scenario, options: &RunOptions, original: RunReport) -> Found {
    let shrunk_trace = shrink(scenario, options, &original);
    let shrunk = replay(scenario, options, shrunk_trace.clone(), true);
    assert!(shrunk.failure.is_some(), "a shrunk trace still fails");
    Found { seed: options.seed, original, shrunk_trace, shrunk }
}

/// Replays `trace` with the seed of `options` (the seed still decides exit delays).
pub fn replay(scenario: &Scenario, options: &RunOptions, trace: Vec<Decision>, record_timeline: bool) -> RunReport {
    let options = RunOptions { replay: Some(trace), record_timeline, ..options.clone() };
    executor::run(scenario, &options)
}

/// Removes faults, then chunks of decisions, keeping each removal while the replay still fails
/// the same checker; discards replays that became invalid. Bounded by [`SHRINK_REPLAYS_MAX`].
pub fn shrink(scenario: &Scenario, options: &RunOptions, failing: &RunReport) -> Vec<Decision> {
    let failure = failing.failure.as_ref().expect("shrink a failing run");
    let checker = failure.checker.clone();
    let replays = std::cell::Cell::new(0);
    let attempt = |candidate: &[Decision]| -> Option<Vec<Decision>> {
        replays.set(replays.get() + 1);
        if replays.get() > SHRINK_REPLAYS_MAX {
            return None;
        }
        let report = replay(scenario, options, candidate.to_vec(), false);
        let failure = report.failure.filter(|f| f.checker == checker && !report.invalid)?;
        // Keep only what led to the failure; past the end the default schedule runs.
        Some(candidate[..(failure.step + 1).min(candidate.len())].to_vec())
    };
    let truncated = &failing.trace[..(failure.step + 1).min(failing.trace.len())];
    let mut best = attempt(truncated).unwrap_or_else(|| failing.trace.clone());
    let mut index = 0;
    while index < best.len() {
        if best[index].is_fault() {
            let mut candidate = best.clone();
            candidate.remove(index);
            if let Some(smaller) = attempt(&candidate) {
                best = smaller;
                continue;
            }
        }
        index += 1;
    }
    let mut chunk = best.len().div_ceil(2).max(1);
    while chunk >= 1 && replays.get() < SHRINK_REPLAYS_MAX {
        let mut start = 0;
        while start < best.len() && replays.get() < SHRINK_REPLAYS_MAX {
            let end = (start + chunk).min(best.len());
            let candidate: Vec<Decision> = best[..start].iter().chain(&best[end..]).cloned().collect();
            match attempt(&candidate) {
                Some(smaller) if smaller.len() < best.len() => best = smaller,
                _ => start += chunk,
            }
        }
        if chunk == 1 {
            break;
        }
        chunk /= 2;
    }
    best
}

/// Writes a trace file (see [`crate::trace`]).
pub fn write_trace(path: &Path, scenario: &Scenario, seed: u64, trace: &[Decision]) -> std::io::Result<()> {
    crate::trace::write(path, scenario, seed, trace)
}

/// Reads a trace file (see [`crate::trace`]): the seed of its header and its decisions.
pub fn read_trace(path: &Path) -> Result<(Option<u64>, Vec<Decision>), crate::trace::TraceError> {
    crate::trace::read(path).map(|trace| (trace.seed, trace.decisions))
}

/// Where a failing trace goes: `folder`, or [`crate::trace::DEFAULT_FOLDER`].
pub fn default_trace_path(folder: Option<&Path>, scenario: &Scenario, seed: u64) -> PathBuf {
    crate::trace::path_in(folder.unwrap_or(Path::new(crate::trace::DEFAULT_FOLDER)), scenario, seed)
}

/// How two runs of one seed differed: the simulator is not deterministic.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Nondeterminism {
    #[error("seed {seed}: runs differ first at step {step}")]
    StateDiffers { seed: u64, step: usize },
    #[error("seed {seed}: runs differ in length ({first_steps} vs {second_steps} steps)")]
    LengthDiffers { seed: u64, first_steps: usize, second_steps: usize },
}

/// Runs `seed` twice; returns the first step whose state hash differs, if any.
pub fn determinism_check(scenario: &Scenario, options: &RunOptions) -> Result<(), Nondeterminism> {
    let options = RunOptions { hash_steps: true, ..options.clone() };
    let first = executor::run(scenario, &options);
    let second = executor::run(scenario, &options);
    let differing = first.step_hashes.iter().zip(&second.step_hashes).position(|(a, b)| a != b);
    let seed = options.seed;
    match differing {
        Some(step) => Err(Nondeterminism::StateDiffers { seed, step }),
        None if first.step_hashes.len() != second.step_hashes.len() || first.trace != second.trace => {
            Err(Nondeterminism::LengthDiffers {
                seed,
                first_steps: first.trace.len(),
                second_steps: second.trace.len(),
            })
        }
        None => Ok(()),
    }
}

/// Runs seeds `seeds` of `scenario` and returns the first failure (shrunk), if any.
pub fn first_failure(
    scenario: &Scenario,
    seeds: std::ops::Range<u64>,
    tune: impl Fn(&mut RunOptions),
) -> Option<Found> {
    for seed in seeds {
        let mut options = RunOptions::for_scenario(scenario, seed);
        tune(&mut options);
        if executor::run(scenario, &options).failure.is_some() {
            return run_and_shrink(scenario, &options);
        }
    }
    None
}
