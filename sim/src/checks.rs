//! The invariants as the simulator applies them. Each is defined once, in
//! `wg_core::invariants` (docs/invariants.md); this module only decides when each is checked and
//! on what the simulator sees. It reads what the world records and shows (`crate::world`'s
//! records and port states), never the world itself: the executor hands them over.
//!
//! Per record, in the order the world made them ([`on_record`]): a commit (the state before
//! and after, and who wrote): S3 (each task's transition, and one raise per command), S4, S5
//! (for commands), S8; a write that did not read back: S8; a signal delivery: S2; a retry that
//! returned: S7. After every step (the committed state outside any transaction, plus the process
//! table): S1, S6. At the end of the liveness phase: L1, L2, S3 over the whole run (every raise
//! has its log entry), every step fired, and the scenario's expectations.

use crate::scenario::{ExpectOp, Expectation, FaultKind, Step, Trigger, AGENT_FIELDS, TASK_FIELDS};
use crate::world::clock::{ClockState, Timer};
use crate::world::processes::{Proc, ProcKind, ProcessTable};
use crate::world::record::{CommitRecord, Record, RetryRecord, SignalRecord};
use crate::world::{ActorKind, ActorSlot};
use std::collections::{BTreeMap, BTreeSet};
use wg_core::invariants::{self, AgentProcess, AgentSeen, LivenessView, Violation};
use wg_core::model::Agent;
use wg_core::ops::RetryOutcome;
use wg_core::ports::State;
use wg_core::settings::Settings;

/// What every commit is compared with (S8): the run's initial files.
#[derive(Clone, Copy)]
pub struct Initial<'a> {
    pub state: &'a State,
    pub graph_lines: usize,
}

/// The checks one record calls for. `actors` are the run's actor slots (a command's raises are
/// counted in its slot).
pub fn on_record(record: &Record, initial: Initial<'_>, actors: &mut [ActorSlot]) -> Vec<Violation> {
    match record {
        Record::Commit(commit) => on_commit(commit, initial, &mut actors[commit.actor].raised),
        Record::Signal(delivery) => on_signal(delivery).into_iter().collect(),
        Record::Retry(returned) => on_retry(returned).into_iter().collect(),
        // S8: what we write, the next reader reads back.
        Record::Unreadable(what) => vec![Violation { invariant: "S8", detail: what.clone() }],
    }
}

/// S3, S4, S5 and S8 for one commit; `raised` counts, per task, the attempt-counter raises the
/// committing actor's commits made so far.
fn on_commit(commit: &CommitRecord, initial: Initial<'_>, raised: &mut BTreeMap<String, u32>) -> Vec<Violation> {
    let (before, after, kind) = (&*commit.before, &*commit.after, commit.kind);
    let mut found: Vec<Violation> = Vec::new();
    // A task the commit left as it was has nothing to check for S3 and S4.
    let mut done_changed = Vec::new();
    for (old, task) in commit.changed_tasks() {
        let Some(old) = old else { continue };
        found.extend(invariants::check_attempt_transition(old, task));
        if task.retry_count > old.retry_count && kind == ActorKind::Cli {
            let count = raised.entry(task.id.clone()).or_insert(0);
            *count += 1;
            found.extend(invariants::check_raises_by_one_command(&task.id, *count));
        }
        done_changed.extend(invariants::check_task_done_stays_done(old, task));
    }
    // After every S3 finding, as when S4 was checked over the whole graph.
    found.append(&mut done_changed);
    if kind == ActorKind::Cli {
        found.extend(invariants::check_companions_unchanged(before, after));
    }
    found.extend(invariants::check_unknown_fields_survive(initial.state, after));
    if commit.graph_lines < initial.graph_lines {
        // S8 on the file itself: lines of kinds we do not know are written back too.
        found.push(Violation { invariant: "S8", detail: "graph.jsonl lost lines".into() });
    }
    found
}

/// S2: the process a signal hit is the one it was meant for, or of its tree.
fn on_signal(delivery: &SignalRecord) -> Option<Violation> {
    let SignalRecord { signal, intended, pid, kind, start_ticks, root } = delivery;
    let target = format!("pid {pid} ({kind:?}, start ticks {start_ticks})");
    invariants::check_signal_delivery(&format!("{signal:?}"), intended, &target, *root)
}

/// S7: a retry that changed the task left exactly one log entry, with its reason; one that
/// found nothing to do (`AlreadyOpen`, `InFlight`) left none: an idempotent no-op is not a
/// retry and writes nothing (intended).
fn on_retry(returned: &RetryRecord) -> Option<Violation> {
    let RetryRecord { actor_name: name, task_id, reason, outcome, state } = returned;
    let acted = !matches!(outcome, RetryOutcome::AlreadyOpen | RetryOutcome::InFlight { .. });
    let entries: Vec<&str> = state
        .graph
        .task(task_id)
        .map(|task| task.log.iter().filter(|entry| entry.user == *name).map(|entry| entry.message.as_str()).collect())
        .unwrap_or_default();
    let check = |command: &str| invariants::check_retry_logged(command, task_id, reason, acted, &entries);
    // The command's text only goes into the violation's message: built when there is one.
    check("").map(|_| check(&format!("{name} ({outcome:?})")).expect("the same check fails again"))
}

/// The agent processes of the process table, for S1 (`running_only`: released from their
/// spawn gate) and L2 (all of them).
fn agent_processes(processes: &ProcessTable, running_only: bool) -> Vec<AgentProcess<'_>> {
    processes
        .procs
        .values()
        .filter(|proc| !running_only || proc.gate.is_none())
        .filter_map(|proc: &Proc| match &proc.kind {
            ProcKind::Agent { agent_id, task_id } => Some(AgentProcess { agent_id, task_id, pid: proc.pid }),
            _ => None,
        })
        .collect()
}

/// S1 on the process table and S6 on the committed state, after a step that changed the world;
/// `committed` is `None` when the committed state is the one checked last. S6 depends on that
/// state alone, and a run ends at its first violation, so a state that passed once passes again.
pub fn after_step(processes: &ProcessTable, committed: Option<&State>) -> Vec<Violation> {
    let mut found = invariants::check_one_agent_per_task(agent_processes(processes, true));
    found.extend(committed.map(invariants::check_agreement).unwrap_or_default());
    found
}

/// What the end checks look at: the world at the end of the liveness phase.
pub struct EndView<'a> {
    pub processes: &'a ProcessTable,
    pub committed: &'a State,
    pub now_ms: i64,
    /// The agents whose retries completed (L2: they are stopped).
    pub retried_agents: &'a [String],
    pub initial: &'a State,
    pub settings: &'a Settings,
    pub service_runs: bool,
}

/// L1, L2 and S3 over the whole run, at the end of the liveness phase.
pub fn at_end(end: &EndView<'_>) -> Vec<Violation> {
    let processes = agent_processes(end.processes, false);
    let seen = |agent: &Agent| match processes.iter().any(|process| process.agent_id == agent.id) {
        true => AgentSeen::Alive,
        false => AgentSeen::Gone { since_ms: end.processes.agent_exits_ms.get(&agent.id).copied() },
    };
    let view = LivenessView {
        state: end.committed,
        seen: &seen,
        service: end.service_runs.then_some(end.settings.max_agents),
        now_ms: end.now_ms,
        // A sweep to notice, then a tick to dispatch; both loops run every poll interval.
        reaction_ms: 2 * end.settings.poll_interval_ms as i64,
    };
    let mut found = invariants::check_recovered(&view);
    let retried = end.retried_agents.iter().map(String::as_str);
    found.extend(invariants::check_stopped(end.committed, retried, processes.iter().copied()));
    found.extend(invariants::check_attempts_logged(end.initial, end.committed));
    found
}

/// Whether the dispatcher could start `task` now or once its crash-loop backoff is over.
pub fn could_be_ready(state: &State, task: &wg_core::model::Task) -> bool {
    wg_core::ops::is_ready(state, task, i64::MAX)
}

/// Each step fired: its time came, or its event happened and its delay passed. A step that never
/// did is a mistake of the scenario (an event that cannot happen, a time past the run's end) or
/// a run that went elsewhere; a step may name the faults that excuse it (`unless`), as an
/// expectation does.
pub fn steps_never_fired(
    clock: &ClockState,
    fired: &BTreeSet<usize>,
    steps: &[Step],
    injected: &BTreeSet<FaultKind>,
) -> Vec<Violation> {
    let pending: BTreeSet<usize> = clock
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
            let waits_for_event = matches!(step.trigger, Trigger::On { .. }) && !fired.contains(index);
            (waits_for_event || pending.contains(index)) && !step.unless.iter().any(|kind| injected.contains(kind))
        })
        .map(|(_, step)| Violation {
            invariant: "step-never-fired",
            detail: match &step.trigger {
                Trigger::On { event, .. } => format!("`{}`: its event `{event}` never happened", step.text),
                Trigger::At { at_ms } => format!("`{}`: the run ended before its time ({at_ms} ms)", step.text),
            },
        })
        .collect()
}

/// The scenario's own expectations, against the final state.
pub fn expectations<'a>(state: &State, list: impl IntoIterator<Item = &'a Expectation>) -> Vec<Violation> {
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
            (!holds)
                .then(|| Violation { invariant: "expect", detail: format!("{} (actual: {shown})", expectation.text) })
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
