//! Running scenarios across seeds, fuzzing, shrinking failing traces, the determinism
//! self-check, traces as JSONL and the failure report.

use crate::executor::{self, format_tick, Decision, RunOptions, RunReport};
use crate::scenario::{FaultKind, Scenario};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::fmt::Write as _;
use std::io::BufRead;
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

/// The failure block (docs/design.md, Scenarios): header, shrink, timeline, replay command.
pub fn render_failure(scenario: &Scenario, found: &Found, trace_path: &Path) -> String {
    let failure = found.shrunk.failure.as_ref().or(found.original.failure.as_ref()).expect("a failure to render");
    let mut text = String::new();
    let _ = writeln!(
        text,
        "FAIL scenario={} seed={} checker={} step={} tick={}",
        scenario.name,
        found.seed,
        failure.checker,
        failure.step,
        format_tick(failure.tick_ms)
    );
    let _ = writeln!(text, "  shrunk: {} -> {} steps", found.original.trace.len(), found.shrunk_trace.len());
    let timeline = &found.shrunk.timeline;
    let shown = 80;
    if timeline.len() > shown {
        let _ = writeln!(text, "  ... {} earlier steps", timeline.len() - shown);
    }
    for line in timeline.iter().skip(timeline.len().saturating_sub(shown)) {
        let _ = writeln!(text, "  {line}");
    }
    let _ = writeln!(text, "  !! {}: {}", failure.checker, failure.detail);
    let _ = writeln!(
        text,
        "  replay: wg-sim replay {} --seed {} --trace {}",
        scenario.path.display(),
        found.seed,
        trace_path.display()
    );
    text
}

/// Writes a trace as JSONL: a header line, then one decision per line.
pub fn write_trace(path: &Path, scenario: &Scenario, seed: u64, trace: &[Decision]) -> std::io::Result<()> {
    if let Some(folder) = path.parent() {
        std::fs::create_dir_all(folder)?;
    }
    let mut text = serde_json::json!({"scenario": scenario.path.display().to_string(), "seed": seed}).to_string();
    text.push('\n');
    for decision in trace {
        text.push_str(&serde_json::to_string(decision).expect("decisions serialize"));
        text.push('\n');
    }
    std::fs::write(path, text)
}

/// Reads a trace written by [`write_trace`]: the seed of its header and its decisions.
pub fn read_trace(path: &Path) -> Result<(Option<u64>, Vec<Decision>), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut seed = None;
    let mut decisions = Vec::new();
    for (number, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| format!("{}: {e}", path.display()))?;
        if number == 0 && line.contains("\"seed\"") {
            let header: serde_json::Value =
                serde_json::from_str(&line).map_err(|e| format!("{}:1: {e}", path.display()))?;
            seed = header["seed"].as_u64();
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        let decision = serde_json::from_str(&line).map_err(|e| format!("{}:{}: {e}", path.display(), number + 1))?;
        decisions.push(decision);
    }
    Ok((seed, decisions))
}

/// Where a failing trace goes by default.
pub fn default_trace_path(folder: Option<&Path>, scenario: &Scenario, seed: u64) -> PathBuf {
    let folder = folder.map(Path::to_path_buf).unwrap_or_else(|| std::env::temp_dir().join("wg-sim"));
    folder.join(format!("{}-{seed}.jsonl", scenario.name))
}

/// Runs `seed` twice; returns the first step whose state hash differs, if any.
pub fn determinism_check(scenario: &Scenario, options: &RunOptions) -> Result<(), String> {
    let options = RunOptions { hash_steps: true, ..options.clone() };
    let first = executor::run(scenario, &options);
    let second = executor::run(scenario, &options);
    let differing = first.step_hashes.iter().zip(&second.step_hashes).position(|(a, b)| a != b);
    match differing {
        Some(step) => Err(format!("seed {}: runs differ first at step {step}", options.seed)),
        None if first.step_hashes.len() != second.step_hashes.len() || first.trace != second.trace => Err(format!(
            "seed {}: runs differ in length ({} vs {} steps)",
            options.seed,
            first.trace.len(),
            second.trace.len()
        )),
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
