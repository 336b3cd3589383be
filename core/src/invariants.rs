//! The invariants of DESIGN.md that can be read off one state (S4-S6 in part, S8).
//! History-dependent ones (S1-S3, S7) are checked by the simulator, which sees every step.

use crate::model::TaskStatus;
use crate::ports::State;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub invariant: &'static str,
    pub detail: String,
}

/// S6 as far as one state tells it: an in-progress task's registered agent works on that task.
pub fn check_agreement(state: &State) -> Vec<Violation> {
    let mut violations = Vec::new();
    for task in state.graph.tasks().filter(|task| task.status == TaskStatus::InProgress) {
        let owner = task.assigned.as_deref().and_then(|id| state.registry.agent(id));
        let Some(owner) = owner else {
            // Tasks claimed by another tool (upstream `wg claim`) may have no registry entry.
            continue;
        };
        if owner.task_id != task.id {
            violations.push(Violation {
                invariant: "S6",
                detail: format!("{} is assigned to {} whose entry works on {}", task.id, owner.id, owner.task_id),
            });
        }
    }
    violations
}
