//! The dispatcher: starts an agent for each ready task, up to `max_agents` running.
//!
//! Reserve (task in-progress, agent entry `starting`) in one transaction, spawn the process held
//! at its gate, record the pid in a second transaction, and only then let the process run. If
//! the entry was stopped or settled in between, the gate is closed instead and the process ends
//! without having run anything; if the dispatcher crashes, the gate closes by itself (S1).

use super::reaper::{on_agent_ended, DeathCause};
use super::OpError;
use crate::model::{Agent, AgentStatus, Task, TaskStatus};
use crate::ports::{Clock, Ctx, Processes, SpawnRequest, Spawned, State, Store};
use crate::settings::Settings;
use crate::time::format_rfc3339;
use serde_json::Map;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dispatched {
    pub agent_id: String,
    pub task_id: String,
    /// The pid, or why spawning failed.
    pub result: Result<i64, String>,
}

/// One dispatcher tick. Bounded by `max_agents`.
pub async fn dispatch<C: Clock, P: Processes, S: Store>(
    ctx: Ctx<'_, C, P, S>,
    settings: &Settings,
) -> Result<Vec<Dispatched>, OpError> {
    let now_ms = ctx.clock.now_ms();
    let requests = ctx.store.transact(|state| reserve(state, settings, ctx.actor, now_ms)).await?;
    let mut dispatched = Vec::with_capacity(requests.len());
    for request in requests {
        let result = match ctx.processes.spawn(&request).await {
            Ok(spawned) => record_spawn(ctx, settings, &request, spawned).await.map(|()| spawned.pid),
            Err(why) => {
                let now_ms = ctx.clock.now_ms();
                let cause = DeathCause::SpawnFailed(why.clone());
                ctx.store
                    .transact(|state| on_agent_ended(state, settings, ctx.actor, &request.agent_id, 0, cause, now_ms))
                    .await?;
                Err(why)
            }
        };
        dispatched.push(Dispatched { agent_id: request.agent_id, task_id: request.task_id, result });
    }
    Ok(dispatched)
}

/// A task the dispatcher may start now (the rule is [`crate::graph::Graph::is_ready`]'s).
pub fn is_ready(state: &State, task: &Task, now_ms: i64) -> bool {
    state.graph.is_ready(task, now_ms)
}

fn reserve(state: &mut State, settings: &Settings, actor: &str, now_ms: i64) -> Vec<SpawnRequest> {
    let running = state.registry.agents().filter(|agent| agent.status.is_running()).count();
    let free = settings.max_agents.saturating_sub(running);
    let ready: Vec<String> = state.graph.ready_tasks(now_ms).take(free).map(|task| task.id.clone()).collect();
    let timestamp = format_rfc3339(now_ms);
    let mut requests = Vec::with_capacity(ready.len());
    for task_id in ready {
        let agent_id = state.registry.allocate_agent_id();
        let task = state.graph.task_mut(&task_id).expect("listed above");
        task.status = TaskStatus::InProgress;
        task.assigned = Some(agent_id.clone());
        task.started_at = Some(timestamp.clone());
        task.push_log(timestamp.clone(), actor, format!("Spawned {agent_id}"));
        let command = task.exec.clone().expect("ready tasks have a command");
        state.registry.insert(Agent {
            id: agent_id.clone(),
            pid: 0,
            task_id: task_id.clone(),
            executor: "shell".to_string(),
            started_at: timestamp.clone(),
            last_heartbeat: None,
            status: AgentStatus::Starting,
            output_file: Some(format!("agents/{agent_id}/output.log")),
            completed_at: None,
            process_start_ticks: None,
            stop_requested: None,
            extra: Map::new(),
        });
        requests.push(SpawnRequest { task_id, agent_id, command });
    }
    debug_assert!(requests.len() <= free, "never more than max_agents running");
    requests
}

/// What the recording transaction found.
enum Recorded {
    /// The pid is in the registry: the process may run.
    Yes,
    /// The entry was asked to stop before its pid was recorded. The process will never run (its
    /// gate is closed next), so the entry and its task were settled in the same transaction:
    /// nothing waits for a timeout to learn what is already known.
    StoppedFirst,
    /// The entry is no longer this spawn's to record (settled or changed by someone else).
    Gone,
}

/// Records the pid of a fresh process and lets it run, or closes its gate when its entry was
/// stopped meanwhile.
async fn record_spawn<C: Clock, P: Processes, S: Store>(
    ctx: Ctx<'_, C, P, S>,
    settings: &Settings,
    request: &SpawnRequest,
    spawned: Spawned,
) -> Result<(), String> {
    let now_ms = ctx.clock.now_ms();
    let recorded = ctx.store.transact(|state| record(state, settings, ctx.actor, request, spawned, now_ms)).await;
    let go = matches!(recorded, Ok(Recorded::Yes));
    ctx.processes.release(&spawned, go).await;
    match recorded {
        Ok(Recorded::Yes) => Ok(()),
        Ok(Recorded::StoppedFirst) => {
            Err(format!("{} was stopped before it was recorded; it never ran", request.agent_id))
        }
        Ok(Recorded::Gone) => Err(format!("{} was settled before it was recorded; it never ran", request.agent_id)),
        Err(error) => {
            // The gate is closed: the process never runs. Settle the entry now if the store lets
            // us; if not, the reaper's starting timeout is the backstop.
            let now_ms = ctx.clock.now_ms();
            let cause = DeathCause::NeverStarted;
            let settled = ctx
                .store
                .transact(|state| on_agent_ended(state, settings, ctx.actor, &request.agent_id, 0, cause, now_ms))
                .await;
            let settled = if settled.is_ok() { "settled" } else { "left to the starting timeout" };
            Err(format!("recording {} failed ({error}); it never ran ({settled})", request.agent_id))
        }
    }
}

fn record(
    state: &mut State,
    settings: &Settings,
    actor: &str,
    request: &SpawnRequest,
    spawned: Spawned,
    now_ms: i64,
) -> Recorded {
    let Some(agent) = state.registry.agent(&request.agent_id) else { return Recorded::Gone };
    if agent.status != AgentStatus::Starting || agent.pid != 0 {
        return Recorded::Gone;
    }
    if agent.stop_requested.is_some() {
        let settled = on_agent_ended(state, settings, actor, &request.agent_id, 0, DeathCause::NeverStarted, now_ms);
        assert!(settled.is_some(), "a starting entry with pid 0 is settled by its pid");
        return Recorded::StoppedFirst;
    }
    let agent = state.registry.agent_mut(&request.agent_id).expect("found above");
    agent.pid = spawned.pid;
    agent.process_start_ticks = spawned.start_ticks;
    agent.status = AgentStatus::Working;
    agent.last_heartbeat = Some(format_rfc3339(now_ms));
    Recorded::Yes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Graph;
    use crate::registry::Registry;

    fn state(graph: &str) -> State {
        State { graph: Graph::parse(graph.as_bytes()).unwrap(), registry: Registry::empty() }
    }

    #[test]
    fn a_task_in_a_crash_loop_backoff_is_ready_again_the_moment_the_backoff_ends() {
        let state =
            state(r#"{"kind":"task","id":"t1","status":"open","exec":"true","crash_loop":{"not_before_ms":5000}}"#);
        let task = state.graph.task("t1").unwrap();
        assert!(!is_ready(&state, task, 4_999), "still backing off");
        assert!(is_ready(&state, task, 5_000), "the backoff is over");
    }
}
