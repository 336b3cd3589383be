//! The invariants of DESIGN.md as the simulator checks them.
//!
//! Per commit (it sees the state before and after, and who wrote): S3, S4, S5, S8. After every
//! step (the committed state outside any transaction, plus the process table): S1, S6. S2 is
//! checked at each signal delivery (world.rs), S7 when a retry returns (actors.rs). L1 and L2,
//! and the scenario's expectations, at the end of the liveness phase.
//!
//! S7 as checked ("every retry leaves one log entry on its task, with its reason"): a retry that
//! changed the task (re-queued it, stopped its agent, or found it finished meanwhile) leaves
//! exactly one entry by that command, containing its reason. A retry that did nothing (the task
//! was already open: `AlreadyOpen`; another retry is stopping its agent: `InFlight`) leaves *no*
//! entry, and one would be a violation: an idempotent no-op is not a retry, and the retry in
//! flight writes the one entry. This is intended, not a gap in the checker.

use crate::scenario::{ExpectOp, Expectation};
use crate::world::{ActorKind, Inner, ProcKind, Violation};
use std::collections::BTreeMap;
use wg_core::model::{Task, TaskStatus};
use wg_core::ports::State;
use wg_core::settings::Settings;

pub struct CommitCheck<'a> {
    pub before: &'a State,
    pub after: &'a State,
    pub initial: &'a State,
    /// Lines of the graph file as written by this commit, and as the run started.
    pub graph_lines: usize,
    pub initial_graph_lines: usize,
}

fn violation(checker: &str, detail: String) -> Violation {
    Violation { checker: checker.to_string(), detail }
}

/// S3, S4, S5 and S8 for one commit by an actor of `kind`; `raised` counts, per task, the
/// attempt-counter raises this actor's commits made so far.
pub fn on_commit(check: &CommitCheck, kind: ActorKind, raised: &mut BTreeMap<String, u32>) -> Vec<Violation> {
    let mut found = Vec::new();
    for after in check.after.graph.tasks() {
        let Some(before) = check.before.graph.task(&after.id) else { continue };
        check_attempts(before, after, kind, raised, &mut found);
        if before.status == TaskStatus::Done && (after.status != TaskStatus::Done || after.assigned != before.assigned)
        {
            let detail = format!("{} was done and became {} (assigned {:?})", after.id, after.status, after.assigned);
            found.push(violation("S4", detail));
        }
        if after.is_companion() && kind == ActorKind::Cli && before != after {
            found.push(violation("S5", format!("companion {} was changed by a command", after.id)));
        }
    }
    check_unknown_fields_survive(check, &mut found);
    found
}

/// S3: a re-queue raises the counter by exactly one, nothing else raises it, and one command
/// invocation raises it once at most.
fn check_attempts(
    before: &Task,
    after: &Task,
    kind: ActorKind,
    raised: &mut BTreeMap<String, u32>,
    found: &mut Vec<Violation>,
) {
    let delta = i64::from(after.retry_count) - i64::from(before.retry_count);
    let requeued = after.status == TaskStatus::Open && before.status != TaskStatus::Open;
    let id = &after.id;
    match (delta, requeued) {
        (0, false) | (1, true) => {}
        (0, true) => {
            found.push(violation("S3", format!("{id} was re-queued ({} -> open) without counting it", before.status)))
        }
        (1, false) => found.push(violation(
            "S3",
            format!(
                "{id}'s retry_count rose {} -> {} without a re-queue ({} -> {})",
                before.retry_count, after.retry_count, before.status, after.status
            ),
        )),
        _ => found
            .push(violation("S3", format!("{id}'s retry_count went {} -> {}", before.retry_count, after.retry_count))),
    }
    if delta > 0 && kind == ActorKind::Cli {
        let count = raised.entry(id.clone()).or_insert(0);
        *count += 1;
        if *count > 1 {
            found.push(violation("S3", format!("one command raised {id}'s retry_count {count} times")));
        }
    }
}

/// S8: fields and lines another tool wrote survive our writes.
fn check_unknown_fields_survive(check: &CommitCheck, found: &mut Vec<Violation>) {
    let (initial, after) = (check.initial, check.after);
    for task in initial.graph.tasks() {
        let Some(now) = after.graph.task(&task.id) else {
            found.push(violation("S8", format!("task {} disappeared", task.id)));
            continue;
        };
        for (key, value) in &task.extra {
            if now.extra.get(key) != Some(value) {
                found.push(violation("S8", format!("{}'s unknown field {key:?} was lost or changed", task.id)));
            }
        }
    }
    if check.graph_lines < check.initial_graph_lines {
        found.push(violation("S8", "graph.jsonl lost lines".into()));
    }
}

/// S1 and S6 on the committed state and the process table.
pub fn after_step(inner: &Inner) -> Vec<Violation> {
    let mut found = Vec::new();
    let mut live_per_task: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for proc in inner.procs.values() {
        // A process still held at its spawn gate runs nothing: it is not an agent at work (yet).
        if let (ProcKind::Agent { agent_id, task_id }, None) = (&proc.kind, &proc.gate) {
            live_per_task.entry(task_id).or_default().push(agent_id);
        }
    }
    for (task_id, agents) in &live_per_task {
        if agents.len() > 1 {
            found.push(violation(
                "S1",
                format!("{task_id} has {} live agent processes: {}", agents.len(), agents.join(", ")),
            ));
        }
    }
    // S6, as the core states it over one state.
    let disagreements = wg_core::invariants::check_agreement(&inner.committed);
    found.extend(disagreements.into_iter().map(|broken| violation(broken.invariant, broken.detail)));
    found
}

/// L1 and L2 at the end of the liveness phase.
pub fn at_end(inner: &Inner, settings: &Settings, service_runs: bool) -> Vec<Violation> {
    let mut found = Vec::new();
    let state = &inner.committed;
    let live_agent = |agent_id: &str| {
        inner.procs.values().any(|proc| matches!(&proc.kind, ProcKind::Agent { agent_id: id, .. } if id == agent_id))
    };
    let running = state.registry.agents().filter(|agent| agent.status.is_running()).count();
    for task in state.graph.tasks() {
        if task.status == TaskStatus::InProgress {
            if let Some(agent) = task.assigned.as_deref().filter(|agent| !live_agent(agent)) {
                found.push(violation(
                    "L1",
                    format!("{} is still in-progress for {agent}, whose process is gone", task.id),
                ));
            }
        }
        let ready = is_ready(state, task, inner.now_ms);
        if service_runs && ready && running < settings.max_agents {
            found.push(violation("L1", format!("{} is ready but no agent was dispatched for it", task.id)));
        }
    }
    for agent_id in &inner.retried_agents {
        if live_agent(agent_id) {
            found.push(violation("L2", format!("{agent_id} still runs after its task was retried")));
        }
    }
    for proc in inner.procs.values() {
        let ProcKind::Agent { agent_id, .. } = &proc.kind else { continue };
        let entry_runs = state.registry.agent(agent_id).is_some_and(|agent| agent.status.is_running());
        if !entry_runs {
            found.push(violation("L2", format!("{agent_id} (pid {}) runs but its entry is not running", proc.pid)));
        }
    }
    found
}

/// The dispatcher's readiness rule, restated (the core keeps its own private): open, runnable,
/// not paused, not backing off, dependencies done.
fn is_ready(state: &State, task: &Task, now_ms: i64) -> bool {
    let runnable = task.exec.as_deref().is_some_and(|exec| !exec.trim().is_empty());
    let paused = task.extra.get("paused").and_then(|value| value.as_bool()) == Some(true);
    let backing_off = task.crash_loop.as_ref().and_then(|c| c.not_before_ms).is_some_and(|at| at > now_ms);
    let dependencies_done =
        task.after.iter().all(|dep| state.graph.task(dep).is_some_and(|dep| dep.status == TaskStatus::Done));
    task.status == TaskStatus::Open && runnable && !paused && !backing_off && dependencies_done
}

/// Whether the dispatcher could start `task` now or once its crash-loop backoff is over.
pub fn could_be_ready(state: &State, task: &Task) -> bool {
    is_ready(state, task, i64::MAX)
}

/// The scenario's own expectations, against the final state.
pub fn expectations(state: &State, list: &[Expectation]) -> Vec<Violation> {
    list.iter()
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
            (!holds).then(|| violation("expect", format!("{} (actual: {shown})", expectation.text)))
        })
        .collect()
}

fn field_value(state: &State, subject: &str, field: &str) -> Result<String, String> {
    if let Some(task) = state.graph.task(subject) {
        return match field {
            "status" => Ok(task.status.to_string()),
            "retry_count" => Ok(task.retry_count.to_string()),
            "assigned" | "agent" => Ok(task.assigned.clone().unwrap_or_else(|| "none".into())),
            "failure_reason" => Ok(task.failure_reason.clone().unwrap_or_else(|| "none".into())),
            "log" => Ok(task.log.iter().map(|entry| entry.message.as_str()).collect::<Vec<_>>().join("\n")),
            _ => Err(format!("tasks have no field {field:?} (status, retry_count, assigned, failure_reason, log)")),
        };
    }
    if let Some(agent) = state.registry.agent(subject) {
        return match field {
            "status" => Ok(agent.status.to_string()),
            "task" => Ok(agent.task_id.clone()),
            _ => Err(format!("agents have no field {field:?} (status, task)")),
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
