//! What `wg-sim check` prints: the failure block (as `fuzz` prints it) and the closing lines.

use super::{Bounds, Exploration};
use crate::runner;
use crate::scenario::Scenario;
use std::fmt::Write as _;
use std::path::Path;

fn plural(count: u32, one: &str) -> String {
    format!("{count} {one}{}", if count == 1 { "" } else { "s" })
}

/// `(2 preemptions, 1 fault)`.
pub fn bounds_text(bounds: &Bounds) -> String {
    format!("({}, {})", plural(bounds.preemptions, "preemption"), plural(bounds.faults, "fault"))
}

/// The report of one scenario; a failure's trace must already be written at `trace_path`.
pub fn render(scenario: &Scenario, bounds: &Bounds, outcome: &Exploration, trace_path: &Path) -> String {
    let mut text = String::new();
    if let Some(found) = &outcome.failure {
        text.push_str(&crate::report::FailureRecord::new(scenario, found, trace_path).block());
    }
    let _ = writeln!(
        text,
        "  schedules explored {}, pruned {} (a state already explored), distinct states {}, max depth {} steps, wall time {:.2}s",
        outcome.explored,
        outcome.pruned,
        outcome.states,
        outcome.max_depth,
        outcome.elapsed.as_secs_f64()
    );
    let verdict = match (&outcome.failure, outcome.incomplete) {
        (Some(_), _) => format!("FAIL {}: a violation within the bounds {}", scenario.name, bounds_text(bounds)),
        (None, true) => format!(
            "INCOMPLETE {}: stopped by --time before every schedule within the bounds {} was tried; \
             no verdict (raise --time or lower the bounds)",
            scenario.name,
            bounds_text(bounds)
        ),
        (None, false) => format!("ok   {}: no violation within the bounds {}", scenario.name, bounds_text(bounds)),
    };
    text.push_str(&verdict);
    text.push('\n');
    text
}

/// Explores one scenario, writes a failure's trace under `out`, and returns the report and
/// whether it failed.
pub fn check(scenario: &Scenario, bounds: &Bounds, out: &Path) -> Result<(String, bool), String> {
    let options = crate::executor::RunOptions::for_scenario(scenario, CHECK_SEED);
    let outcome = super::explore(scenario, bounds, &options, false);
    let trace_path = runner::default_trace_path(Some(out), scenario, CHECK_SEED);
    if let Some(found) = &outcome.failure {
        runner::write_trace(&trace_path, scenario, found.seed, &found.shrunk_trace).map_err(|error| {
            format!(
                "cannot write the failing trace to {}: {error}; pass --out to pick another folder",
                trace_path.display()
            )
        })?;
    }
    Ok((render(scenario, bounds, &outcome, &trace_path), outcome.failure.is_some()))
}

/// The seed of every explored schedule: it decides only what the schedule does not (exit
/// delays), and a replay needs it.
pub const CHECK_SEED: u64 = 0;
