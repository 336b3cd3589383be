//! Which task and agent names a scenario may use, so that a misspelt one (`after = ["biuld"]`,
//! an expectation on an unknown task, `on = "spawn agent-22"` in a scenario that can never start
//! a 22nd agent) is an error with its position when the file is read, not a puzzle after a run.
//!
//! Tasks: those of `[[world.task]]`, and those a `wg add` step adds (its `--id`, else the id `wg
//! add` makes from the title).
//!
//! Agents: those the world declares (`[[world.agent]]`, a task's `agent`), and those the
//! dispatcher can start. It names them `agent-N` in order, from one past the highest number
//! declared (as the registry's `next_agent_id` does), one per start of a task; a task is started
//! at most [`starts_per_task_max`] times, so the names end at a bound that holds for every seed.
//! The bound is generous: a name inside it may still never be given out in a run, and a step
//! waiting for it then fails as `step-never-fired`.

use super::{Action, AgentSpec, Command, Step, TaskSpec};
use std::collections::BTreeSet;
use wg_core::settings::CrashLoopPolicy;

#[derive(Clone, Debug)]
pub struct Names {
    tasks: BTreeSet<String>,
    declared_agents: BTreeSet<String>,
    /// The number of the first agent the dispatcher names.
    first_started: u64,
    /// How many agents the dispatcher may start in one run, at most.
    started_max: u64,
}

/// The most starts of one task in a run. Between two `wg` commands that re-open it (retry, kill,
/// recover), the crash-loop throttle fails a task after `deaths_max` deaths in its window, for
/// each of its backoffs and once more: that many starts, plus the start the command allows. A
/// fault (random or scripted) may cost one start more each: a start it interrupts is not a
/// death the throttle counts.
pub fn starts_per_task_max(policy: &CrashLoopPolicy, reopening_steps: u64, faults_max: u64) -> u64 {
    let crash_budget = policy.deaths_max as u64 * (policy.backoffs_ms.len() as u64 + 1);
    (crash_budget + 1) * (1 + reopening_steps) + faults_max
}

impl Names {
    pub fn of(tasks: &[TaskSpec], agents: &[AgentSpec], steps: &[Step]) -> Names {
        let commands = || {
            steps.iter().filter_map(|step| match &step.action {
                Action::Run(line) => Some(&line.command),
                Action::Fault(_) => None,
            })
        };
        let added = commands().filter(|command| matches!(command, Command::Add(_))).filter_map(Command::task);
        let tasks: BTreeSet<String> = tasks.iter().map(|task| task.id.clone()).chain(added).collect();
        let declared_agents: BTreeSet<String> = agents.iter().map(|agent| agent.id.clone()).collect();
        let first_started = declared_agents.iter().filter_map(|id| agent_number(id)).max().map_or(1, |n| n + 1);
        let reopening = commands()
            .filter(|command| matches!(command, Command::Retry { .. } | Command::Kill { .. } | Command::Recover { .. }))
            .count() as u64;
        let fault_steps = steps.iter().filter(|step| matches!(step.action, Action::Fault(_))).count() as u64;
        let faults_max = u64::from(crate::scenario::FAULTS_MAX) + fault_steps;
        let startable = tasks.len() as u64;
        let per_task = starts_per_task_max(&CrashLoopPolicy::default(), reopening, faults_max);
        Names { tasks, declared_agents, first_started, started_max: startable * per_task }
    }

    pub fn check_task(&self, name: &str, role: &str) -> Result<(), String> {
        if self.tasks.contains(name) {
            return Ok(());
        }
        Err(format!("unknown task {name:?} in {role}: the scenario's tasks are {}", self.task_list()))
    }

    pub fn check_agent(&self, name: &str, role: &str) -> Result<(), String> {
        if self.agent_can_exist(name) {
            return Ok(());
        }
        Err(format!("no agent {name:?} can exist in this scenario ({role}): {}", self.agent_rule()))
    }

    /// An expectation's subject (a task or an agent) and the field it names on it.
    pub fn check_subject(&self, name: &str, field: &str) -> Result<(), String> {
        use crate::scenario::{AGENT_FIELDS, TASK_FIELDS};
        let (is_task, is_agent) = (self.tasks.contains(name), self.agent_can_exist(name));
        let task_field = TASK_FIELDS.contains(&field);
        let agent_field = AGENT_FIELDS.contains(&field);
        if (is_task && task_field) || (is_agent && agent_field) {
            return Ok(());
        }
        if is_task {
            return Err(format!("tasks have no field {field:?} ({})", TASK_FIELDS.join(", ")));
        }
        if is_agent {
            return Err(format!("agents have no field {field:?} ({})", AGENT_FIELDS.join(", ")));
        }
        Err(format!(
            "expectation on {name:?}, which is no task and no agent of this scenario: its tasks are {}; {}",
            self.task_list(),
            self.agent_rule()
        ))
    }

    fn agent_can_exist(&self, name: &str) -> bool {
        let started = |number: u64| (self.first_started..self.first_started + self.started_max).contains(&number);
        self.declared_agents.contains(name) || agent_number(name).is_some_and(started)
    }

    fn task_list(&self) -> String {
        let names: Vec<&str> = self.tasks.iter().map(String::as_str).collect();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    }

    fn agent_rule(&self) -> String {
        let declared: Vec<&str> = self.declared_agents.iter().map(String::as_str).collect();
        let declared = if declared.is_empty() { "no agent".to_string() } else { declared.join(", ") };
        let last = self.first_started + self.started_max.max(1) - 1;
        if self.started_max == 0 {
            return format!("it declares {declared} and has no task to start one for");
        }
        format!(
            "it declares {declared}, and its dispatcher names the agents it starts agent-{} to agent-{last} at most",
            self.first_started
        )
    }
}

/// `agent-7` -> 7: the names the registry gives out.
fn agent_number(name: &str) -> Option<u64> {
    name.strip_prefix("agent-").filter(|digits| digits.bytes().all(|b| b.is_ascii_digit())).and_then(|n| n.parse().ok())
}
