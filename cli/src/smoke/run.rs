//! One scenario, once, for real: build the world, run it until its expectations hold (and keep
//! holding for a moment) or its wall limit passes, check, end every process.

use super::checks::{self, Monitor, Snapshot};
use super::steps::StepRunner;
use super::world::{RealWorld, POLL_INTERVAL_MAX_MS};
use super::{RealOptions, ScenarioReport, Verdict, EXPECTED_FAIL};
use std::time::{Duration, Instant};
use wg_sim::scenario::Scenario;

/// How often the run reads the files and `/proc`: often enough to see a task done and re-opened
/// between two service sweeps (S4) and to fire `on` steps promptly.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(20);

/// How long the invariants are watched after the last step when the expectations are not judged.
const INEXACT_SETTLE: Duration = Duration::from_secs(2);

/// A run is never cut shorter than this, whatever the scenario's horizon.
const WALL_MIN: Duration = Duration::from_secs(5);

pub fn run_scenario(scenario: &Scenario, options: &RealOptions) -> ScenarioReport {
    let started = Instant::now();
    let mut report = ScenarioReport {
        name: scenario.name.clone(),
        file: scenario.path.clone(),
        verdict: Verdict::Pass,
        elapsed: Duration::ZERO,
        skipped: skipped_up_front(scenario),
        notes: scaled_settings(scenario),
        files_kept: None,
    };
    let failures = match RealWorld::build(scenario, &options.wg_binary) {
        Err(why) => vec![format!("setting up the world: {why}")],
        Ok(mut world) => {
            let mut failures = drive(scenario, &mut world, options, &mut report);
            failures.extend(world.shut_down());
            if failures.is_empty() {
                world.remove_files();
            } else {
                report.files_kept = Some(world.root.clone());
            }
            failures
        }
    };
    report.elapsed = started.elapsed();
    report.verdict = verdict(&scenario.name, failures);
    report
}

fn verdict(name: &str, failures: Vec<String>) -> Verdict {
    match EXPECTED_FAIL.iter().find(|(expected, _)| *expected == name) {
        Some((_, reason)) => Verdict::ExpectedFail { reason: reason.to_string(), failures },
        None if failures.is_empty() => Verdict::Pass,
        None => Verdict::Fail(failures),
    }
}

/// Random fault injection is the simulator's: the real run is one run with none injected, so
/// both `always` and `if_no_faults` expectations apply.
fn skipped_up_front(scenario: &Scenario) -> Vec<String> {
    if scenario.sim.faults.is_empty() {
        return Vec::new();
    }
    let names: Vec<&str> = scenario.sim.faults.iter().map(|fault| fault.name()).collect();
    vec![format!("injected faults {} (simulator only; this run injects none)", names.join(", "))]
}

fn scaled_settings(scenario: &Scenario) -> Vec<String> {
    let poll_ms = scenario.service.poll_interval_ms;
    if poll_ms <= POLL_INTERVAL_MAX_MS {
        return Vec::new();
    }
    vec![format!("poll interval {poll_ms}ms scaled down to {POLL_INTERVAL_MAX_MS}ms")]
}

/// The scenario's own horizon, half again for real process start-up, within [`WALL_MIN`] and the cap.
fn wall_limit(scenario: &Scenario, cap: Duration) -> Duration {
    Duration::from_millis(scenario.sim.safety_ms * 3 / 2).clamp(WALL_MIN, cap.max(WALL_MIN))
}

/// How long the expectations must keep holding once they hold: two service sweeps, so that a
/// late double count or a re-open has its chance to show.
fn settle_time(scenario: &Scenario) -> Duration {
    let poll_ms = scenario.service.poll_interval_ms.min(POLL_INTERVAL_MAX_MS);
    Duration::from_millis((2 * poll_ms).max(500))
}

fn drive(
    scenario: &Scenario,
    world: &mut RealWorld,
    options: &RealOptions,
    report: &mut ScenarioReport,
) -> Vec<String> {
    let initial = match checks::read_snapshot(world) {
        Ok(snapshot) => snapshot,
        Err(why) => return vec![format!("the initial files: {why}")],
    };
    let mut monitor = Monitor::new(scenario, &initial);
    if scenario.service.running {
        if let Err(why) = world.start_service() {
            return vec![why.to_string()];
        }
    }
    let mut steps = StepRunner::new(scenario);
    let limit = wall_limit(scenario, options.wall_cap);
    let (mut failures, timed_out) = watch(scenario, world, &mut steps, &mut monitor, limit);
    failures.splice(0..0, std::mem::take(&mut monitor.failures));
    failures.extend(final_checks(scenario, world, &initial, &mut steps, timed_out.then_some(limit)));
    report.skipped.append(&mut steps.skipped);
    report.notes.append(&mut steps.notes);
    failures
}

/// Samples and fires steps until the expectations hold for [`settle_time`] after the last step,
/// or `limit` passes (then returns `true`). Returns failures that end the run early.
fn watch(
    scenario: &Scenario,
    world: &mut RealWorld,
    steps: &mut StepRunner,
    monitor: &mut Monitor,
    limit: Duration,
) -> (Vec<String>, bool) {
    let clock = Instant::now();
    let settle = settle_time(scenario);
    let mut holding_since: Option<Duration> = None;
    loop {
        let now = clock.elapsed();
        world.poll_children();
        let snapshot = match checks::read_snapshot(world) {
            Ok(snapshot) => snapshot,
            Err(why) => return (vec![why], false),
        };
        monitor.sample(now, &snapshot);
        steps.fire_due(now, &snapshot.state, world);
        if let Some(why) = service_exited(world) {
            return (vec![why], false);
        }
        // Expectations that assume an inexact fault are not judged; the invariants then get a
        // longer look instead.
        let judged = steps.inexact.is_empty();
        let settled = steps.finished() && (!judged || checks::expectations(scenario, &snapshot.state).is_empty());
        holding_since = if settled { holding_since.or(Some(now)) } else { None };
        let settle = if judged { settle } else { settle.max(INEXACT_SETTLE) };
        if holding_since.is_some_and(|since| now - since >= settle) {
            return (Vec::new(), false);
        }
        if now >= limit {
            return (Vec::new(), true);
        }
        std::thread::sleep(SAMPLE_INTERVAL);
    }
}

/// The service must run until we stop it (a scripted crash takes it out of `world.service`).
fn service_exited(world: &mut RealWorld) -> Option<String> {
    let service = world.service.as_mut()?;
    if service.poll() {
        return None;
    }
    let status = service.status;
    world.service = None;
    Some(format!(
        "the service exited by itself ({status:?}), expected it to keep running: {}",
        world.service_output_tail()
    ))
}

fn final_checks(
    scenario: &Scenario,
    world: &mut RealWorld,
    initial: &Snapshot,
    steps: &mut StepRunner,
    timed_out: Option<Duration>,
) -> Vec<String> {
    let mut failures = Vec::new();
    match checks::read_snapshot(world) {
        Err(why) => failures.push(why),
        Ok(snapshot) => {
            let when = timed_out.map(|limit| format!(" after the wall limit of {:.1}s", limit.as_secs_f64()));
            if steps.inexact.is_empty() {
                let expectations = checks::expectations(scenario, &snapshot.state);
                failures.extend(expectations.into_iter().map(|failure| failure + when.as_deref().unwrap_or("")));
            } else {
                let faults = steps.inexact.join(", ");
                steps.skipped.push(format!("the scenario's expectations (they assume `{faults}` as the simulator makes it); invariants still checked"));
            }
            failures.extend(checks::history(initial, &snapshot));
        }
    }
    if world.service.is_some() {
        failures.extend(recovered_in_time(scenario, world));
    }
    failures.extend(checks::squatters_untouched(world));
    failures.extend(command_failures(steps));
    steps.end_all();
    let unfired = steps.unfired();
    steps.skipped.extend(unfired.into_iter().map(|text| format!("step `{text}`: its event never happened")));
    failures
}

/// L1, allowing for the service to get there: a dead agent's task may stay in-progress until the
/// reaper's next sweep and a kill's grace, and a re-queued task until the next dispatch, so we
/// look again for that long before reporting.
fn recovered_in_time(scenario: &Scenario, world: &mut RealWorld) -> Vec<String> {
    let service = &scenario.service;
    let poll_ms = service.poll_interval_ms.min(POLL_INTERVAL_MAX_MS);
    let tolerance = Duration::from_millis(poll_ms + service.grace_ms + service.kill_wait_ms + 1_000);
    let deadline = Instant::now() + tolerance.min(Duration::from_secs(6));
    loop {
        world.poll_children();
        let found = match checks::read_snapshot(world) {
            Ok(Snapshot { state, .. }) => checks::recovered(&state, Some(service.max_agents)),
            Err(why) => vec![why],
        };
        if found.is_empty() || Instant::now() >= deadline {
            return found;
        }
        std::thread::sleep(SAMPLE_INTERVAL);
    }
}

/// A step's `wg` must end, and with 0 (done) or 1 (refused, with a message): anything else is
/// a crash or a usage error.
fn command_failures(steps: &mut StepRunner) -> Vec<String> {
    let mut found = Vec::new();
    for step in &mut steps.commands {
        if step.proc.poll() {
            found.push(format!("`{}` was still running at the end (expected it to return)", step.text));
            continue;
        }
        let code = step.proc.status.and_then(|status| status.code());
        if !matches!(code, Some(0 | 1)) {
            let stderr = std::fs::read_to_string(&step.stderr).unwrap_or_default();
            let stderr = stderr.trim();
            found.push(format!("`{}` ended with {:?} (expected exit 0 or 1): {stderr}", step.text, step.proc.status));
        }
    }
    found
}
