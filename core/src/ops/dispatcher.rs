//! The dispatcher: starts an agent for each ready task, up to `max_agents` running.
//!
//! Reserve every task a tick starts (task in-progress, agent entry `starting`) in one transaction,
//! spawn each process held at its gate, record every pid in a second transaction, and only then
//! let the processes run. If an entry was stopped or settled in between, its gate is closed
//! instead and its process ends without having run anything; if the dispatcher crashes, every
//! gate it holds closes by itself (S1).

use super::reaper::{on_agent_ended, DeathCause};
use super::OpError;
use crate::model::{Agent, AgentStatus, Task, TaskStatus};
use crate::ports::{Clock, Ctx, Processes, SpawnError, SpawnRequest, Spawned, State, Store, StoreError};
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
///
/// Three commits at most whatever the number of tasks started: the reservation, one record of
/// every spawn (pids of the processes started, settlements of the spawns that failed), and only
/// when that record fails, one settlement of them all. Every process waits at its gate until the
/// record that names it has committed.
pub async fn dispatch<C: Clock, P: Processes, S: Store>(
    ctx: Ctx<'_, C, P, S>,
    settings: &Settings,
) -> Result<Vec<Dispatched>, OpError> {
    let now_ms = ctx.clock.now_ms();
    let requests = ctx.store.transact(|state| reserve(state, settings, ctx.actor, now_ms)).await?;
    if requests.is_empty() {
        return Ok(Vec::new());
    }
    let mut spawns = Vec::with_capacity(requests.len());
    for request in requests {
        let spawn = ctx.processes.spawn(&request).await;
        spawns.push((request, spawn));
    }
    let now_ms = ctx.clock.now_ms();
    let recorded = ctx
        .store
        .transact(|state| {
            let record = |(request, spawn): &(SpawnRequest, SpawnResult)| {
                record_or_settle(state, settings, ctx.actor, request, spawn, now_ms)
            };
            spawns.iter().map(record).collect::<Vec<_>>()
        })
        .await;
    let results = match recorded {
        Ok(recorded) => release_recorded(ctx, &spawns, recorded).await,
        Err(error) => close_unrecorded(ctx, settings, &spawns, &error).await,
    };
    let dispatched = spawns.into_iter().zip(results);
    let dispatched = dispatched.map(|((request, _), result)| Dispatched {
        agent_id: request.agent_id,
        task_id: request.task_id,
        result,
    });
    Ok(dispatched.collect())
}

/// A task the dispatcher may start now (the rule is [`crate::graph::Graph::is_ready`]'s).
pub fn is_ready(state: &State, task: &Task, now_ms: i64) -> bool {
    state.graph.is_ready(task, now_ms)
}

/// When a task in a crash-loop backoff may start again, if that is still in the future.
pub fn backoff_until(task: &Task, now_ms: i64) -> Option<i64> {
    crate::model::backoff_pending(task.crash_loop.as_ref().and_then(|crash_loop| crash_loop.not_before_ms), now_ms)
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
        task.push_log(now_ms, actor, format!("Spawned {agent_id}"));
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
    assert_within_max_agents(running, state.registry.agents().filter(|a| a.status.is_running()).count(), settings);
    requests
}

/// Checked in every build: the simulator runs release builds, and a broken cap would be an
/// overload of the user's machine, not a wrong number. `running_before` may exceed the cap
/// already (it was lowered while agents ran); a dispatch then adds none.
fn assert_within_max_agents(running_before: usize, running_after: usize, settings: &Settings) {
    assert!(
        running_after <= settings.max_agents.max(running_before),
        "a dispatch never exceeds max_agents ({}): {running_after} running after it, {running_before} before",
        settings.max_agents
    );
}

/// What spawning one reserved request gave: its process, held at its gate, or why it failed.
type SpawnResult = Result<Spawned, SpawnError>;

/// What the recording transaction found for one request.
enum Recorded {
    /// The pid is in the registry: the process may run.
    Yes { pid: i64 },
    /// The entry was asked to stop before its pid was recorded. The process will never run (its
    /// gate is closed next), so the entry and its task were settled in the same transaction:
    /// nothing waits for a timeout to learn what is already known.
    StoppedFirst,
    /// The entry is no longer this spawn's to record (settled or changed by someone else).
    Gone,
    /// Spawning failed (why): the entry and its task were settled as a death, if still the
    /// reservation's.
    SpawnFailed(String),
}

impl Recorded {
    /// What the tick reports for this request: the pid, or why its process never ran.
    fn into_result(self, agent_id: &str) -> Result<i64, String> {
        match self {
            Recorded::Yes { pid } => Ok(pid),
            Recorded::StoppedFirst => Err(format!("{agent_id} was stopped before it was recorded; it never ran")),
            Recorded::Gone => Err(format!("{agent_id} was settled before it was recorded; it never ran")),
            Recorded::SpawnFailed(why) => Err(why),
        }
    }
}

/// Inside the recording transaction: records a fresh process's pid, or settles a failed spawn.
fn record_or_settle(
    state: &mut State,
    settings: &Settings,
    actor: &str,
    request: &SpawnRequest,
    spawn: &SpawnResult,
    now_ms: i64,
) -> Recorded {
    match spawn {
        Ok(spawned) => record(state, settings, actor, request, *spawned, now_ms),
        Err(why) => {
            let cause = DeathCause::SpawnFailed(why.clone());
            on_agent_ended(state, settings, actor, &request.agent_id, 0, cause, now_ms);
            Recorded::SpawnFailed(why.to_string())
        }
    }
}

/// After the record committed: opens the gate of each process whose pid it holds and closes the
/// others' for good. What each request came to, in order.
async fn release_recorded<C: Clock, P: Processes, S: Store>(
    ctx: Ctx<'_, C, P, S>,
    spawns: &[(SpawnRequest, SpawnResult)],
    recorded: Vec<Recorded>,
) -> Vec<Result<i64, String>> {
    let mut results = Vec::with_capacity(spawns.len());
    for ((request, spawn), recorded) in spawns.iter().zip(recorded) {
        if let Ok(spawned) = spawn {
            ctx.processes.release(spawned, matches!(recorded, Recorded::Yes { .. })).await;
        }
        results.push(recorded.into_result(&request.agent_id));
    }
    results
}

/// The record failed, so no process of this tick may run: closes every gate, then settles every
/// entry the reservation made if the store lets us (if not, the reaper's starting timeout is the
/// backstop).
async fn close_unrecorded<C: Clock, P: Processes, S: Store>(
    ctx: Ctx<'_, C, P, S>,
    settings: &Settings,
    spawns: &[(SpawnRequest, SpawnResult)],
    error: &StoreError,
) -> Vec<Result<i64, String>> {
    for spawned in spawns.iter().filter_map(|(_, spawn)| spawn.as_ref().ok()) {
        ctx.processes.release(spawned, false).await;
    }
    let now_ms = ctx.clock.now_ms();
    let settled = ctx
        .store
        .transact(|state| {
            for (request, spawn) in spawns {
                let cause = match spawn {
                    Ok(_) => DeathCause::NeverStarted,
                    Err(why) => DeathCause::SpawnFailed(why.clone()),
                };
                on_agent_ended(state, settings, ctx.actor, &request.agent_id, 0, cause, now_ms);
            }
        })
        .await;
    let settled = if settled.is_ok() { "settled in a second transaction" } else { "left to the starting timeout" };
    let failed = |(request, spawn): &(SpawnRequest, SpawnResult)| match spawn {
        Ok(_) => Err(format!("recording {} failed ({error}); it never ran ({settled})", request.agent_id)),
        Err(why) => Err(format!("{why}; recording that failed too ({error}); {settled}")),
    };
    spawns.iter().map(failed).collect()
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
    Recorded::Yes { pid: spawned.pid }
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

    // The reservation, on hand-made states.

    use crate::ops::fake::{state_of, Fake};
    use crate::ports::Liveness;
    use serde_json::{json, Value};

    const NOW_MS: i64 = 60_000;

    fn ready(id: &str) -> Value {
        json!({"id": id, "status": "open", "exec": format!("run {id}")})
    }

    fn agent(id: &str, task_id: &str, status: &str) -> Value {
        json!({"id": id, "pid": 40, "task_id": task_id, "started_at": "x", "status": status})
    }

    fn settings(max_agents: usize) -> Settings {
        Settings { max_agents, ..Settings::default() }
    }

    fn reserved(requests: &[SpawnRequest]) -> Vec<(&str, &str)> {
        requests.iter().map(|request| (request.task_id.as_str(), request.agent_id.as_str())).collect()
    }

    #[test]
    fn a_dispatch_fills_only_the_slots_the_running_agents_leave_free() {
        // agent-1 runs, agent-2 ended: one of three slots is taken.
        let tasks = [
            json!({"id": "t0", "status": "in-progress", "assigned": "agent-1"}),
            json!({"id": "t9", "status": "failed"}),
            ready("t1"),
            ready("t2"),
            ready("t3"),
        ];
        let agents = [agent("agent-1", "t0", "working"), agent("agent-2", "t9", "dead")];
        let mut state = state_of(&tasks, &agents);
        let requests = reserve(&mut state, &settings(3), "service", NOW_MS);
        assert_eq!(reserved(&requests), [("t1", "agent-3"), ("t2", "agent-4")], "file order, ids in order");
        assert_eq!(state.graph.task("t3").unwrap().status, TaskStatus::Open, "no slot left for t3");
        assert_eq!(state.registry.agents().filter(|agent| agent.status.is_running()).count(), 3);
    }

    #[test]
    fn a_dispatch_with_every_slot_taken_reserves_nothing_and_writes_nothing() {
        for max_agents in [0, 1] {
            let tasks = [json!({"id": "t0", "status": "in-progress", "assigned": "agent-1"}), ready("t1")];
            let before = state_of(&tasks, &[agent("agent-1", "t0", "starting")]);
            let mut state = before.clone();
            assert_eq!(reserve(&mut state, &settings(max_agents), "service", NOW_MS), [], "max_agents {max_agents}");
            assert_eq!(state, before, "max_agents {max_agents}");
        }
    }

    #[test]
    fn only_open_runnable_unpaused_tasks_whose_dependencies_are_done_are_dispatched() {
        let tasks = [
            json!({"id": "done-dep", "status": "done"}),
            json!({"id": "open-dep", "status": "open"}),
            json!({"id": "running", "status": "in-progress", "exec": "true"}),
            json!({"id": "failed", "status": "failed", "exec": "true"}),
            json!({"id": "no-command", "status": "open"}),
            json!({"id": "blank-command", "status": "open", "exec": " \t"}),
            json!({"id": "paused", "status": "open", "exec": "true", "paused": true}),
            json!({"id": "backing-off", "status": "open", "exec": "true", "crash_loop": {"not_before_ms": NOW_MS + 1}}),
            json!({"id": "waits", "status": "open", "exec": "true", "after": ["done-dep", "open-dep"]}),
            json!({"id": "missing-dep", "status": "open", "exec": "true", "after": ["nowhere"]}),
            json!({"id": "unpaused", "status": "open", "exec": "true", "paused": false}),
            json!({"id": "deps-done", "status": "open", "exec": "true", "after": ["done-dep"]}),
            json!({"id": "backoff-over", "status": "open", "exec": "true", "crash_loop": {"not_before_ms": NOW_MS}}),
        ];
        let mut state = state_of(&tasks, &[]);
        let requests = reserve(&mut state, &settings(10), "service", NOW_MS);
        let started: Vec<&str> = requests.iter().map(|request| request.task_id.as_str()).collect();
        assert_eq!(started, ["unpaused", "deps-done", "backoff-over"]);
    }

    #[test]
    fn a_reserved_task_is_in_progress_for_a_starting_entry_without_a_pid() {
        let before = state_of(&[json!({"id": "t1", "status": "open", "exec": "make check", "retry_count": 2})], &[]);
        let mut state = before.clone();
        let requests = reserve(&mut state, &settings(1), "service (pid 5)", NOW_MS);
        let request = SpawnRequest { task_id: "t1".into(), agent_id: "agent-1".into(), command: "make check".into() };
        assert_eq!(requests, [request]);
        let timestamp = format_rfc3339(NOW_MS);
        let task = state.graph.task("t1").unwrap();
        assert_eq!(task.status, TaskStatus::InProgress);
        assert_eq!(task.assigned.as_deref(), Some("agent-1"));
        assert_eq!(task.started_at.as_deref(), Some(timestamp.as_str()));
        assert_eq!(task.retry_count, 2, "starting is not an attempt");
        let entry = task.log.last().unwrap();
        assert_eq!((entry.user.as_str(), entry.message.as_str()), ("service (pid 5)", "Spawned agent-1"));
        let agent = state.registry.agent("agent-1").unwrap();
        let starting = Agent {
            id: "agent-1".into(),
            pid: 0,
            task_id: "t1".into(),
            executor: "shell".into(),
            started_at: timestamp.clone(),
            last_heartbeat: None,
            status: AgentStatus::Starting,
            output_file: Some("agents/agent-1/output.log".into()),
            completed_at: None,
            process_start_ticks: None,
            stop_requested: None,
            extra: Map::new(),
        };
        assert_eq!(*agent, starting);
        assert_eq!(state.registry.allocate_agent_id(), "agent-2", "the id is used up");
    }

    // Recording the pid of a fresh process.

    /// t1 reserved for agent-1 (`starting`, pid 0), maybe asked to stop meanwhile.
    fn reserved_state(stop_requested_by: Option<&str>) -> State {
        let mut state = state_of(&[ready("t1")], &[]);
        reserve(&mut state, &settings(1), "service", 1_000);
        if let Some(by) = stop_requested_by {
            let request = crate::model::StopRequest { by: by.into(), at_ms: 1_500 };
            state.registry.agent_mut("agent-1").unwrap().stop_requested = Some(request);
        }
        state
    }

    fn record_agent_1(state: &mut State) -> Recorded {
        let request = SpawnRequest { task_id: "t1".into(), agent_id: "agent-1".into(), command: "run t1".into() };
        record(state, &settings(1), "service", &request, Spawned { pid: 4242, start_ticks: Some(99) }, NOW_MS)
    }

    #[test]
    fn a_fresh_process_is_recorded_as_working_with_its_pid_and_identity() {
        let before = reserved_state(None);
        let mut state = before.clone();
        assert!(matches!(record_agent_1(&mut state), Recorded::Yes { pid: 4242 }));
        let mut expected = before.clone();
        let agent = expected.registry.agent_mut("agent-1").unwrap();
        agent.pid = 4242;
        agent.process_start_ticks = Some(99);
        agent.status = AgentStatus::Working;
        agent.last_heartbeat = Some(format_rfc3339(NOW_MS));
        assert_eq!(state, expected, "the graph is left as the reservation wrote it");
    }

    #[test]
    fn a_process_whose_entry_was_asked_to_stop_before_its_pid_was_recorded_never_runs_and_is_settled() {
        let mut state = reserved_state(Some("wg agents kill (pid 8)"));
        assert!(matches!(record_agent_1(&mut state), Recorded::StoppedFirst));
        let agent = state.registry.agent("agent-1").unwrap();
        assert_eq!((agent.pid, &agent.status), (0, &AgentStatus::Dead), "no pid recorded");
        let task = state.graph.task("t1").unwrap();
        assert_eq!((&task.status, task.retry_count, &task.assigned), (&TaskStatus::Open, 1, &None));
        assert_eq!(
            task.log.last().unwrap().message,
            "agent-1 was stopped by wg agents kill (pid 8); re-queued (attempt 1)"
        );
    }

    #[test]
    fn a_process_whose_entry_is_gone_or_changed_is_not_recorded() {
        let changes: [fn(&mut State); 3] = [
            |state| state.registry.agent_mut("agent-1").unwrap().status = AgentStatus::Dead,
            |state| state.registry.agent_mut("agent-1").unwrap().pid = 77,
            |state| *state = state_of(&[ready("t1")], &[]),
        ];
        for change in changes {
            let mut before = reserved_state(None);
            change(&mut before);
            let mut state = before.clone();
            assert!(matches!(record_agent_1(&mut state), Recorded::Gone));
            assert_eq!(state, before, "nothing written");
        }
    }

    #[test]
    fn a_spawn_that_fails_settles_its_entry_and_requeues_the_task_as_a_death() {
        // The fake's spawn always fails.
        let fake = Fake::new(state_of(&[ready("t1")], &[]), NOW_MS, Liveness::Alive);
        let dispatched = crate::block_on(dispatch(fake.ctx(), &settings(2))).unwrap();
        let failed = Dispatched { agent_id: "agent-1".into(), task_id: "t1".into(), result: Err("no free pid".into()) };
        assert_eq!(dispatched, [failed]);
        let state = fake.state.borrow();
        assert_eq!(state.registry.agent("agent-1").unwrap().status, AgentStatus::Dead);
        let task = state.graph.task("t1").unwrap();
        assert_eq!((&task.status, task.retry_count), (&TaskStatus::Open, 1));
        assert_eq!(task.crash_loop.as_ref().map(|crash_loop| crash_loop.deaths_ms.clone()), Some(vec![NOW_MS]));
        let message = "agent-1 ended: it could not be spawned: no free pid; re-queued (attempt 1)";
        assert_eq!(task.log.last().unwrap().message, message);
    }

    // The whole tick with a spawn that succeeds: the gate opens only for a recorded pid.

    fn spawning(pid: i64) -> Fake {
        let mut fake = Fake::new(state_of(&[ready("t1")], &[]), NOW_MS, Liveness::Alive);
        fake.spawns = Some(Spawned { pid, start_ticks: Some(5) });
        fake
    }

    #[test]
    fn a_spawned_process_is_recorded_and_then_let_run() {
        let fake = spawning(4242);
        let dispatched = crate::block_on(dispatch(fake.ctx(), &settings(2))).unwrap();
        assert_eq!(dispatched, [Dispatched { agent_id: "agent-1".into(), task_id: "t1".into(), result: Ok(4242) }]);
        assert_eq!(*fake.releases.borrow(), [(4242, true)]);
        let state = fake.state.borrow();
        let agent = state.registry.agent("agent-1").unwrap();
        assert_eq!((agent.pid, agent.process_start_ticks, &agent.status), (4242, Some(5), &AgentStatus::Working));
        assert_eq!(state.graph.task("t1").unwrap().status, TaskStatus::InProgress);
    }

    /// Three ready tasks, each spawn starting `pid` (the fake gives every spawn the same one).
    fn three_spawning(pid: i64) -> Fake {
        let mut fake = Fake::new(state_of(&[ready("t1"), ready("t2"), ready("t3")], &[]), NOW_MS, Liveness::Alive);
        fake.spawns = Some(Spawned { pid, start_ticks: Some(5) });
        fake
    }

    #[test]
    fn every_process_of_a_tick_is_recorded_in_one_transaction_and_only_then_let_run() {
        let fake = three_spawning(4242);
        let dispatched = crate::block_on(dispatch(fake.ctx(), &settings(3))).unwrap();
        let results: Vec<_> = dispatched.iter().map(|d| (d.agent_id.as_str(), d.result.clone())).collect();
        assert_eq!(results, [("agent-1", Ok(4242)), ("agent-2", Ok(4242)), ("agent-3", Ok(4242))]);
        assert_eq!(fake.transactions.get(), 2, "the reservation, then one record of all three pids");
        assert_eq!(*fake.releases.borrow(), [(4242, true); 3]);
        let state = fake.state.borrow();
        assert!(state.registry.agents().all(|agent| agent.pid == 4242 && agent.status == AgentStatus::Working));
    }

    #[test]
    fn a_failed_record_closes_every_gate_of_the_tick_and_settles_every_entry_in_one_more_transaction() {
        let mut fake = three_spawning(4242);
        fake.failing_transactions = vec![2];
        let dispatched = crate::block_on(dispatch(fake.ctx(), &settings(3))).unwrap();
        let why = "recording agent-2 failed (the fake store failed); it never ran (settled in a second transaction)";
        assert_eq!(dispatched[1].result, Err(why.to_string()));
        assert!(dispatched.iter().all(|d| d.result.is_err()), "{dispatched:?}");
        assert_eq!(*fake.releases.borrow(), [(4242, false); 3], "no process runs unrecorded");
        assert_eq!(fake.transactions.get(), 3);
        let state = fake.state.borrow();
        for n in 1..=3 {
            let agent = state.registry.agent(&format!("agent-{n}")).unwrap();
            assert_eq!((agent.pid, &agent.status), (0, &AgentStatus::Dead), "agent-{n}");
            let task = state.graph.task(&format!("t{n}")).unwrap();
            assert_eq!((&task.status, task.retry_count), (&TaskStatus::Open, 1), "t{n}");
        }
    }

    #[test]
    fn a_failed_record_whose_settlement_fails_too_leaves_the_entries_to_the_starting_timeout() {
        let mut fake = three_spawning(4242);
        fake.failing_transactions = vec![2, 3];
        let dispatched = crate::block_on(dispatch(fake.ctx(), &settings(3))).unwrap();
        let why = "recording agent-1 failed (the fake store failed); it never ran (left to the starting timeout)";
        assert_eq!(dispatched[0].result, Err(why.to_string()));
        assert_eq!(*fake.releases.borrow(), [(4242, false); 3], "no process runs unrecorded");
        let state = fake.state.borrow();
        assert!(state.registry.agents().all(|agent| agent.pid == 0 && agent.status == AgentStatus::Starting));
    }

    #[test]
    fn a_failed_spawn_is_settled_in_the_record_of_its_tick_or_after_it() {
        let fake = Fake::new(state_of(&[ready("t1")], &[]), NOW_MS, Liveness::Alive);
        crate::block_on(dispatch(fake.ctx(), &settings(3))).unwrap();
        assert_eq!(fake.transactions.get(), 2, "reserved, then settled in the record");
        let mut fake = Fake::new(state_of(&[ready("t1")], &[]), NOW_MS, Liveness::Alive);
        fake.failing_transactions = vec![2];
        let dispatched = crate::block_on(dispatch(fake.ctx(), &settings(3))).unwrap();
        let why = "no free pid; recording that failed too (the fake store failed); settled in a second transaction";
        assert_eq!(dispatched[0].result, Err(why.to_string()));
        let state = fake.state.borrow();
        assert_eq!(state.registry.agent("agent-1").unwrap().status, AgentStatus::Dead);
        let task = state.graph.task("t1").unwrap();
        assert_eq!(
            task.log.last().unwrap().message,
            "agent-1 ended: it could not be spawned: no free pid; re-queued (attempt 1)"
        );
    }

    #[test]
    fn a_process_whose_entry_was_stopped_or_settled_while_it_spawned_never_runs() {
        let stop: fn(&mut State) = |state| {
            let request = crate::model::StopRequest { by: "wg agents kill (pid 8)".into(), at_ms: NOW_MS };
            state.registry.agent_mut("agent-1").unwrap().stop_requested = Some(request);
        };
        let settle: fn(&mut State) = |state| state.registry.agent_mut("agent-1").unwrap().status = AgentStatus::Dead;
        let cases = [
            (stop, "agent-1 was stopped before it was recorded; it never ran"),
            (settle, "agent-1 was settled before it was recorded; it never ran"),
        ];
        for (meanwhile, why) in cases {
            let fake = spawning(4242);
            fake.at_next_spawn(meanwhile);
            let dispatched = crate::block_on(dispatch(fake.ctx(), &settings(2))).unwrap();
            assert_eq!(dispatched[0].result, Err(why.to_string()));
            assert_eq!(*fake.releases.borrow(), [(4242, false)], "{why}: the gate is closed");
            let state = fake.state.borrow();
            let agent = state.registry.agent("agent-1").unwrap();
            assert_eq!((agent.pid, &agent.status), (0, &AgentStatus::Dead), "{why}: no pid recorded");
        }
    }

    #[test]
    fn a_dispatch_may_fill_the_cap_and_add_nothing_above_a_lowered_one() {
        assert_within_max_agents(1, 2, &settings(2));
        assert_within_max_agents(3, 3, &settings(2));
    }

    #[test]
    #[should_panic(expected = "a dispatch never exceeds max_agents (2): 3 running after it, 1 before")]
    fn a_dispatch_above_the_cap_is_a_broken_invariant() {
        assert_within_max_agents(1, 3, &settings(2));
    }
}
