//! What must hold in a real run, judged by the very functions the simulator uses
//! (`wg_core::invariants`, docs/invariants.md) on what the files and `/proc` show: S1, S4, S5, S6
//! on every sample while the scenario runs; S3 (the log accounts for every raise), S8 and L1 at
//! its end; S2 on the unrelated processes squatting on reused pids. The scenario's own
//! expectations go through the simulator's evaluator.
//!
//! What a real run cannot observe, it does not check (listed once per suite run, see
//! [`NOT_OBSERVABLE`]): whom each signal was meant for (S2 beyond the squatters), each commit on
//! its own (S3's per-transition rule), what each retry returned (S7), and which agents a retry
//! stopped (L2).

use super::procs;
use super::world::{RealWorld, FOREIGN_LINE};
use std::collections::BTreeSet;
use std::time::Duration;
use wg_core::invariants::{self, AgentProcess, AgentSeen, LivenessView, Violation};
use wg_core::model::Agent;
use wg_core::ports::{State, Store};
use wg_sim::scenario::{Action, Scenario};

/// The invariants the simulator checks and a real run cannot observe.
pub const NOT_OBSERVABLE: &str = "S2 beyond the processes at reused pids, S3 per commit, S7, L2 \
     (the simulator checks them; a real run cannot see whom a signal was meant for, each commit, \
     or what a command returned)";

/// Both files as one lock holder reads them, raw (for byte-for-byte checks) and parsed.
pub struct Snapshot {
    pub graph_text: String,
    pub state: State,
}

/// Reads graph and registry under the store's locks, as one transaction would, so the two
/// files come from the same commit (a reader without the lock may see a commit half renamed).
pub fn read_snapshot(world: &RealWorld) -> Result<Snapshot, String> {
    let store = crate::system::store::FileStore::new(world.paths.clone(), false);
    let graph_path = world.paths.graph();
    let read = store.transact(|state| (state.clone(), std::fs::read_to_string(&graph_path)));
    let (state, graph_text) = wg_core::block_on(read).map_err(|error| format!("S8: {error}"))?;
    let graph_text = graph_text.map_err(|error| format!("S8: cannot read graph.jsonl: {error}"))?;
    Ok(Snapshot { graph_text, state })
}

/// The line of task `id` in `graph.jsonl`, as written.
fn line_of<'a>(graph_text: &'a str, id: &str) -> Option<&'a str> {
    let id_field = serde_json::to_string(id).ok()?;
    graph_text.lines().find(|line| {
        serde_json::from_str::<serde_json::Value>(line).is_ok_and(|v| v["id"].as_str() == Some(id))
            && line.contains(&id_field)
    })
}

fn shown(at: Duration, broken: Violation) -> String {
    format!("{}: {} (at {:.2}s)", broken.invariant, broken.detail, at.as_secs_f64())
}

/// The agent processes the registry names that are alive in `/proc` with the recorded identity.
fn live_agents(state: &State) -> Vec<AgentProcess<'_>> {
    state
        .registry
        .agents()
        .filter(|agent| procs::is_live(agent))
        .map(|agent| AgentProcess { agent_id: &agent.id, task_id: &agent.task_id, pid: agent.pid })
        .collect()
}

/// The invariants watched during the run. Each violation is reported once, at its first sighting.
pub struct Monitor {
    /// Companions no step names: no writer may change them (S5), and their lines stay byte for
    /// byte as first written (S8: an untouched line is written back unchanged).
    companions: BTreeSet<String>,
    companion_lines: Vec<(String, String)>,
    previous: State,
    reported: BTreeSet<String>,
    pub failures: Vec<String>,
}

impl Monitor {
    pub fn new(scenario: &Scenario, initial: &Snapshot) -> Monitor {
        let named: BTreeSet<String> = scenario.steps.iter().filter_map(step_task).collect();
        let companions: BTreeSet<String> = initial
            .state
            .graph
            .tasks()
            .filter(|task| task.is_companion() && !named.contains(&task.id))
            .map(|task| task.id.clone())
            .collect();
        let companion_lines = companions
            .iter()
            .filter_map(|id| Some((id.clone(), line_of(&initial.graph_text, id)?.to_string())))
            .collect();
        Monitor {
            companions,
            companion_lines,
            previous: initial.state.clone(),
            reported: BTreeSet::new(),
            failures: Vec::new(),
        }
    }

    fn report(&mut self, at: Duration, broken: Violation) {
        // One report per invariant and subject (the detail's first word names it).
        let subject = broken.detail.split_whitespace().next().unwrap_or_default();
        if self.reported.insert(format!("{} {subject}", broken.invariant)) {
            self.failures.push(shown(at, broken));
        }
    }

    pub fn sample(&mut self, at: Duration, snapshot: &Snapshot) {
        let state = &snapshot.state;
        let mut found = invariants::check_one_agent_per_task(live_agents(state));
        found.extend(invariants::check_done_stays_done(&self.previous, state));
        let companions_now = invariants::check_companions_unchanged(&self.previous, state);
        found.extend(companions_now.into_iter().filter(|broken| self.names_a_watched_companion(broken)));
        found.extend(invariants::check_agreement(state));
        found.extend(self.companion_lines_changed(&snapshot.graph_text));
        for broken in found {
            self.report(at, broken);
        }
        self.previous = state.clone();
    }

    fn names_a_watched_companion(&self, broken: &Violation) -> bool {
        self.companions.iter().any(|id| broken.detail.starts_with(&format!("companion {id} ")))
    }

    fn companion_lines_changed(&self, graph_text: &str) -> Vec<Violation> {
        self.companion_lines
            .iter()
            .filter_map(|(id, before)| {
                let now = line_of(graph_text, id).unwrap_or("(line gone)");
                let detail = format!("companion {id}'s line changed: expected {before}, found {now}");
                (now != before).then_some(Violation { invariant: "S8", detail })
            })
            .collect()
    }
}

/// The task a step's command names, if any (it may then change that task itself).
fn step_task(step: &wg_sim::scenario::Step) -> Option<String> {
    match &step.action {
        Action::Run(line) => line.command.task(),
        Action::Fault(_) => None,
    }
}

/// The scenario's `always` and `if_no_faults` expectations (the real run injects no faults),
/// through the simulator's evaluator: `t1.retry_count = 1 (actual: 2)`.
pub fn expectations(scenario: &Scenario, state: &State) -> Vec<String> {
    let all: Vec<_> = scenario.expect_always.iter().chain(&scenario.expect_if_no_faults).cloned().collect();
    wg_sim::checks::expectations(state, &all)
        .into_iter()
        .map(|violation| format!("expected {}", violation.detail))
        .collect()
}

/// L1 at the end: no task is in progress for an agent whose process is gone, and no ready task
/// waits while the service has room. The caller allows for a sweep and a grace period.
pub fn recovered(state: &State, service_max_agents: Option<usize>) -> Vec<String> {
    // When a process ended is not in /proc: the caller looks again for a sweep and a grace.
    let seen = |agent: &Agent| match procs::is_live(agent) {
        true => AgentSeen::Alive,
        false => AgentSeen::Gone { since_ms: None },
    };
    let view = LivenessView {
        state,
        seen: &seen,
        service: service_max_agents,
        now_ms: crate::system::clock::epoch_ms_now(),
        reaction_ms: 0,
    };
    invariants::check_recovered(&view)
        .into_iter()
        .map(|broken| format!("{}: {}", broken.invariant, broken.detail))
        .collect()
}

/// At the end, against the files as the run started: every raise of an attempt counter has its
/// log entry (S3 over the run), and nothing another tool wrote was lost (S8), including the line
/// of a kind no tool knows, byte for byte.
pub fn history(initial: &Snapshot, snapshot: &Snapshot) -> Vec<String> {
    let mut found = invariants::check_attempts_logged(&initial.state, &snapshot.state);
    found.extend(invariants::check_unknown_fields_survive(&initial.state, &snapshot.state));
    if !snapshot.graph_text.lines().any(|line| line == FOREIGN_LINE) {
        let detail = format!("the unknown line {FOREIGN_LINE} is gone or changed");
        found.push(Violation { invariant: "S8", detail });
    }
    found.into_iter().map(|broken| format!("{}: {}", broken.invariant, broken.detail)).collect()
}

/// S2: the unrelated programs at reused pids still run and caught no signal.
pub fn squatters_untouched(world: &mut RealWorld) -> Vec<String> {
    let mut found = Vec::new();
    for squatter in &mut world.squatters {
        let caught = std::fs::read_to_string(&squatter.marker).unwrap_or_default();
        let caught: Vec<&str> = caught.lines().collect();
        let target = format!("the unrelated process at {}'s recorded pid {}", squatter.agent, squatter.proc.pid);
        // Whatever a signal there was meant for, it was not this process: it is no agent's tree.
        let meant =
            wg_core::model::ProcessRef { pid: i64::from(squatter.proc.pid), start_ticks: None, started_at_ms: None };
        if !squatter.proc.poll() {
            let signal = format!("a signal that killed it ({:?})", squatter.proc.status);
            found.extend(invariants::check_signal_delivery(&signal, &meant, &target, None));
        } else if !caught.is_empty() {
            found.extend(invariants::check_signal_delivery(&caught.join(", "), &meant, &target, None));
        }
    }
    found.into_iter().map(|broken| format!("{}: {}", broken.invariant, broken.detail)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use wg_core::graph::Graph;
    use wg_core::registry::Registry;

    fn snapshot(graph: &str, registry: &str) -> Snapshot {
        let graph_state = Graph::parse(graph.as_bytes()).expect("graph parses");
        let registry = Registry::parse(registry.as_bytes()).expect("registry parses");
        Snapshot { graph_text: graph.to_string(), state: State { graph: graph_state, registry } }
    }

    /// The state a crash between the two renames of the dispatcher's reserve used to leave: an
    /// agent entry `starting` beside a task still open. The real runner's sample and the
    /// simulator's step check (`sim/src/checks.rs`: `after_step`) both judge it with
    /// `check_agreement`, so they report the same violation, word for word.
    #[test]
    fn a_half_committed_dispatch_gets_the_verdict_the_simulator_gives() {
        let graph = r#"{"kind":"task","id":"t1","status":"open","exec":"sleep 9"}"#;
        let none = r#"{"agents":{},"next_agent_id":2}"#;
        let half = r#"{"agents":{"agent-2":{"id":"agent-2","pid":0,"task_id":"t1","started_at":"2026-01-01T00:00:00Z","status":"starting"}},"next_agent_id":3}"#;
        let scenario_text = "[[world.task]]\nid = \"t1\"\nstatus = \"open\"\nexec = \"hang\"\n";
        let scenario = wg_sim::scenario::parse_str(Path::new("half.toml"), scenario_text).expect("scenario parses");
        let mut monitor = Monitor::new(&scenario, &snapshot(graph, none));
        let seen = snapshot(graph, half);
        monitor.sample(Duration::ZERO, &seen);
        let verdict = invariants::check_agreement(&seen.state);
        assert_eq!(verdict.len(), 1, "{verdict:?}");
        assert_eq!(monitor.failures, [format!("S6: {} (at 0.00s)", verdict[0].detail)]);
        assert_eq!(verdict[0].detail, "agent-2 is starting but its task t1 is open assigned None");
    }
}
