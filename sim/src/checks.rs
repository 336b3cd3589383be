//! The invariants as the simulator applies them. Each is defined once, in
//! `wg_core::invariants` (docs/invariants.md); this module only decides when each is checked and
//! on what the simulator sees.
//!
//! Per commit (the state before and after, and who wrote): S3 (each task's transition, and one
//! raise per command), S4, S5 (for commands), S8. After every step (the committed state outside
//! any transaction, plus the process table): S1, S6. At each signal delivery (world.rs): S2.
//! When a retry returns (actors.rs): S7. At the end of the liveness phase: L1, L2, S3 over the
//! whole run (every raise has its log entry), every step fired, and the scenario's expectations.

use crate::scenario::{ExpectOp, Expectation, FaultKind, Step, Trigger};
use crate::world::{ActorKind, CheckFailed, Inner, Proc, ProcKind, Timer};
use std::collections::{BTreeMap, BTreeSet};
use wg_core::invariants::{self, AgentProcess, AgentSeen, LivenessView};
use wg_core::model::Agent;
use wg_core::ports::State;
use wg_core::settings::Settings;

impl From<invariants::Violation> for CheckFailed {
    fn from(broken: invariants::Violation) -> CheckFailed {
        CheckFailed { checker: broken.invariant.to_string(), detail: broken.detail }
    }
}

pub struct CommitCheck<'a> {
    pub before: &'a State,
    pub after: &'a State,
    pub initial: &'a State,
    /// Lines of the graph file as written by this commit, and as the run started.
    pub graph_lines: usize,
    pub initial_graph_lines: usize,
}

/// S3, S4, S5 and S8 for one commit by an actor of `kind`; `raised` counts, per task, the
/// attempt-counter raises this actor's commits made so far.
pub fn on_commit(check: &CommitCheck, kind: ActorKind, raised: &mut BTreeMap<String, u32>) -> Vec<CheckFailed> {
    let mut found: Vec<invariants::Violation> = Vec::new();
    for after in check.after.graph.tasks() {
        let Some(before) = check.before.graph.task(&after.id) else { continue };
        found.extend(invariants::check_attempt_transition(before, after));
        if after.retry_count > before.retry_count && kind == ActorKind::Cli {
            let count = raised.entry(after.id.clone()).or_insert(0);
            *count += 1;
            found.extend(invariants::check_raises_by_one_command(&after.id, *count));
        }
    }
    found.extend(invariants::check_done_stays_done(check.before, check.after));
    if kind == ActorKind::Cli {
        found.extend(invariants::check_companions_unchanged(check.before, check.after));
    }
    found.extend(invariants::check_unknown_fields_survive(check.initial, check.after));
    let mut found: Vec<CheckFailed> = found.into_iter().map(CheckFailed::from).collect();
    if check.graph_lines < check.initial_graph_lines {
        // S8 on the file itself: lines of kinds we do not know are written back too.
        found.push(CheckFailed { checker: "S8".into(), detail: "graph.jsonl lost lines".into() });
    }
    found
}

/// The agent processes of the process table, for S1 (`running_only`: released from their
/// spawn gate) and L2 (all of them).
fn agent_processes(inner: &Inner, running_only: bool) -> Vec<AgentProcess<'_>> {
    inner
        .procs
        .values()
        .filter(|proc| !running_only || proc.gate.is_none())
        .filter_map(|proc: &Proc| match &proc.kind {
            ProcKind::Agent { agent_id, task_id } => Some(AgentProcess { agent_id, task_id, pid: proc.pid }),
            _ => None,
        })
        .collect()
}

/// S1 and S6 on the committed state and the process table.
pub fn after_step(inner: &Inner) -> Vec<CheckFailed> {
    let mut found = invariants::check_one_agent_per_task(agent_processes(inner, true));
    found.extend(invariants::check_agreement(&inner.committed));
    found.into_iter().map(CheckFailed::from).collect()
}

/// L1, L2 and S3 over the whole run, at the end of the liveness phase.
pub fn at_end(inner: &Inner, initial: &State, settings: &Settings, service_runs: bool) -> Vec<CheckFailed> {
    let processes = agent_processes(inner, false);
    let seen = |agent: &Agent| match processes.iter().any(|process| process.agent_id == agent.id) {
        true => AgentSeen::Alive,
        false => AgentSeen::Gone { since_ms: inner.agent_exits_ms.get(&agent.id).copied() },
    };
    let view = LivenessView {
        state: &inner.committed,
        seen: &seen,
        service: service_runs.then_some(settings.max_agents),
        now_ms: inner.now_ms,
        // A sweep to notice, then a tick to dispatch; both loops run every poll interval.
        reaction_ms: 2 * settings.poll_interval_ms as i64,
    };
    let mut found = invariants::check_recovered(&view);
    let retried = inner.retried_agents.iter().map(String::as_str);
    found.extend(invariants::check_stopped(&inner.committed, retried, processes.iter().copied()));
    found.extend(invariants::check_attempts_logged(initial, &inner.committed));
    found.into_iter().map(CheckFailed::from).collect()
}

/// Whether the dispatcher could start `task` now or once its crash-loop backoff is over.
pub fn could_be_ready(state: &State, task: &wg_core::model::Task) -> bool {
    wg_core::ops::is_ready(state, task, i64::MAX)
}

/// Each step fired: its time came, or its event happened and its delay passed. A step that never
/// did is a mistake of the scenario (an event that cannot happen, a time past the run's end) or
/// a run that went elsewhere; a step may name the faults that excuse it (`unless`), as an
/// expectation does.
pub fn steps_never_fired(inner: &Inner, steps: &[Step], injected: &BTreeSet<FaultKind>) -> Vec<CheckFailed> {
    let pending: BTreeSet<usize> = inner
        .timers
        .values()
        .filter_map(|timer| match timer {
            Timer::Step { index } => Some(*index),
            _ => None,
        })
        .collect();
    steps
        .iter()
        .enumerate()
        .filter(|(index, step)| {
            let waits_for_event = matches!(step.trigger, Trigger::On { .. }) && !inner.steps_fired.contains(index);
            (waits_for_event || pending.contains(index)) && !step.unless.iter().any(|kind| injected.contains(kind))
        })
        .map(|(_, step)| CheckFailed {
            checker: "step-never-fired".into(),
            detail: match &step.trigger {
                Trigger::On { event, .. } => format!("`{}`: its event `{event}` never happened", step.text),
                Trigger::At { at_ms } => format!("`{}`: the run ended before its time ({at_ms} ms)", step.text),
            },
        })
        .collect()
}

/// The scenario's own expectations, against the final state.
pub fn expectations<'a>(state: &State, list: impl IntoIterator<Item = &'a Expectation>) -> Vec<CheckFailed> {
    list.into_iter()
        .filter_map(|expectation| {
            let actual = field_value(state, &expectation.subject, &expectation.field);
            let holds = match (&expectation.op, &actual) {
                (_, Err(_)) => false,
                (ExpectOp::Equals(wanted), Ok(value)) => value == wanted,
                (ExpectOp::NotEquals(wanted), Ok(value)) => value != wanted,
                (ExpectOp::In(list), Ok(value)) => list.contains(value),
                (ExpectOp::Contains(wanted), Ok(value)) => value.contains(wanted.as_str()),
            };
            let shown = actual.unwrap_or_else(|why| why);
            (!holds).then(|| CheckFailed {
                checker: "expect".into(),
                detail: format!("{} (actual: {shown})", expectation.text),
            })
        })
        .collect()
}

/// The fields an expectation may name on a task, and on an agent: `field_value` reads each, and
/// the scenario parser refuses any other (`scenario/names.rs`).
pub const TASK_FIELDS: [&str; 6] = ["status", "retry_count", "assigned", "agent", "failure_reason", "log"];
pub const AGENT_FIELDS: [&str; 2] = ["status", "task"];

fn field_value(state: &State, subject: &str, field: &str) -> Result<String, String> {
    if let Some(task) = state.graph.task(subject) {
        return match field {
            "status" => Ok(task.status.to_string()),
            "retry_count" => Ok(task.retry_count.to_string()),
            "assigned" | "agent" => Ok(task.assigned.clone().unwrap_or_else(|| "none".into())),
            "failure_reason" => Ok(task.failure_reason.clone().unwrap_or_else(|| "none".into())),
            "log" => Ok(task.log.iter().map(|entry| entry.message.as_str()).collect::<Vec<_>>().join("\n")),
            _ => Err(format!("tasks have no field {field:?} ({})", TASK_FIELDS.join(", "))),
        };
    }
    if let Some(agent) = state.registry.agent(subject) {
        return match field {
            "status" => Ok(agent.status.to_string()),
            "task" => Ok(agent.task_id.clone()),
            _ => Err(format!("agents have no field {field:?} ({})", AGENT_FIELDS.join(", "))),
        };
    }
    Err(format!("no task or agent {subject:?}"))
}

/// A one-line summary of what a commit changed, for timelines.
pub fn describe_diff(before: &State, after: &State) -> String {
    let mut parts = Vec::new();
    for task in after.graph.tasks() {
        let Some(old) = before.graph.task(&task.id) else {
            parts.push(format!("+task {}", task.id));
            continue;
        };
        let mut changes = Vec::new();
        if old.status != task.status {
            changes.push(format!("{}->{}", old.status, task.status));
        }
        if old.assigned != task.assigned {
            changes.push(format!("assigned {:?}->{:?}", old.assigned, task.assigned));
        }
        if old.retry_count != task.retry_count {
            changes.push(format!("retry_count {}->{}", old.retry_count, task.retry_count));
        }
        if let Some(entry) = task.log.get(old.log.len()) {
            changes.push(format!("log {:?}", entry.message));
        }
        if !changes.is_empty() {
            parts.push(format!("{}: {}", task.id, changes.join(", ")));
        }
    }
    for agent in after.registry.agents() {
        match before.registry.agent(&agent.id) {
            None => parts.push(format!("+{} ({})", agent.id, agent.status)),
            Some(old) if old.status != agent.status || old.pid != agent.pid => parts
                .push(format!("{}: {} pid {} -> {} pid {}", agent.id, old.status, old.pid, agent.status, agent.pid)),
            Some(old) if old.stop_requested != agent.stop_requested => {
                parts.push(format!("{}: stop requested {:?}", agent.id, agent.stop_requested.as_ref().map(|s| &s.by)))
            }
            Some(_) => {}
        }
    }
    if parts.is_empty() {
        "(no visible change)".into()
    } else {
        parts.join("; ")
    }
}
