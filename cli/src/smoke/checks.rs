//! What must hold in a real run: the invariants that files and `/proc` can show (S1, S2, S4,
//! S5, S6, S8), sampled while the scenario runs and checked at its end, and the scenario's own
//! expectations, evaluated by the simulator's own evaluator on the real files.

use super::procs;
use super::world::{World, FOREIGN_LINE, PLANTED_FIELD};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use wg_core::graph::Graph;
use wg_core::model::{is_companion_id, TaskStatus};
use wg_core::ports::State;
use wg_core::registry::Registry;
use wg_sim::scenario::{Action, Command, Scenario};

/// Both files as read now, raw (for byte-for-byte checks) and parsed.
pub struct Snapshot {
    pub graph_text: String,
    pub registry_bytes: Vec<u8>,
    pub state: State,
}

/// Reads `.wg/graph.jsonl` and the registry. Each file is replaced atomically, so a parse error
/// is a real S8 violation, never a torn read.
pub fn read_snapshot(world: &World) -> Result<Snapshot, String> {
    let graph_path = world.paths.graph();
    let graph_text = std::fs::read_to_string(&graph_path).map_err(|e| format!("S8: cannot read graph.jsonl: {e}"))?;
    let graph = Graph::parse(graph_text.as_bytes()).map_err(|e| format!("S8: graph.jsonl does not parse: {e:?}"))?;
    let registry_bytes = std::fs::read(world.paths.registry()).unwrap_or_default();
    let registry =
        Registry::parse(&registry_bytes).map_err(|e| format!("S8: service/registry.json does not parse: {e}"))?;
    Ok(Snapshot { graph_text, registry_bytes, state: State { graph, registry } })
}

/// The line of task `id` in `graph.jsonl`, as written.
fn line_of<'a>(graph_text: &'a str, id: &str) -> Option<&'a str> {
    let id_field = serde_json::to_string(id).ok()?;
    graph_text.lines().find(|line| {
        serde_json::from_str::<serde_json::Value>(line).is_ok_and(|v| v["id"].as_str() == Some(id))
            && line.contains(&id_field)
    })
}

/// The invariants watched during the run. Each violation is reported once, at its first sighting.
pub struct Monitor {
    /// S5: companion lines as first written, unless a step of the scenario names the companion.
    companions: BTreeMap<String, String>,
    /// S4: when each task was first seen done.
    done_at: BTreeMap<String, Duration>,
    reported: BTreeSet<String>,
    pub failures: Vec<String>,
}

impl Monitor {
    pub fn new(scenario: &Scenario, initial: &Snapshot) -> Monitor {
        let named: BTreeSet<&str> = scenario.steps.iter().filter_map(step_task).collect();
        let companions = initial
            .state
            .graph
            .tasks()
            .filter(|task| is_companion_id(&task.id) && !named.contains(task.id.as_str()))
            .filter_map(|task| Some((task.id.clone(), line_of(&initial.graph_text, &task.id)?.to_string())))
            .collect();
        Monitor { companions, done_at: BTreeMap::new(), reported: BTreeSet::new(), failures: Vec::new() }
    }

    fn report(&mut self, key: String, message: String) {
        if self.reported.insert(key) {
            self.failures.push(message);
        }
    }

    pub fn sample(&mut self, at: Duration, snapshot: &Snapshot) {
        self.check_one_agent_per_task(at, &snapshot.state);
        self.check_done_stays_done(at, &snapshot.state);
        self.check_companions(at, &snapshot.graph_text);
    }

    /// S1: at most one live agent process per task (pid and start ticks verified in /proc).
    fn check_one_agent_per_task(&mut self, at: Duration, state: &State) {
        let mut live: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for agent in state.registry.agents().filter(|agent| procs::is_live(agent)) {
            live.entry(agent.task_id.as_str()).or_default().push(format!("{} (pid {})", agent.id, agent.pid));
        }
        for (task, agents) in live.into_iter().filter(|(_, agents)| agents.len() > 1) {
            let message = format!(
                "S1: task {task} has {} live agents at {:.2}s: {} (expected at most one)",
                agents.len(),
                at.as_secs_f64(),
                agents.join(", ")
            );
            self.report(format!("S1 {task}"), message);
        }
    }

    /// S4: a task seen done is never seen in another status afterwards.
    fn check_done_stays_done(&mut self, at: Duration, state: &State) {
        for task in state.graph.tasks() {
            match (task.status == TaskStatus::Done, self.done_at.get(&task.id).copied()) {
                (true, None) => {
                    self.done_at.insert(task.id.clone(), at);
                }
                (false, Some(done)) => {
                    let message = format!(
                        "S4: task {} was done at {:.2}s, then {} at {:.2}s (expected it to stay done)",
                        task.id,
                        done.as_secs_f64(),
                        task.status,
                        at.as_secs_f64()
                    );
                    self.report(format!("S4 {}", task.id), message);
                }
                _ => {}
            }
        }
    }

    /// S5: companion lines byte for byte as written at the start.
    fn check_companions(&mut self, at: Duration, graph_text: &str) {
        let changed: Vec<(String, String, String)> = self
            .companions
            .iter()
            .filter_map(|(id, before)| {
                let now = line_of(graph_text, id).unwrap_or("(line gone)");
                (now != before).then(|| (id.clone(), before.clone(), now.to_string()))
            })
            .collect();
        for (id, before, now) in changed {
            let message =
                format!("S5: companion {id} changed at {:.2}s: expected {before}, found {now}", at.as_secs_f64());
            self.report(format!("S5 {id}"), message);
        }
    }
}

/// The task a step's command names, if any (it may then change that task itself).
fn step_task(step: &wg_sim::scenario::Step) -> Option<&str> {
    match &step.action {
        Action::Run(Command::Retry { task, .. } | Command::Done { task, .. } | Command::Fail { task, .. }) => {
            Some(task)
        }
        Action::Run(Command::Recover { task: Some(task), .. } | Command::Add { id: task, .. }) => Some(task),
        _ => None,
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

/// S6: every in-progress task's agent is live. The caller allows "about to be reaped" by
/// retrying for a sweep and a kill's worth of time before it reports.
pub fn in_progress_agents_live(state: &State) -> Vec<String> {
    state
        .graph
        .tasks()
        .filter(|task| task.status == TaskStatus::InProgress)
        .filter_map(|task| {
            let Some(agent_id) = &task.assigned else {
                return Some(format!("S6: task {} is in-progress with no agent assigned", task.id));
            };
            match state.registry.agent(agent_id) {
                None => {
                    Some(format!("S6: task {} is in-progress for {agent_id}, which has no registry entry", task.id))
                }
                Some(agent) if agent.pid <= 0 || procs::is_live(agent) => None,
                Some(agent) => Some(format!(
                    "S6: task {} is in-progress for {agent_id}, whose process (pid {}) is gone and was not reaped",
                    task.id, agent.pid
                )),
            }
        })
        .collect()
}

/// S8: unknown fields and lines planted at the start are still there, unchanged.
pub fn unknown_fields_survive(scenario: &Scenario, snapshot: &Snapshot) -> Vec<String> {
    let mut found = Vec::new();
    if !snapshot.graph_text.lines().any(|line| line == FOREIGN_LINE) {
        found.push(format!("S8: the unknown line {FOREIGN_LINE} is gone or changed"));
    }
    for spec in &scenario.tasks {
        let Some(task) = snapshot.state.graph.task(&spec.id) else {
            found.push(format!("S8: task {} is gone from graph.jsonl", spec.id));
            continue;
        };
        let planted = std::iter::once((PLANTED_FIELD.to_string(), None))
            .chain(spec.extra.iter().map(|(k, v)| (k.clone(), Some(v))));
        for (key, wanted) in planted {
            let kept = task.extra.get(&key).is_some_and(|value| wanted.is_none_or(|wanted| wanted == value));
            if !kept {
                found.push(format!(
                    "S8: task {}'s unknown field {key:?} did not survive: {:?}",
                    spec.id,
                    task.extra.get(&key)
                ));
            }
        }
    }
    let registry: serde_json::Value = serde_json::from_slice(&snapshot.registry_bytes).unwrap_or_default();
    if registry["service_note"] != "kept" {
        found.push(format!(
            "S8: the registry's unknown field \"service_note\" did not survive: {}",
            registry["service_note"]
        ));
    }
    found
}

/// S2: the unrelated programs at reused pids still run and caught no signal.
pub fn squatters_untouched(world: &mut World) -> Vec<String> {
    let mut found = Vec::new();
    for squatter in &mut world.squatters {
        let caught = std::fs::read_to_string(&squatter.marker).unwrap_or_default();
        let caught: Vec<&str> = caught.lines().collect();
        if !squatter.proc.poll() {
            found.push(format!(
                "S2: the unrelated process at {}'s recorded pid {} was killed ({:?})",
                squatter.agent, squatter.proc.pid, squatter.proc.status
            ));
        } else if !caught.is_empty() {
            found.push(format!(
                "S2: the unrelated process at {}'s recorded pid {} received {}",
                squatter.agent,
                squatter.proc.pid,
                caught.join(", ")
            ));
        }
    }
    found
}
