//! The invariants S1-S8 and L1-L2 (docs/invariants.md), each defined once, as pure functions over
//! the state of graph and registry and, where one is needed, a small view of the processes.
//!
//! The simulator calls them after every step (it sees every commit and every signal); the smoke
//! runner calls the same functions on what the files and `/proc` show during and after a real
//! run. A state that both can see gets the same verdict from the same function. What an observer
//! cannot see (the smoke runner does not see each commit, nor whom a signal was meant for) it
//! does not check, and says so.

use crate::model::{Agent, Task, TaskStatus};
use crate::ops::{attempt_marked, is_ready};
use crate::ports::State;
use crate::time::parse_rfc3339;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// `S1`..`S8`, `L1`, `L2`.
    pub invariant: &'static str,
    pub detail: String,
}

fn violation(invariant: &'static str, detail: String) -> Violation {
    Violation { invariant, detail }
}

/// An agent process as an observer sees it (S1 counts only those running their command, not
/// those held at their spawn gate; L2 counts every one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AgentProcess<'a> {
    pub agent_id: &'a str,
    pub task_id: &'a str,
    pub pid: i64,
}

/// S1: at most one live agent process per task.
pub fn check_one_agent_per_task<'a>(running: impl IntoIterator<Item = AgentProcess<'a>>) -> Vec<Violation> {
    // Checked after every step of every simulated run: the processes are grouped as they are
    // (borrowed), and words are put only to a violation.
    let mut by_task: Vec<AgentProcess<'a>> = running.into_iter().collect();
    // Stable: a task's agents stay in the order they came.
    by_task.sort_by_key(|agent| agent.task_id);
    by_task
        .chunk_by(|one, other| one.task_id == other.task_id)
        .filter(|agents| agents.len() > 1)
        .map(|agents| {
            let listed: Vec<String> =
                agents.iter().map(|agent| format!("{} (pid {})", agent.agent_id, agent.pid)).collect();
            let task_id = agents[0].task_id;
            violation("S1", format!("{task_id} has {} live agent processes: {}", agents.len(), listed.join(", ")))
        })
        .collect()
}

/// S2: a signal reached `target` (a process of the tree rooted at `target_tree`, or of none),
/// which must be the tree the signaller meant. The rule is [`crate::identity::signal_was_meant`].
pub fn check_signal_delivery(
    signal: &str,
    intended: &crate::model::ProcessRef,
    target: &str,
    target_tree: Option<(i64, u64)>,
) -> Option<Violation> {
    if crate::identity::signal_was_meant(intended, target_tree) {
        return None;
    }
    let meant = format!("pid {} (start ticks {:?})", intended.pid, intended.start_ticks);
    Some(violation("S2", format!("{signal} meant for {meant} hit {target}")))
}

/// S3, one transition of one task (consecutive committed states): a re-queue raises the attempt
/// counter by exactly one, and nothing else raises it (or lowers it).
pub fn check_attempt_transition(before: &Task, after: &Task) -> Option<Violation> {
    let delta = i64::from(after.retry_count) - i64::from(before.retry_count);
    let requeued = after.status == TaskStatus::Open && before.status != TaskStatus::Open;
    let id = &after.id;
    let detail = match (delta, requeued) {
        (0, false) | (1, true) => return None,
        (0, true) => format!("{id} was re-queued ({} -> open) without counting it", before.status),
        (1, false) => format!(
            "{id}'s retry_count rose {} -> {} without a re-queue ({} -> {})",
            before.retry_count, after.retry_count, before.status, after.status
        ),
        _ => format!("{id}'s retry_count went {} -> {}", before.retry_count, after.retry_count),
    };
    Some(violation("S3", detail))
}

/// S3, per command: one invocation (one recovery event) raises a task's counter once at most.
pub fn check_raises_by_one_command(task_id: &str, raises: u32) -> Option<Violation> {
    (raises > 1).then(|| violation("S3", format!("one command raised {task_id}'s retry_count {raises} times")))
}

/// S3 over a whole history, as one state shows it: since `initial`, each task's attempt counter
/// rose by exactly the number of re-queue entries added to its log (each re-queue marks its
/// entry with the count it raised the counter to), and the last mark is the counter.
pub fn check_attempts_logged(initial: &State, now: &State) -> Vec<Violation> {
    let mut found = Vec::new();
    for task in now.graph.tasks() {
        let (initial_count, initial_entries) =
            initial.graph.task(&task.id).map_or((0, 0), |task| (task.retry_count, task.log.len()));
        let marks: Vec<u32> =
            task.log.iter().skip(initial_entries).filter_map(|entry| attempt_marked(&entry.message)).collect();
        let raised = i64::from(task.retry_count) - i64::from(initial_count);
        let last_agrees = marks.last().is_none_or(|last| *last == task.retry_count);
        if raised != marks.len() as i64 || !last_agrees {
            found.push(violation(
                "S3",
                format!(
                    "{}'s retry_count went {initial_count} -> {} but its log has {} re-queue entries since \
                     (marked {marks:?})",
                    task.id,
                    task.retry_count,
                    marks.len()
                ),
            ));
        }
    }
    found
}

/// S4: a task that was done stays done, with the same agent, whoever wrote in between.
pub fn check_done_stays_done(before: &State, after: &State) -> Vec<Violation> {
    after.graph.tasks().filter_map(|task| check_task_done_stays_done(before.graph.task(&task.id)?, task)).collect()
}

/// S4 for one task, as it `was` and as it is `now`: for an observer that knows which tasks
/// changed (the simulator sees each commit), as a task left unchanged keeps S4.
pub fn check_task_done_stays_done(was: &Task, now: &Task) -> Option<Violation> {
    let kept = was.status != TaskStatus::Done || (now.status == TaskStatus::Done && now.assigned == was.assigned);
    (!kept).then(|| {
        violation("S4", format!("{} was done and became {} (assigned {:?})", now.id, now.status, now.assigned))
    })
}

/// S5: the `.evaluate-*` / `.flip-*` companions are unchanged between two states (the caller
/// picks states between which only retry and kill wrote, or no writer may change them).
pub fn check_companions_unchanged(before: &State, after: &State) -> Vec<Violation> {
    before
        .graph
        .tasks()
        .filter(|task| task.is_companion())
        .filter_map(|was| {
            let now = after.graph.task(&was.id);
            let detail = match now {
                None => format!("companion {} disappeared", was.id),
                Some(now) if now != was => {
                    format!("companion {} was changed ({} -> {})", was.id, was.status, now.status)
                }
                Some(_) => return None,
            };
            Some(violation("S5", detail))
        })
        .collect()
}

/// S6 over one committed state: graph and registry agree.
///
/// - A running entry's task is assigned to it (in progress, or finished by it: done or failed
///   before the reaper settled the entry).
/// - An in-progress task of ours is live or about to be reaped: its entry is running (the reaper
///   watches it) or has ended (the reaper's orphan sweep re-queues it); never the entry of another
///   task, and never nobody.
/// - A task assigned to a name the registry does not hold was claimed by a person or another tool
///   (upstream `wg claim --actor ...`): not ours, allowed. Whether a sweep really comes is L1's.
pub fn check_agreement(state: &State) -> Vec<Violation> {
    let mut found = Vec::new();
    for agent in state.registry.agents().filter(|agent| agent.status.is_running()) {
        let task = state.graph.task(&agent.task_id);
        let agrees = task.is_some_and(|task| {
            task.assigned.as_deref() == Some(agent.id.as_str())
                && matches!(task.status, TaskStatus::InProgress | TaskStatus::Done | TaskStatus::Failed)
        });
        if !agrees {
            let status =
                task.map_or("missing".to_string(), |task| format!("{} assigned {:?}", task.status, task.assigned));
            found.push(violation(
                "S6",
                format!("{} is {} but its task {} is {status}", agent.id, agent.status, agent.task_id),
            ));
        }
    }
    for task in state.graph.tasks().filter(|task| task.status == TaskStatus::InProgress) {
        let Some(assigned) = task.assigned.as_deref() else {
            found.push(violation(
                "S6",
                format!("{} is in-progress with nobody assigned: nothing will re-queue it", task.id),
            ));
            continue;
        };
        let Some(owner) = state.registry.agent(assigned) else { continue };
        if owner.task_id != task.id {
            let detail = format!(
                "{} is in-progress for {} whose entry is for {} ({}): nothing will re-queue it",
                task.id, owner.id, owner.task_id, owner.status
            );
            found.push(violation("S6", detail));
        }
    }
    found
}

/// S7: a retry that changed its task (`acted`) left exactly one log entry on it, containing its
/// reason; a retry that found nothing to do (already open, or another retry in flight) left
/// none. `entries` are the messages this retry wrote on the task.
pub fn check_retry_logged(
    command: &str,
    task_id: &str,
    reason: &str,
    acted: bool,
    entries: &[&str],
) -> Option<Violation> {
    let expected = usize::from(acted);
    let with_reason = entries.iter().filter(|message| message.contains(reason)).count();
    (entries.len() != expected || with_reason != expected).then(|| {
        violation(
            "S7",
            format!(
                "{command} left {} log entries on {task_id}, {with_reason} with its reason (expected {expected})",
                entries.len()
            ),
        )
    })
}

/// S8: no task and no field another tool wrote is lost or changed by our writes.
pub fn check_unknown_fields_survive(initial: &State, now: &State) -> Vec<Violation> {
    let mut found = Vec::new();
    for task in initial.graph.tasks() {
        let Some(kept) = now.graph.task(&task.id) else {
            found.push(violation("S8", format!("task {} disappeared", task.id)));
            continue;
        };
        for (key, value) in &task.extra {
            if kept.extra.get(key) != Some(value) {
                found.push(violation("S8", format!("{}'s unknown field {key:?} was lost or changed", task.id)));
            }
        }
    }
    for (key, value) in initial.registry.extra() {
        if now.registry.extra().get(key) != Some(value) {
            found.push(violation("S8", format!("the registry's unknown field {key:?} was lost or changed")));
        }
    }
    found
}

/// How an observer sees a registry entry's process at the end of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentSeen {
    Alive,
    /// Gone, since this time if the observer knows it.
    Gone {
        since_ms: Option<i64>,
    },
}

/// What the liveness checks need to know of the end of a run.
pub struct LivenessView<'a> {
    pub state: &'a State,
    pub seen: &'a dyn Fn(&Agent) -> AgentSeen,
    /// `max_agents`, when the service (reaper and dispatcher) runs. Without one, nothing promises
    /// recovery, and L1 has nothing to check.
    pub service: Option<usize>,
    pub now_ms: i64,
    /// How long the service may take to act on what it can see: a sweep to notice a death, a
    /// tick to start a ready task. A condition younger than this is not (yet) a violation.
    pub reaction_ms: i64,
}

/// L1 at the end of a run in which the service runs (it had time to recover from the faults): no task
/// of ours is still in progress for an agent whose process has been gone longer than the
/// service's reaction time, and no task has been ready that long while the dispatcher has room.
pub fn check_recovered(view: &LivenessView) -> Vec<Violation> {
    let Some(max_agents) = view.service else { return Vec::new() };
    let state = view.state;
    let too_old = |since_ms: i64| view.now_ms.saturating_sub(since_ms) > view.reaction_ms;
    let mut found = Vec::new();
    for task in state.graph.tasks().filter(|task| task.status == TaskStatus::InProgress) {
        let Some(agent) = task.assigned.as_deref().and_then(|id| state.registry.agent(id)) else { continue };
        if let AgentSeen::Gone { since_ms } = (view.seen)(agent) {
            if since_ms.is_none_or(too_old) {
                let detail = format!("{} is still in-progress for {}, whose process is gone", task.id, agent.id);
                found.push(violation("L1", detail));
            }
        }
    }
    let running = state.registry.agents().filter(|agent| agent.status.is_running()).count();
    let waiting = state
        .graph
        .tasks()
        .filter(|task| running < max_agents && is_ready(state, task, view.now_ms))
        .filter(|task| too_old(ready_since_ms(state, task)));
    for task in waiting {
        found.push(violation("L1", format!("{} is ready but no agent was dispatched for it", task.id)));
    }
    found
}

/// The latest moment a ready task can have become ready, as the state tells it: every change of
/// status logs an entry, a crash-loop backoff ends at `not_before`, a dependency's completion is
/// stamped. Never earlier than the truth, so a task found ready longer than that really was.
fn ready_since_ms(state: &State, task: &Task) -> i64 {
    let stamp = |text: Option<&str>| text.and_then(parse_rfc3339).unwrap_or(i64::MIN);
    let logged = stamp(task.log.last().map(|entry| entry.timestamp.as_str()));
    let backoff = task.crash_loop.as_ref().and_then(|crash_loop| crash_loop.not_before_ms).unwrap_or(i64::MIN);
    let dependencies = task
        .after
        .iter()
        .filter_map(|id| state.graph.task(id))
        .map(|dependency| stamp(dependency.completed_at.as_deref()))
        .max()
        .unwrap_or(i64::MIN);
    logged.max(backoff).max(dependencies)
}

/// L2, at the end: the agents stopped by a retry are gone, and no agent process runs whose entry
/// is not running (nothing would ever stop it).
pub fn check_stopped<'a>(
    state: &State,
    retried: impl IntoIterator<Item = &'a str>,
    running: impl IntoIterator<Item = AgentProcess<'a>> + Clone,
) -> Vec<Violation> {
    let mut found = Vec::new();
    for agent_id in retried {
        if running.clone().into_iter().any(|agent| agent.agent_id == agent_id) {
            found.push(violation("L2", format!("{agent_id} still runs after its task was retried")));
        }
    }
    for agent in running {
        let entry_runs = state.registry.agent(agent.agent_id).is_some_and(|entry| entry.status.is_running());
        if !entry_runs {
            found.push(violation(
                "L2",
                format!("{} (pid {}) runs but its entry is not running", agent.agent_id, agent.pid),
            ));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Graph;
    use crate::registry::Registry;

    fn state(graph: &str, registry: &str) -> State {
        State {
            graph: Graph::parse(graph.as_bytes()).unwrap(),
            registry: Registry::parse(registry.as_bytes()).unwrap(),
        }
    }

    const AGENT_1_ON_T1: &str = r#"{"agents":{"agent-1":{"id":"agent-1","pid":7,"task_id":"t1","started_at":"x","status":"working"}},"next_agent_id":2}"#;
    const NO_AGENTS: &str = r#"{"agents":{},"next_agent_id":1}"#;

    #[test]
    fn a_running_agent_and_its_in_progress_task_agree() {
        let graph = r#"{"kind":"task","id":"t1","status":"in-progress","assigned":"agent-1"}"#;
        assert_eq!(check_agreement(&state(graph, AGENT_1_ON_T1)), Vec::new());
    }

    #[test]
    fn a_running_agent_whose_task_was_reopened_breaks_s6() {
        let graph = r#"{"kind":"task","id":"t1","status":"open"}"#;
        let found = check_agreement(&state(graph, AGENT_1_ON_T1));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].invariant, "S6");
    }

    #[test]
    fn a_task_given_to_another_tasks_entry_or_to_nobody_breaks_s6_and_a_claim_without_entry_does_not() {
        let graph = concat!(
            r#"{"kind":"task","id":"t1","status":"in-progress","assigned":"agent-1"}"#,
            "\n",
            r#"{"kind":"task","id":"t2","status":"in-progress","assigned":"agent-1"}"#,
            "\n",
            r#"{"kind":"task","id":"t3","status":"in-progress","assigned":"a-person"}"#,
            "\n",
            r#"{"kind":"task","id":"t4","status":"in-progress"}"#
        );
        let found = check_agreement(&state(graph, AGENT_1_ON_T1));
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].detail.starts_with("t2 is in-progress for agent-1"), "{found:?}");
        assert!(found[1].detail.starts_with("t4 is in-progress with nobody"), "{found:?}");
    }

    #[test]
    fn two_running_agents_of_one_task_break_s1() {
        let one = AgentProcess { agent_id: "agent-1", task_id: "t1", pid: 100 };
        let two = AgentProcess { agent_id: "agent-2", task_id: "t1", pid: 101 };
        let other = AgentProcess { agent_id: "agent-3", task_id: "t2", pid: 102 };
        assert!(check_one_agent_per_task([one, other]).is_empty());
        let found = check_one_agent_per_task([one, two, other]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].detail, "t1 has 2 live agent processes: agent-1 (pid 100), agent-2 (pid 101)");
        let also_t2 = AgentProcess { agent_id: "agent-4", task_id: "t2", pid: 103 };
        let found = check_one_agent_per_task([also_t2, two, other, one]);
        let details: Vec<&str> = found.iter().map(|found| found.detail.as_str()).collect();
        assert_eq!(
            details,
            [
                "t1 has 2 live agent processes: agent-2 (pid 101), agent-1 (pid 100)",
                "t2 has 2 live agent processes: agent-4 (pid 103), agent-3 (pid 102)",
            ],
            "by task id, each task's agents in the order seen"
        );
    }

    fn task(line: &str) -> Task {
        Graph::parse(line.as_bytes()).unwrap().tasks().next().unwrap().clone()
    }

    #[test]
    fn a_requeue_counts_once_and_nothing_else_counts() {
        let running = task(r#"{"kind":"task","id":"t1","status":"in-progress","assigned":"agent-1"}"#);
        let requeued = task(r#"{"kind":"task","id":"t1","status":"open","retry_count":1}"#);
        let twice = task(r#"{"kind":"task","id":"t1","status":"open","retry_count":2}"#);
        let uncounted = task(r#"{"kind":"task","id":"t1","status":"open"}"#);
        let done_counted = task(r#"{"kind":"task","id":"t1","status":"done","retry_count":1}"#);
        assert_eq!(check_attempt_transition(&running, &requeued), None);
        assert_eq!(check_attempt_transition(&running, &running), None);
        for wrong in [&twice, &uncounted, &done_counted] {
            assert_eq!(check_attempt_transition(&running, wrong).map(|v| v.invariant), Some("S3"), "{wrong:?}");
        }
        assert!(check_raises_by_one_command("t1", 1).is_none());
        assert!(check_raises_by_one_command("t1", 2).is_some());
    }

    #[test]
    fn the_log_accounts_for_every_raise_of_the_attempt_counter() {
        let initial = state(
            r#"{"kind":"task","id":"t1","status":"in-progress","retry_count":2,"log":[{"timestamp":"x","message":"old"}]}"#,
            NO_AGENTS,
        );
        let entry = |message: &str| format!(r#"{{"timestamp":"x","user":"u","message":"{message}"}}"#);
        let with_log = |count: u32, entries: &[String]| {
            let log = std::iter::once(entry("old")).chain(entries.iter().cloned()).collect::<Vec<_>>().join(",");
            state(
                &format!(r#"{{"kind":"task","id":"t1","status":"open","retry_count":{count},"log":[{log}]}}"#),
                NO_AGENTS,
            )
        };
        let once = [entry("Retried: hung (attempt 3)")];
        assert_eq!(check_attempts_logged(&initial, &with_log(3, &once)), Vec::new());
        assert_eq!(check_attempts_logged(&initial, &with_log(4, &once)).len(), 1, "a raise without an entry");
        assert_eq!(check_attempts_logged(&initial, &with_log(2, &once)).len(), 1, "an entry without a raise");
        let twice = [entry("a (attempt 3)"), entry("b (attempt 4)")];
        assert_eq!(check_attempts_logged(&initial, &with_log(4, &twice)), Vec::new());
        assert_eq!(check_attempts_logged(&initial, &with_log(2, &[])), Vec::new());
    }

    #[test]
    fn a_done_task_that_changes_breaks_s4_and_companions_must_not_change() {
        let done = state(r#"{"kind":"task","id":"t1","status":"done","assigned":"agent-1"}"#, NO_AGENTS);
        let reopened = state(r#"{"kind":"task","id":"t1","status":"open"}"#, NO_AGENTS);
        assert_eq!(check_done_stays_done(&done, &done), Vec::new());
        assert_eq!(check_done_stays_done(&done, &reopened)[0].invariant, "S4");
        // Per task: only a task that was done is held to it.
        let (was_done, now_open) = (done.graph.task("t1").unwrap(), reopened.graph.task("t1").unwrap());
        assert_eq!(check_task_done_stays_done(was_done, now_open), check_done_stays_done(&done, &reopened).pop());
        assert_eq!(check_task_done_stays_done(now_open, was_done), None);
        let companion = state(r#"{"kind":"task","id":".evaluate-t1","status":"open"}"#, NO_AGENTS);
        let abandoned = state(r#"{"kind":"task","id":".evaluate-t1","status":"abandoned"}"#, NO_AGENTS);
        assert_eq!(check_companions_unchanged(&companion, &companion), Vec::new());
        assert_eq!(check_companions_unchanged(&companion, &abandoned)[0].invariant, "S5");
    }

    #[test]
    fn s3_says_whether_a_requeue_went_uncounted_or_a_count_had_no_requeue() {
        let running = task(r#"{"kind":"task","id":"t1","status":"in-progress","assigned":"agent-1"}"#);
        let uncounted = task(r#"{"kind":"task","id":"t1","status":"open"}"#);
        let counted_failed = task(r#"{"kind":"task","id":"t1","status":"failed","retry_count":1}"#);
        let detail = |after: &Task| check_attempt_transition(&running, after).map(|v| v.detail);
        assert_eq!(detail(&uncounted).as_deref(), Some("t1 was re-queued (in-progress -> open) without counting it"));
        assert_eq!(
            detail(&counted_failed).as_deref(),
            Some("t1's retry_count rose 0 -> 1 without a re-queue (in-progress -> failed)")
        );
    }

    #[test]
    fn the_log_must_agree_with_the_counter_both_in_number_and_in_its_last_mark() {
        let initial = state(r#"{"kind":"task","id":"t1","status":"in-progress","retry_count":2}"#, NO_AGENTS);
        let now = |count: u32, mark: u32| {
            let log = format!(r#"[{{"timestamp":"x","user":"u","message":"Retried: hung (attempt {mark})"}}]"#);
            state(
                &format!(r#"{{"kind":"task","id":"t1","status":"open","retry_count":{count},"log":{log}}}"#),
                NO_AGENTS,
            )
        };
        assert_eq!(check_attempts_logged(&initial, &now(3, 3)), Vec::new());
        assert_eq!(check_attempts_logged(&initial, &now(3, 5)).len(), 1, "one entry for one raise, but marked 5");
        assert_eq!(check_attempts_logged(&initial, &now(4, 4)).len(), 1, "two raises, one entry (marked right)");
    }

    #[test]
    fn a_running_agent_must_be_its_tasks_assignee_and_the_task_in_progress_or_finished() {
        let given_to_another = r#"{"kind":"task","id":"t1","status":"in-progress","assigned":"agent-2"}"#;
        let reopened_still_naming_it = r#"{"kind":"task","id":"t1","status":"open","assigned":"agent-1"}"#;
        for graph in [given_to_another, reopened_still_naming_it] {
            let found = check_agreement(&state(graph, AGENT_1_ON_T1));
            assert!(
                found.iter().any(|v| v.detail.starts_with("agent-1 is working but its task t1")),
                "{graph}: {found:?}"
            );
        }
    }

    #[test]
    fn a_signal_is_checked_against_the_tree_it_was_meant_for() {
        let agent = crate::model::ProcessRef { pid: 100, start_ticks: Some(5), started_at_ms: None };
        assert_eq!(check_signal_delivery("SIGTERM", &agent, "pid 100", Some((100, 5))), None);
        let found = check_signal_delivery("SIGTERM", &agent, "pid 100 (a later process)", None);
        assert_eq!(found.map(|v| v.invariant), Some("S2"));
    }

    #[test]
    fn a_done_task_must_keep_both_its_status_and_its_agent() {
        let done = state(r#"{"kind":"task","id":"t1","status":"done","assigned":"agent-1"}"#, NO_AGENTS);
        let reopened_same_agent = state(r#"{"kind":"task","id":"t1","status":"open","assigned":"agent-1"}"#, NO_AGENTS);
        let done_by_another = state(r#"{"kind":"task","id":"t1","status":"done","assigned":"agent-2"}"#, NO_AGENTS);
        assert_eq!(check_done_stays_done(&done, &reopened_same_agent)[0].invariant, "S4");
        assert_eq!(check_done_stays_done(&done, &done_by_another)[0].invariant, "S4");
    }

    #[test]
    fn liveness_allows_exactly_the_reaction_time_and_counts_from_the_last_change() {
        let graph = concat!(
            r#"{"kind":"task","id":"t1","status":"in-progress","assigned":"agent-1"}"#,
            "\n",
            r#"{"kind":"task","id":"t2","status":"open","exec":"true","log":[{"timestamp":"1970-01-01T00:00:01Z","message":"Retried"}]}"#
        );
        let state = state(graph, AGENT_1_ON_T1);
        let gone_at_1000 = |_: &Agent| AgentSeen::Gone { since_ms: Some(1_000) };
        let view =
            |now_ms| LivenessView { state: &state, seen: &gone_at_1000, service: Some(2), now_ms, reaction_ms: 500 };
        // t1's agent died at 1 s and t2 became ready (its last log entry) at 1 s.
        assert_eq!(check_recovered(&view(1_500)), Vec::new(), "exactly the reaction time: not yet");
        assert_eq!(check_recovered(&view(1_501)).len(), 2, "{:?}", check_recovered(&view(1_501)));
    }

    #[test]
    fn a_ready_task_waiting_for_a_free_slot_is_not_a_liveness_failure() {
        let graph = concat!(
            r#"{"kind":"task","id":"t1","status":"in-progress","assigned":"agent-1"}"#,
            "\n",
            r#"{"kind":"task","id":"t2","status":"open","exec":"true"}"#
        );
        let state = state(graph, AGENT_1_ON_T1);
        let alive = |_: &Agent| AgentSeen::Alive;
        let full = LivenessView { state: &state, seen: &alive, service: Some(1), now_ms: 10_000, reaction_ms: 500 };
        assert_eq!(check_recovered(&full), Vec::new());
    }

    #[test]
    fn s7_wants_one_entry_with_the_reason_from_a_retry_that_acted_and_none_otherwise() {
        assert!(check_retry_logged("wg retry", "t1", "hung", true, &["Retried: hung (attempt 1)"]).is_none());
        assert!(check_retry_logged("wg retry", "t1", "hung", true, &[]).is_some());
        assert!(check_retry_logged("wg retry", "t1", "hung", true, &["Retried: other"]).is_some());
        assert!(check_retry_logged("wg retry", "t1", "hung", false, &[]).is_none());
        assert!(check_retry_logged("wg retry", "t1", "hung", false, &["hung"]).is_some());
    }

    #[test]
    fn unknown_fields_and_tasks_must_survive() {
        let initial = state(
            r#"{"kind":"task","id":"t1","status":"open","priority":3}"#,
            r#"{"agents":{},"next_agent_id":1,"note":"kept"}"#,
        );
        assert_eq!(check_unknown_fields_survive(&initial, &initial), Vec::new());
        let lost = state(r#"{"kind":"task","id":"t1","status":"open"}"#, NO_AGENTS);
        let found = check_unknown_fields_survive(&initial, &lost);
        assert_eq!(found.iter().map(|v| v.invariant).collect::<Vec<_>>(), ["S8", "S8"], "{found:?}");
    }

    #[test]
    fn liveness_wants_dead_agents_settled_ready_tasks_dispatched_and_retried_agents_gone() {
        let graph = concat!(
            r#"{"kind":"task","id":"t1","status":"in-progress","assigned":"agent-1"}"#,
            "\n",
            r#"{"kind":"task","id":"t2","status":"open","exec":"true"}"#
        );
        let state = state(graph, AGENT_1_ON_T1);
        let gone_at_1000 = |_: &Agent| AgentSeen::Gone { since_ms: Some(1_000) };
        let view = |seen, now_ms| LivenessView { state: &state, seen, service: Some(2), now_ms, reaction_ms: 500 };
        let found = check_recovered(&view(&gone_at_1000, 1_600));
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(check_recovered(&view(&gone_at_1000, 1_400)).len(), 1, "a death younger than a sweep is not yet L1");
        let without_service =
            LivenessView { state: &state, seen: &gone_at_1000, service: None, now_ms: 9_000, reaction_ms: 0 };
        assert_eq!(check_recovered(&without_service), Vec::new(), "without a service nothing promises recovery");
        let alive = |_: &Agent| AgentSeen::Alive;
        let view = LivenessView { state: &state, seen: &alive, service: Some(1), now_ms: 0, reaction_ms: 0 };
        assert_eq!(check_recovered(&view), Vec::new(), "the one slot is taken by a live agent");
        let running = [AgentProcess { agent_id: "agent-1", task_id: "t1", pid: 7 }];
        assert_eq!(check_stopped(&state, [], running), Vec::new());
        assert_eq!(check_stopped(&state, ["agent-1"], running)[0].invariant, "L2");
        let stray = [AgentProcess { agent_id: "agent-9", task_id: "t1", pid: 8 }];
        assert_eq!(check_stopped(&state, [], stray)[0].invariant, "L2");
    }
}
