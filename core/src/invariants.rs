//! The invariants of DESIGN.md that can be read off one state (S4-S6 in part, S8).
//! History-dependent ones (S1-S3, S7) are checked by the simulator, which sees every step.

use crate::model::TaskStatus;
use crate::ports::State;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub invariant: &'static str,
    pub detail: String,
}

/// S6 as far as one state tells it. A running entry's task is assigned to it (in progress, or
/// finished by it). An in-progress task's agent is live or about to be reaped: its entry is
/// running (the reaper watches it), or has ended and the reaper's orphan sweep re-queues the task
/// on its next pass (`wg agents kill` leaves the task to it). What no path settles is an
/// in-progress task assigned to an entry of another task. Tasks claimed by another tool (upstream
/// `wg claim`) may have no entry at all; whether a sweep really comes is L1's business.
pub fn check_agreement(state: &State) -> Vec<Violation> {
    let mut violations = Vec::new();
    for agent in state.registry.agents().filter(|agent| agent.status.is_running()) {
        let task = state.graph.task(&agent.task_id);
        let agrees = task.is_some_and(|task| {
            task.assigned.as_deref() == Some(agent.id.as_str())
                && matches!(task.status, TaskStatus::InProgress | TaskStatus::Done | TaskStatus::Failed)
        });
        if !agrees {
            let status =
                task.map_or("missing".to_string(), |task| format!("{} assigned {:?}", task.status, task.assigned));
            let detail = format!("{} is {} but its task {} is {status}", agent.id, agent.status, agent.task_id);
            violations.push(Violation { invariant: "S6", detail });
        }
    }
    for task in state.graph.tasks().filter(|task| task.status == TaskStatus::InProgress) {
        let Some(owner) = task.assigned.as_deref().and_then(|id| state.registry.agent(id)) else { continue };
        if owner.task_id != task.id {
            let detail = format!(
                "{} is in-progress for {} whose entry is for {} ({}): nothing will re-queue it",
                task.id, owner.id, owner.task_id, owner.status
            );
            violations.push(Violation { invariant: "S6", detail });
        }
    }
    violations
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
    fn a_task_given_to_another_tasks_entry_breaks_s6_and_a_claim_without_entry_does_not() {
        let graph = concat!(
            r#"{"kind":"task","id":"t1","status":"in-progress","assigned":"agent-1"}"#,
            "\n",
            r#"{"kind":"task","id":"t2","status":"in-progress","assigned":"agent-1"}"#,
            "\n",
            r#"{"kind":"task","id":"t3","status":"in-progress","assigned":"a-person"}"#
        );
        let found = check_agreement(&state(graph, AGENT_1_ON_T1));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].detail.starts_with("t2 is in-progress for agent-1"), "{found:?}");
    }
}
