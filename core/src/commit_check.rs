//! What every commit of ours asserts, in every build: a task whose status or assignee the
//! transaction changed has a status and an assignee that agree (issue 13, item 7).
//!
//! Every store calls [`State::assert_changes_agree`] on the state a transaction's closure left,
//! before writing it: the file store and the simulator's store. (The operations' test fake never
//! re-reads, so what it holds has changed since the test built it, not since one transaction
//! began: it does not call it.) Only the changed status/assignee pairs are asserted: a file that
//! upstream's `wg` or a person wrote may disagree already, and a transaction of ours that only
//! adds a log entry to such a task did not make it so. The simulator's S6
//! (`invariants::check_agreement`) judges the whole state; this is the part of it that each of
//! our writes keeps by construction.

use crate::model::{Task, TaskStatus};
use crate::ports::State;

impl State {
    /// Panics, naming the task and the rule, when a task this transaction changed disagrees:
    /// - an in-progress task is assigned to an entry of the registry that runs for that task
    ///   (the dispatcher's reservation is the only transition of ours into in-progress, and it
    ///   writes both);
    /// - an open task is assigned to nobody (every re-queue clears the assignee).
    ///
    /// A broken rule means a task no one will ever re-queue or one that two agents may run:
    /// stopping before the write keeps the file as it was.
    pub fn assert_changes_agree(&self) {
        for (as_read, task) in self.graph.changed_tasks() {
            let unchanged =
                as_read.is_some_and(|before| before.status == task.status && before.assigned == task.assigned);
            if !unchanged {
                self.assert_status_and_assignee_agree(task);
            }
        }
    }

    fn assert_status_and_assignee_agree(&self, task: &Task) {
        match task.status {
            TaskStatus::InProgress => {
                let owner = task.assigned.as_deref().and_then(|agent_id| self.registry.agent(agent_id));
                assert!(
                    owner.is_some_and(|agent| agent.task_id == task.id && agent.status.is_running()),
                    "a commit never writes an in-progress task without a running agent of its own: {} is assigned \
                     to {:?}, which the registry holds as {}",
                    task.id,
                    task.assigned,
                    owner.map_or("missing".to_string(), |agent| format!("{} for task {}", agent.status, agent.task_id))
                );
            }
            TaskStatus::Open => assert!(
                task.assigned.is_none(),
                "a commit never writes an open task with an assignee: {} is assigned to {:?}",
                task.id,
                task.assigned
            ),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::graph::Graph;
    use crate::ports::State;
    use crate::registry::Registry;

    const AGENT_1_WORKING_ON_T1: &str = r#"{"agents":{"agent-1":{"id":"agent-1","pid":7,"task_id":"t1","started_at":"x","status":"working"}},"next_agent_id":2}"#;

    fn state(task: &str, registry: &str) -> State {
        State { graph: Graph::parse(task.as_bytes()).unwrap(), registry: Registry::parse(registry.as_bytes()).unwrap() }
    }

    fn change_t1(state: &mut State, status: &str, assigned: Option<&str>) {
        let task = state.graph.task_mut("t1").unwrap();
        task.status = crate::model::TaskStatus::parse(status);
        task.assigned = assigned.map(str::to_string);
    }

    #[test]
    fn a_reservation_and_a_requeue_agree() {
        let mut reserved = state(r#"{"kind":"task","id":"t1","status":"open"}"#, AGENT_1_WORKING_ON_T1);
        change_t1(&mut reserved, "in-progress", Some("agent-1"));
        reserved.assert_changes_agree();
        let mut requeued = state(r#"{"kind":"task","id":"t1","status":"in-progress","assigned":"agent-1"}"#, "{}");
        change_t1(&mut requeued, "open", None);
        requeued.assert_changes_agree();
    }

    #[test]
    fn a_disagreement_someone_else_wrote_is_not_ours_to_assert() {
        let mut claimed_by_nobody = state(r#"{"kind":"task","id":"t1","status":"in-progress"}"#, "{}");
        claimed_by_nobody.graph.task_mut("t1").unwrap().push_log(1_000, "wg retry", "looked".into());
        claimed_by_nobody.assert_changes_agree();
    }

    #[test]
    #[should_panic(expected = "a commit never writes an in-progress task without a running agent of its own: t1 \
                               is assigned to None, which the registry holds as missing")]
    fn an_in_progress_task_given_to_nobody_is_a_broken_invariant() {
        let mut state = state(r#"{"kind":"task","id":"t1","status":"open"}"#, "{}");
        change_t1(&mut state, "in-progress", None);
        state.assert_changes_agree();
    }

    #[test]
    #[should_panic(expected = "t1 is assigned to Some(\"agent-1\"), which the registry holds as dead for task t1")]
    fn an_in_progress_task_given_to_an_ended_agent_is_a_broken_invariant() {
        let dead = AGENT_1_WORKING_ON_T1.replace("working", "dead");
        let mut state = state(r#"{"kind":"task","id":"t1","status":"open"}"#, &dead);
        change_t1(&mut state, "in-progress", Some("agent-1"));
        state.assert_changes_agree();
    }

    #[test]
    #[should_panic(expected = "which the registry holds as working for task t1")]
    fn an_in_progress_task_given_to_another_tasks_agent_is_a_broken_invariant() {
        let graph = concat!(
            r#"{"kind":"task","id":"t1","status":"in-progress","assigned":"agent-1"}"#,
            "\n",
            r#"{"kind":"task","id":"t2","status":"open"}"#
        );
        let mut state = state(graph, AGENT_1_WORKING_ON_T1);
        let task = state.graph.task_mut("t2").unwrap();
        task.status = crate::model::TaskStatus::InProgress;
        task.assigned = Some("agent-1".into());
        state.assert_changes_agree();
    }

    #[test]
    #[should_panic(
        expected = "a commit never writes an open task with an assignee: t1 is assigned to Some(\"agent-1\")"
    )]
    fn a_requeue_that_keeps_the_assignee_is_a_broken_invariant() {
        let mut state = state(r#"{"kind":"task","id":"t1","status":"in-progress","assigned":"agent-1"}"#, "{}");
        change_t1(&mut state, "open", Some("agent-1"));
        state.assert_changes_agree();
    }

    #[test]
    #[should_panic(expected = "a commit never writes an open task with an assignee: t9")]
    fn an_added_task_is_checked_too() {
        let mut state = state("", "{}");
        let mut task = crate::model::Task::new("t9", "t9");
        task.assigned = Some("alice".into());
        state.graph.add_task(task).unwrap();
        state.assert_changes_agree();
    }
}
