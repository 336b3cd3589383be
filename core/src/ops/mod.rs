//! The operations, written once against the ports (docs/design.md, Transactions).
//!
//! Each decision taken outside a transaction is re-checked inside the transaction that acts on
//! it: a transition names the status and the agent it expects, and does nothing if it finds
//! anything else. That is what lets retry, kill, reaper and dispatcher run at the same time.

// First: the `planted!` hook it defines is used by the modules below.
#[macro_use]
mod planted;
mod dispatcher;
#[cfg(test)]
mod fake;
mod kill;
mod reaper;
mod retry;
mod stop;
mod tasks;

pub use dispatcher::{backoff_until, dispatch, is_ready, Dispatched};
pub use kill::{kill_agent, KillOutcome};
pub use reaper::{reap, DeathCause, Reaped};
pub use retry::{retry, RetryOutcome};
pub use stop::{stop_process, StopOptions, StopResult};
pub use tasks::{add_task, fail_task, finish_task, heartbeat, recover, slug, NewTask, RecoverPlan};

use crate::model::{AgentStatus, Task, TaskStatus};
use crate::ports::{State, StoreError};
use crate::time::format_rfc3339;
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpError {
    Store(StoreError),
    UnknownTask(String),
    UnknownAgent(String),
    /// The request makes no sense for the state found; the message says why and what to do.
    Refused(String),
    /// SIGKILL was sent and the process still did not exit (uninterruptible sleep, most likely).
    WillNotDie {
        agent_id: String,
        pid: i64,
    },
}

impl From<StoreError> for OpError {
    fn from(error: StoreError) -> Self {
        OpError::Store(error)
    }
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpError::Store(error) => write!(f, "{error}"),
            OpError::UnknownTask(id) => write!(f, "no task {id:?} in the graph (see `wg list`)"),
            OpError::UnknownAgent(id) => write!(f, "no agent {id:?} in the registry (see `wg agents`)"),
            OpError::Refused(message) => f.write_str(message),
            OpError::WillNotDie { agent_id, pid } => write!(
                f,
                "{agent_id} (pid {pid}) did not exit after SIGKILL; it is probably stuck in the kernel \
                 (state D in /proc/{pid}/stat); the registry entry was left as it was"
            ),
        }
    }
}

impl std::error::Error for OpError {}

/// Puts an in-progress task back to open after its agent ended: the one re-queue rule that
/// retry, reaper and recover share. Raises the attempt counter exactly once (S3), and marks its
/// log entry with the count it raised it to, so the log accounts for every raise.
fn requeue(task: &mut Task, now_ms: i64, actor: &str, message: String) {
    assert!(task.status != TaskStatus::Done, "a done task is never re-opened (S4): {}", task.id);
    task.status = TaskStatus::Open;
    task.assigned = None;
    task.failure_reason = None;
    task.retry_count += 1;
    let message = format!("{message}{}", attempt_mark(task.retry_count));
    task.push_log(now_ms, actor, message);
}

/// The end of the log entry of a re-queue that raised the attempt counter to `retry_count`.
fn attempt_mark(retry_count: u32) -> String {
    format!(" (attempt {retry_count})")
}

/// The count a log entry says its re-queue raised the attempt counter to, if it is a re-queue's.
pub fn attempt_marked(message: &str) -> Option<u32> {
    let count = message.strip_suffix(')')?.rsplit_once(" (attempt ")?.1.parse().ok()?;
    (message.ends_with(&attempt_mark(count))).then_some(count)
}

/// Marks a registry entry ended, if it still names `pid` and still counts as running. The
/// final status follows the task: `done`/`failed` when the agent finished it, `dead` otherwise.
fn mark_agent_ended(state: &mut State, agent_id: &str, pid: i64, now_ms: i64) -> bool {
    let task_status = state
        .registry
        .agent(agent_id)
        .and_then(|agent| state.graph.task(&agent.task_id))
        .map(|task| task.status.clone());
    let Some(agent) = state.registry.agent(agent_id) else { return false };
    if agent.pid != pid || !agent.status.is_running() {
        return false;
    }
    let agent = state.registry.agent_mut(agent_id).expect("checked above");
    agent.status = match task_status {
        Some(TaskStatus::Done) => AgentStatus::Done,
        Some(TaskStatus::Failed) => AgentStatus::Failed,
        _ => AgentStatus::Dead,
    };
    agent.completed_at = Some(format_rfc3339(now_ms));
    // `stop_requested` stays: it records who ended the agent, so the reaper does not count a
    // requested stop as a crash when it settles the task later.
    true
}

/// Whether `task` is still the in-progress task of `agent_id`: the condition every recovery
/// transition checks inside its transaction.
fn still_running_for(task: &Task, agent_id: &str) -> bool {
    task.status == TaskStatus::InProgress && task.assigned.as_deref() == Some(agent_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Graph;
    use crate::registry::Registry;

    fn state(task_status: &str, agent_status: &str) -> State {
        let graph = format!(r#"{{"kind":"task","id":"t1","status":"{task_status}","assigned":"agent-1"}}"#);
        let registry = format!(
            r#"{{"agents":{{"agent-1":{{"id":"agent-1","pid":7,"task_id":"t1","started_at":"x","status":"{agent_status}"}}}},"next_agent_id":2}}"#
        );
        State {
            graph: Graph::parse(graph.as_bytes()).unwrap(),
            registry: Registry::parse(registry.as_bytes()).unwrap(),
        }
    }

    fn agent_status(state: &State) -> String {
        state.registry.agent("agent-1").unwrap().status.to_string()
    }

    #[test]
    fn an_ended_entry_takes_the_status_its_task_ended_with() {
        for (task_status, ended) in [("done", "done"), ("failed", "failed"), ("in-progress", "dead"), ("open", "dead")]
        {
            let mut state = state(task_status, "working");
            assert!(mark_agent_ended(&mut state, "agent-1", 7, 1_000));
            assert_eq!(agent_status(&state), ended, "task {task_status}");
            assert!(state.registry.agent("agent-1").unwrap().completed_at.is_some());
        }
    }

    #[test]
    fn only_a_running_entry_that_still_names_the_pid_is_marked_ended() {
        let mut other_pid = state("in-progress", "working");
        assert!(!mark_agent_ended(&mut other_pid, "agent-1", 8, 1_000));
        assert_eq!(agent_status(&other_pid), "working");
        let mut already_ended = state("open", "done");
        assert!(!mark_agent_ended(&mut already_ended, "agent-1", 7, 1_000));
        assert_eq!(agent_status(&already_ended), "done", "an ended entry keeps how it ended");
        assert_eq!(already_ended.registry.agent("agent-1").unwrap().completed_at, None);
    }

    #[test]
    fn an_error_says_what_went_wrong_and_what_to_do_next() {
        let shown = |error: OpError| error.to_string();
        assert_eq!(shown(OpError::UnknownTask("t9".into())), "no task \"t9\" in the graph (see `wg list`)");
        assert_eq!(
            shown(OpError::UnknownAgent("agent-9".into())),
            "no agent \"agent-9\" in the registry (see `wg agents`)"
        );
        assert_eq!(shown(OpError::Refused("t1 is done".into())), "t1 is done");
        assert_eq!(shown(OpError::Store(StoreError::Io("disk full".into()))), "disk full");
        let stuck = shown(OpError::WillNotDie { agent_id: "agent-3".into(), pid: 4242 });
        assert!(stuck.starts_with("agent-3 (pid 4242) did not exit after SIGKILL"), "{stuck}");
        assert!(stuck.contains("/proc/4242/stat"), "{stuck}");
    }

    // The shared re-queue rule and the ownership condition.

    fn task(status: TaskStatus, assigned: Option<&str>) -> Task {
        let mut task = Task::new("t1", "t1");
        task.status = status;
        task.assigned = assigned.map(str::to_string);
        task
    }

    #[test]
    fn a_requeue_opens_unassigns_clears_the_failure_and_counts_one_attempt_in_its_log_entry() {
        let mut failed = task(TaskStatus::Failed, Some("agent-1"));
        failed.retry_count = 4;
        failed.failure_reason = Some("exit code 2".into());
        failed.tags = vec!["nightly".into()];
        let mut expected = failed.clone();
        requeue(&mut failed, 1_000, "reaper", "agent-1 ended".into());
        expected.status = TaskStatus::Open;
        expected.assigned = None;
        expected.failure_reason = None;
        expected.retry_count = 5;
        expected.push_log(1_000, "reaper", "agent-1 ended (attempt 5)".into());
        assert_eq!(failed, expected);
        assert_eq!(attempt_marked(&failed.log[0].message), Some(5));
    }

    #[test]
    #[should_panic(expected = "a done task is never re-opened (S4): t1")]
    fn a_requeue_of_a_done_task_is_a_broken_invariant() {
        requeue(&mut task(TaskStatus::Done, None), 1_000, "reaper", "x".into());
    }

    #[test]
    fn only_a_log_entry_ending_in_a_well_formed_attempt_mark_counts_as_a_requeue() {
        assert_eq!(attempt_marked("Retried: hung (attempt 3)"), Some(3));
        assert_eq!(attempt_marked("Retried: a (attempt 1) b (attempt 12)"), Some(12));
        for message in [
            "Retried: hung",
            "Retried (attempt 3) later",
            "x (attempt 03)",
            "x (attempt -1)",
            "x(attempt 3)",
            "x (attempt )",
        ] {
            assert_eq!(attempt_marked(message), None, "{message:?}");
        }
    }

    #[test]
    fn a_task_is_still_an_agents_only_while_in_progress_and_assigned_to_it() {
        assert!(still_running_for(&task(TaskStatus::InProgress, Some("agent-1")), "agent-1"));
        assert!(!still_running_for(&task(TaskStatus::InProgress, Some("agent-2")), "agent-1"));
        assert!(!still_running_for(&task(TaskStatus::InProgress, None), "agent-1"));
        assert!(!still_running_for(&task(TaskStatus::Open, Some("agent-1")), "agent-1"));
        assert!(!still_running_for(&task(TaskStatus::Done, Some("agent-1")), "agent-1"));
    }

    #[test]
    fn an_entry_that_is_not_in_the_registry_is_not_marked_ended() {
        let mut state = state("in-progress", "working");
        let before = state.clone();
        assert!(!mark_agent_ended(&mut state, "agent-9", 7, 1_000));
        assert_eq!(state, before);
    }
}
