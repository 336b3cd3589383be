//! The reaper: notices agents whose process ended, whose pid was taken over, or whose heartbeat
//! stopped, and settles their task. Every settlement is conditional on the task still being the
//! agent's, so a retry that got there first is not counted twice (S3).

use super::{mark_agent_ended, requeue, still_running_for, OpError};
use crate::identity::PidRefused;
use crate::model::{AgentStatus, CrashLoop, ProcessRef, StopRequest, Task, TaskStatus};
use crate::ports::{Clock, Ctx, ExitKind, Liveness, Processes, Signal, SpawnError, State, Store};
use crate::settings::{CrashLoopPolicy, Settings};
use crate::time::{format_rfc3339, parse_rfc3339};
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeathCause {
    Exited(ExitKind),
    PidReused,
    NotAProcess(PidRefused),
    /// The entry stayed `starting` without a pid: the dispatcher crashed before spawning.
    NeverStarted,
    SpawnFailed(SpawnError),
    /// The registry entry was already ended (with this status) while its task was in progress.
    EntryEnded(AgentStatus),
}

impl fmt::Display for DeathCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeathCause::Exited(ExitKind::Code(code)) => write!(f, "its process exited with code {code}"),
            DeathCause::Exited(ExitKind::Died) => write!(f, "its process died"),
            DeathCause::PidReused => write!(f, "its pid now belongs to another process"),
            DeathCause::NotAProcess(why) => write!(f, "its recorded pid is not an agent process ({why})"),
            DeathCause::NeverStarted => write!(f, "it never started"),
            DeathCause::SpawnFailed(why) => write!(f, "it could not be spawned: {why}"),
            DeathCause::EntryEnded(status) => write!(f, "its registry entry is {status}"),
        }
    }
}

/// One agent the reaper settled, and what became of its task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reaped {
    pub agent_id: String,
    pub task_id: String,
    pub cause: DeathCause,
    /// The task's status after the settlement, when this settlement changed it.
    pub task_now: Option<TaskStatus>,
}

struct Watched {
    agent_id: String,
    process: ProcessRef,
    status: AgentStatus,
    /// The last heartbeat, or the start: read only when the heartbeat timeout applies (a
    /// timeout is set and no stop was requested), the one use of it; `None` otherwise.
    last_sign_of_life_ms: Option<i64>,
    /// Who asked this agent to stop, and when.
    stop_requested: Option<(String, i64)>,
}

/// An agent the sweep found dead, to be settled with the others in the sweep's last transaction.
struct Death {
    agent_id: String,
    pid: i64,
    cause: DeathCause,
}

/// One sweep over the running agents. Bounded by the number of entries.
///
/// Every watched agent is diagnosed first (the port calls), then every dead one is settled in one
/// transaction: a sweep that finds eight agents ended commits once, not eight times. Each
/// settlement is still conditional on what that transaction finds (`on_agent_ended`), so a retry
/// or a kill that settled an agent between its diagnosis and the commit wins, and that agent is
/// left alone.
pub async fn reap<C: Clock, P: Processes, S: Store>(
    ctx: Ctx<'_, C, P, S>,
    settings: &Settings,
) -> Result<Vec<Reaped>, OpError> {
    let now_ms = ctx.clock.now_ms();
    let (watched, mut reaped) = ctx
        .store
        .transact(|state| {
            let orphans = settle_orphans(state, settings, ctx.actor, now_ms);
            (watch_list(state, settings), orphans)
        })
        .await?;
    let mut deaths = Vec::new();
    for agent in watched {
        if let Some(cause) = diagnose(ctx, settings, &agent).await? {
            deaths.push(Death { agent_id: agent.agent_id, pid: agent.process.pid, cause });
        }
    }
    if deaths.is_empty() {
        return Ok(reaped);
    }
    let now_ms = ctx.clock.now_ms();
    planted!(settings, SplitReap => {
        for death in &deaths {
            planted::split_reap(ctx, &death.agent_id, death.pid, now_ms).await?;
        }
        return Ok(reaped)
    });
    let settled = ctx
        .store
        .transact(|state| {
            let settle = |death: Death| {
                on_agent_ended(state, settings, ctx.actor, &death.agent_id, death.pid, death.cause, now_ms)
            };
            deaths.into_iter().filter_map(settle).collect::<Vec<_>>()
        })
        .await?;
    reaped.extend(settled);
    Ok(reaped)
}

/// Re-queues in-progress tasks whose agent's entry has already ended without settling them:
/// `wg agents kill` marks the entry dead and leaves the task to the reaper, and so may another
/// tool. Same rule as a death seen by the reaper; a requested stop is not counted as a crash.
fn settle_orphans(state: &mut State, settings: &Settings, actor: &str, now_ms: i64) -> Vec<Reaped> {
    let orphans: Vec<(String, String, DeathCause, Option<String>)> = state
        .graph
        .tasks_with_status(&TaskStatus::InProgress)
        .filter_map(|task| {
            let agent_id = task.assigned.as_deref()?;
            // No entry at all: a claim by a person or another tool (upstream `wg claim`), never
            // ours to settle. Our own commits land graph and registry together, so a task of ours
            // is never assigned to an id the registry does not hold.
            let agent = state.registry.agent(agent_id)?;
            let ended = !agent.status.is_running() && agent.task_id == task.id;
            let stopped_by = agent.stop_requested.as_ref().map(|request| request.by.clone());
            let cause = DeathCause::EntryEnded(agent.status.clone());
            ended.then(|| (task.id.clone(), agent.id.clone(), cause, stopped_by))
        })
        .collect();
    let mut reaped = Vec::with_capacity(orphans.len());
    for (task_id, agent_id, cause, stopped_by) in orphans {
        let task = state.graph.task_mut(&task_id).expect("listed above");
        settle_task(task, &settings.crash_loop, actor, &agent_id, &cause, stopped_by, now_ms);
        reaped.push(Reaped { agent_id, task_id, cause, task_now: Some(task.status.clone()) });
    }
    reaped
}

/// The running agents, as the sweep diagnoses them. The sweep of a service reads this for every
/// running agent every poll interval, so it parses only what the diagnosis uses: each timestamp
/// is parsed once, and the heartbeat not at all when no heartbeat timeout applies.
fn watch_list(state: &State, settings: &Settings) -> Vec<Watched> {
    let watched = state.registry.agents().filter(|agent| agent.status.is_running());
    watched
        .map(|agent| {
            let process = agent.process();
            let heartbeat_applies = settings.heartbeat_timeout_ms.is_some() && agent.stop_requested.is_none();
            let last_sign_of_life_ms = match heartbeat_applies {
                true => agent.last_heartbeat.as_deref().and_then(parse_rfc3339).or(process.started_at_ms),
                false => None,
            };
            Watched {
                agent_id: agent.id.clone(),
                process,
                status: agent.status.clone(),
                last_sign_of_life_ms,
                stop_requested: agent.stop_requested.as_ref().map(|request| (request.by.clone(), request.at_ms)),
            }
        })
        .collect()
}

/// Why `agent` should be reaped now, if it should.
async fn diagnose<C: Clock, P: Processes, S: Store>(
    ctx: Ctx<'_, C, P, S>,
    settings: &Settings,
    agent: &Watched,
) -> Result<Option<DeathCause>, OpError> {
    let now_ms = ctx.clock.now_ms();
    if agent.status == AgentStatus::Starting && agent.process.pid == 0 {
        let started_ms = agent.process.started_at_ms.unwrap_or(now_ms);
        let stale = now_ms.saturating_sub(started_ms) > settings.starting_timeout_ms as i64;
        return Ok(stale.then_some(DeathCause::NeverStarted));
    }
    let liveness = ctx.processes.liveness(&agent.process).await;
    let cause = match liveness {
        Liveness::Gone(kind) => DeathCause::Exited(kind),
        Liveness::Replaced => DeathCause::PidReused,
        Liveness::Refused(why) => DeathCause::NotAProcess(why),
        Liveness::Alive => {
            escalate_or_request_stop(ctx, settings, agent, now_ms).await?;
            return Ok(None);
        }
    };
    Ok(Some(cause))
}

/// Who a heartbeat-timeout stop request is from; the reaper escalates its own after the grace
/// period.
const HEARTBEAT_STOP: &str = "heartbeat timeout";

/// A live agent that went silent is asked to stop (SIGTERM, and a stop request in the registry);
/// one asked to stop that still runs after the grace period gets SIGKILL. Neither waits: the
/// sweep goes on, the dispatcher is not held up, and the exit is reaped like any other on a
/// later sweep (as a requested stop, re-queued). A stop request that outlived any stop (its
/// requester crashed after SIGTERM) is escalated too.
async fn escalate_or_request_stop<C: Clock, P: Processes, S: Store>(
    ctx: Ctx<'_, C, P, S>,
    settings: &Settings,
    agent: &Watched,
    now_ms: i64,
) -> Result<(), OpError> {
    if let Some((by, at_ms)) = &agent.stop_requested {
        let age_ms = now_ms.saturating_sub(*at_ms).max(0) as u64;
        let ours = by.starts_with(HEARTBEAT_STOP);
        if (ours && age_ms > settings.grace_ms) || age_ms > settings.stop_request_expiry_ms() {
            ctx.processes.signal(&agent.process, Signal::Kill).await;
        }
        return Ok(());
    }
    let (Some(timeout_ms), Some(last_ms)) = (settings.heartbeat_timeout_ms, agent.last_sign_of_life_ms) else {
        return Ok(());
    };
    let silent_ms = now_ms.saturating_sub(last_ms).max(0) as u64;
    if silent_ms <= timeout_ms {
        return Ok(());
    }
    let by = format!("{HEARTBEAT_STOP} after {} s of silence ({})", silent_ms / 1000, ctx.actor);
    let requested = ctx
        .store
        .transact(|state| {
            let entry = state.registry.agent(&agent.agent_id);
            let unchanged = entry.is_some_and(|entry| {
                entry.pid == agent.process.pid && entry.status.is_running() && entry.stop_requested.is_none()
            });
            if unchanged {
                let request = StopRequest { by: by.clone(), at_ms: now_ms };
                state.registry.agent_mut(&agent.agent_id).expect("checked above").stop_requested = Some(request);
            }
            unchanged
        })
        .await?;
    if requested {
        ctx.processes.signal(&agent.process, Signal::Term).await;
    }
    Ok(())
}

/// Settles one ended agent inside a transaction: the shared rule for reaper and dispatcher.
/// Does nothing when the entry no longer names `pid` or was already settled.
pub(super) fn on_agent_ended(
    state: &mut State,
    settings: &Settings,
    actor: &str,
    agent_id: &str,
    pid: i64,
    cause: DeathCause,
    now_ms: i64,
) -> Option<Reaped> {
    let agent = state.registry.agent(agent_id)?;
    if agent.pid != pid || !agent.status.is_running() {
        return None;
    }
    let task_id = agent.task_id.clone();
    let stop_requested_by = agent.stop_requested.as_ref().map(|request| request.by.clone());
    planted!(settings, ReaperUnchecked => {
        return planted::settle_unchecked(state, actor, agent_id, pid, task_id, cause, now_ms)
    });
    let task_now = match state.graph.task_mut_if(&task_id, |task| still_running_for(task, agent_id)) {
        Some(task) => {
            settle_task(task, &settings.crash_loop, actor, agent_id, &cause, stop_requested_by, now_ms);
            Some(task.status.clone())
        }
        None => None,
    };
    mark_agent_ended(state, agent_id, pid, now_ms);
    Some(Reaped { agent_id: agent_id.to_string(), task_id, cause, task_now })
}

fn settle_task(
    task: &mut Task,
    policy: &CrashLoopPolicy,
    actor: &str,
    agent_id: &str,
    cause: &DeathCause,
    stop_requested_by: Option<String>,
    now_ms: i64,
) {
    let timestamp = format_rfc3339(now_ms);
    if let Some(by) = stop_requested_by {
        // A death somebody asked for is not a crash, whatever the exit code.
        requeue(task, now_ms, actor, format!("{agent_id} was stopped by {by}; re-queued"));
        return;
    }
    match cause {
        DeathCause::Exited(ExitKind::Code(0)) => {
            task.status = TaskStatus::Done;
            task.completed_at = Some(timestamp.clone());
            task.push_log(now_ms, actor, format!("{agent_id}'s command exited with code 0: done"));
        }
        DeathCause::Exited(ExitKind::Code(code)) => {
            task.status = TaskStatus::Failed;
            task.failure_reason = Some(format!("exit code {code}"));
            task.push_log(now_ms, actor, format!("{agent_id}'s command exited with code {code}: failed"));
        }
        _ => match note_death(task.crash_loop.get_or_insert_with(CrashLoop::default), policy, now_ms) {
            Throttle::None => requeue(task, now_ms, actor, format!("{agent_id} ended: {cause}; re-queued")),
            Throttle::Backoff { wait_ms } => requeue(
                task,
                now_ms,
                actor,
                format!("{agent_id} ended: {cause}; crash loop, re-queued after a {} s backoff", wait_ms / 1000),
            ),
            Throttle::GiveUp => {
                task.status = TaskStatus::Failed;
                task.assigned = None;
                let reason = format!("crash loop: {agent_id} ended ({cause}) after every backoff");
                task.push_log(now_ms, actor, reason.clone());
                task.failure_reason = Some(reason);
            }
        },
    }
}

enum Throttle {
    None,
    Backoff { wait_ms: u64 },
    GiveUp,
}

/// Records a death and says whether the crash-loop throttle applies (upstream: 5 deaths in
/// 300 s, then backoffs of 60, 120 and 240 s, then fail).
fn note_death(crash_loop: &mut CrashLoop, policy: &CrashLoopPolicy, now_ms: i64) -> Throttle {
    let window_start_ms = now_ms - policy.window_ms as i64;
    crash_loop.deaths_ms.retain(|&death_ms| death_ms > window_start_ms);
    crash_loop.deaths_ms.push(now_ms);
    if crash_loop.deaths_ms.len() < policy.deaths_max {
        return Throttle::None;
    }
    crash_loop.deaths_ms.clear();
    let Some(&wait_ms) = policy.backoffs_ms.get(crash_loop.backoffs_served as usize) else {
        return Throttle::GiveUp;
    };
    crash_loop.backoffs_served += 1;
    crash_loop.not_before_ms = Some(now_ms + wait_ms as i64);
    Throttle::Backoff { wait_ms }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block_on;
    use crate::graph::Graph;
    use crate::ops::fake::Fake;
    use crate::registry::Registry;

    const GRACE_MS: i64 = 2_000;
    /// grace + kill wait + the takeover slack: past this a stop request's requester has crashed.
    const EXPIRY_MS: i64 = 13_000;

    fn settings() -> Settings {
        Settings {
            grace_ms: GRACE_MS as u64,
            kill_wait_ms: 1_000,
            heartbeat_timeout_ms: Some(3_000),
            starting_timeout_ms: 30_000,
            ..Settings::default()
        }
    }

    /// t1 in progress for agent-1 (`status`, `pid`, silent since 0, maybe asked to stop).
    fn state(status: &str, pid: i64, stop: Option<(&str, i64)>) -> State {
        let graph = r#"{"kind":"task","id":"t1","status":"in-progress","assigned":"agent-1"}"#;
        let mut agent = serde_json::json!({
            "id": "agent-1", "pid": pid, "task_id": "t1", "status": status,
            "started_at": format_rfc3339(0), "last_heartbeat": format_rfc3339(0),
        });
        if let Some((by, at_ms)) = stop {
            agent["stop_requested"] = serde_json::json!({"by": by, "at_ms": at_ms});
        }
        let registry = serde_json::json!({"agents": {"agent-1": agent}, "next_agent_id": 2}).to_string();
        State {
            graph: Graph::parse(graph.as_bytes()).unwrap(),
            registry: Registry::parse(registry.as_bytes()).unwrap(),
        }
    }

    /// One sweep at `now_ms` over `state` with the agent's process alive: what it settled and the
    /// signals it sent.
    fn sweep(state: State, now_ms: i64) -> (Fake, Vec<Reaped>, Vec<Signal>) {
        let fake = Fake::new(state, now_ms, Liveness::Alive);
        let reaped = block_on(reap(fake.ctx(), &settings())).unwrap();
        let signals = fake.signals.borrow().iter().map(|(_, signal)| *signal).collect();
        (fake, reaped, signals)
    }

    fn stop_request(fake: &Fake) -> Option<StopRequest> {
        fake.state.borrow().registry.agent("agent-1").unwrap().stop_requested.clone()
    }

    #[test]
    fn a_silent_agent_is_asked_to_stop_once_past_the_heartbeat_timeout() {
        let (fake, _, signals) = sweep(state("working", 7, None), 3_000);
        assert_eq!((stop_request(&fake), signals), (None, vec![]), "silent for exactly the timeout: not yet");
        let (fake, reaped, signals) = sweep(state("working", 7, None), 3_001);
        assert_eq!(signals, [Signal::Term]);
        let request = stop_request(&fake).expect("the stop is recorded");
        assert_eq!((request.by.as_str(), request.at_ms), ("heartbeat timeout after 3 s of silence (test)", 3_001));
        assert_eq!(reaped, [], "nothing is settled until the agent is gone");
    }

    #[test]
    fn the_reapers_own_stop_request_gets_sigkill_once_the_grace_period_is_over() {
        let asked = Some(("heartbeat timeout after 3 s of silence (test)", 10_000));
        assert_eq!(sweep(state("working", 7, asked), 10_000 + GRACE_MS).2, [], "within the grace period");
        assert_eq!(sweep(state("working", 7, asked), 10_001 + GRACE_MS).2, [Signal::Kill]);
    }

    #[test]
    fn a_commands_stop_request_gets_sigkill_only_once_it_outlived_any_stop() {
        let asked = Some(("wg retry (pid 4242)", 10_000));
        assert_eq!(sweep(state("working", 7, asked), 10_001 + GRACE_MS).2, [], "the command escalates itself");
        assert_eq!(sweep(state("working", 7, asked), 10_000 + EXPIRY_MS).2, [], "it may still be at work");
        assert_eq!(sweep(state("working", 7, asked), 10_001 + EXPIRY_MS).2, [Signal::Kill], "it crashed");
    }

    #[test]
    fn the_reaper_asks_a_silent_agent_to_stop_only_if_its_entry_is_as_the_sweep_saw_it() {
        // A `wg agents kill` asks first, between the sweep's look and its transaction.
        let fake = Fake::new(state("working", 7, None), 5_000, Liveness::Alive);
        fake.at_next_liveness(|state| {
            let request = StopRequest { by: "wg agents kill (pid 99)".into(), at_ms: 5_000 };
            state.registry.agent_mut("agent-1").unwrap().stop_requested = Some(request);
        });
        block_on(reap(fake.ctx(), &settings())).unwrap();
        assert_eq!(stop_request(&fake).unwrap().by, "wg agents kill (pid 99)", "the kill's request stands");
        assert_eq!(*fake.signals.borrow(), [], "and the kill does the signalling");
        // Another tool ends the entry meanwhile, asking nothing.
        let fake = Fake::new(state("working", 7, None), 5_000, Liveness::Alive);
        fake.at_next_liveness(|state| state.registry.agent_mut("agent-1").unwrap().status = AgentStatus::Dead);
        block_on(reap(fake.ctx(), &settings())).unwrap();
        assert_eq!((stop_request(&fake), fake.signals.borrow().clone()), (None, vec![]));
    }

    #[test]
    fn a_working_entry_whose_pid_is_never_an_agents_is_settled_at_once() {
        let (fake, reaped, signals) = sweep(state("working", 0, None), 1_000);
        assert_eq!(signals, []);
        assert_eq!(reaped.len(), 1, "{reaped:?}");
        assert!(matches!(reaped[0].cause, DeathCause::NotAProcess(_)), "{reaped:?}");
        let state = fake.state.borrow();
        let task = state.graph.task("t1").unwrap();
        assert_eq!((&task.status, task.retry_count), (&TaskStatus::Open, 1));
    }

    #[test]
    fn a_starting_entry_without_a_pid_is_retired_only_after_the_starting_timeout() {
        assert_eq!(sweep(state("starting", 0, None), 30_000).1, [], "exactly the timeout: the spawn may still come");
        let (fake, reaped, _) = sweep(state("starting", 0, None), 30_001);
        assert_eq!(reaped.iter().map(|r| r.cause.clone()).collect::<Vec<_>>(), [DeathCause::NeverStarted]);
        assert_eq!(fake.state.borrow().graph.task("t1").unwrap().status, TaskStatus::Open);
    }

    #[test]
    fn only_a_running_entry_that_still_names_the_dead_pid_is_settled() {
        let death = DeathCause::Exited(ExitKind::Died);
        for (status, pid) in [("working", 8), ("dead", 7)] {
            let mut state = state(status, pid, None);
            let settled = on_agent_ended(&mut state, &settings(), "test", "agent-1", 7, death.clone(), 1_000);
            assert_eq!(settled, None, "{status} entry with pid {pid}");
            let task = state.graph.task("t1").unwrap();
            assert_eq!((&task.status, task.retry_count), (&TaskStatus::InProgress, 0), "{status} entry with pid {pid}");
        }
    }

    #[test]
    fn throttle_backs_off_then_gives_up() {
        let policy = CrashLoopPolicy { deaths_max: 2, window_ms: 1_000, backoffs_ms: vec![10, 20] };
        let mut crash_loop = CrashLoop::default();
        assert!(matches!(note_death(&mut crash_loop, &policy, 0), Throttle::None));
        assert!(matches!(note_death(&mut crash_loop, &policy, 1), Throttle::Backoff { wait_ms: 10 }));
        assert_eq!(crash_loop.not_before_ms, Some(11));
        assert!(matches!(note_death(&mut crash_loop, &policy, 2), Throttle::None));
        assert!(matches!(note_death(&mut crash_loop, &policy, 3), Throttle::Backoff { wait_ms: 20 }));
        assert!(matches!(note_death(&mut crash_loop, &policy, 4), Throttle::None));
        assert!(matches!(note_death(&mut crash_loop, &policy, 5), Throttle::GiveUp));
    }

    #[test]
    fn a_death_exactly_one_window_ago_no_longer_counts() {
        let policy = CrashLoopPolicy { deaths_max: 2, window_ms: 1_000, backoffs_ms: vec![10] };
        let mut crash_loop = CrashLoop::default();
        assert!(matches!(note_death(&mut crash_loop, &policy, 0), Throttle::None));
        assert!(matches!(note_death(&mut crash_loop, &policy, 1_000), Throttle::None));
        assert!(matches!(note_death(&mut crash_loop, &policy, 1_999), Throttle::Backoff { wait_ms: 10 }));
    }

    #[test]
    fn a_task_that_crashes_after_every_backoff_fails_with_the_crash_loop_as_its_reason() {
        let policy = CrashLoopPolicy { deaths_max: 1, window_ms: 1_000, backoffs_ms: vec![] };
        let mut task = Task::new("t1", "t1");
        task.status = TaskStatus::InProgress;
        task.assigned = Some("agent-4".into());
        settle_task(&mut task, &policy, "reaper", "agent-4", &DeathCause::Exited(ExitKind::Died), None, 0);
        assert_eq!(task.status, TaskStatus::Failed);
        assert_eq!(task.assigned, None);
        assert_eq!(task.retry_count, 0, "failing is not a re-queue");
        let reason = "crash loop: agent-4 ended (its process died) after every backoff";
        assert_eq!(task.failure_reason.as_deref(), Some(reason));
        assert_eq!(task.log.last().map(|entry| entry.message.as_str()), Some(reason));
    }

    #[test]
    fn deaths_outside_the_window_do_not_count() {
        let policy = CrashLoopPolicy { deaths_max: 2, window_ms: 1_000, backoffs_ms: vec![10] };
        let mut crash_loop = CrashLoop::default();
        assert!(matches!(note_death(&mut crash_loop, &policy, 0), Throttle::None));
        assert!(matches!(note_death(&mut crash_loop, &policy, 5_000), Throttle::None));
    }

    // Settling a task whose agent ended, on hand-made tasks.

    use crate::ops::fake::state_of;
    use serde_json::json;

    const NOW_MS: i64 = 600_000;

    fn in_progress() -> Task {
        let mut task = Task::new("t1", "t1");
        task.status = TaskStatus::InProgress;
        task.assigned = Some("agent-1".into());
        task.retry_count = 1;
        task
    }

    fn settled(cause: DeathCause, stop_requested_by: Option<&str>) -> Task {
        let mut task = in_progress();
        let by = stop_requested_by.map(str::to_string);
        settle_task(&mut task, &CrashLoopPolicy::default(), "reaper", "agent-1", &cause, by, NOW_MS);
        task
    }

    /// `in_progress()` after `change`, with one log entry by the reaper.
    fn expected(change: impl FnOnce(&mut Task), message: &str) -> Task {
        let mut task = in_progress();
        change(&mut task);
        task.push_log(NOW_MS, "reaper", message.to_string());
        task
    }

    #[test]
    fn an_agent_whose_command_exited_with_code_0_leaves_its_task_done() {
        let done = expected(
            |task| {
                task.status = TaskStatus::Done;
                task.completed_at = Some(format_rfc3339(NOW_MS));
            },
            "agent-1's command exited with code 0: done",
        );
        assert_eq!(settled(DeathCause::Exited(ExitKind::Code(0)), None), done, "not a re-queue: the count stays");
    }

    #[test]
    fn an_agent_whose_command_exited_with_another_code_leaves_its_task_failed_with_that_code() {
        let failed = expected(
            |task| {
                task.status = TaskStatus::Failed;
                task.failure_reason = Some("exit code 3".into());
            },
            "agent-1's command exited with code 3: failed",
        );
        assert_eq!(settled(DeathCause::Exited(ExitKind::Code(3)), None), failed);
    }

    #[test]
    fn a_death_somebody_asked_for_requeues_the_task_and_is_not_counted_as_a_crash() {
        let causes = [
            DeathCause::Exited(ExitKind::Code(0)),
            DeathCause::Exited(ExitKind::Code(143)),
            DeathCause::Exited(ExitKind::Died),
            DeathCause::EntryEnded(AgentStatus::Dead),
        ];
        for cause in causes {
            let requeued = expected(
                |task| {
                    task.status = TaskStatus::Open;
                    task.assigned = None;
                    task.retry_count = 2;
                },
                "agent-1 was stopped by wg retry (pid 9); re-queued (attempt 2)",
            );
            assert_eq!(settled(cause.clone(), Some("wg retry (pid 9)")), requeued, "{cause:?}: no crash loop noted");
        }
    }

    #[test]
    fn an_agent_that_died_requeues_its_task_and_the_death_is_noted_for_the_crash_loop_throttle() {
        let requeued = expected(
            |task| {
                task.status = TaskStatus::Open;
                task.assigned = None;
                task.retry_count = 2;
                task.crash_loop = Some(CrashLoop { deaths_ms: vec![NOW_MS], ..CrashLoop::default() });
            },
            "agent-1 ended: its process died; re-queued (attempt 2)",
        );
        assert_eq!(settled(DeathCause::Exited(ExitKind::Died), None), requeued);
    }

    #[test]
    fn the_death_that_completes_a_crash_loop_requeues_the_task_behind_a_backoff() {
        let policy = CrashLoopPolicy { deaths_max: 2, window_ms: 1_000, backoffs_ms: vec![60_000] };
        let mut task = in_progress();
        task.crash_loop = Some(CrashLoop { deaths_ms: vec![NOW_MS - 999], ..CrashLoop::default() });
        settle_task(&mut task, &policy, "reaper", "agent-1", &DeathCause::PidReused, None, NOW_MS);
        let backing_off = expected(
            |task| {
                task.status = TaskStatus::Open;
                task.assigned = None;
                task.retry_count = 2;
                let crash_loop =
                    CrashLoop { deaths_ms: vec![], backoffs_served: 1, not_before_ms: Some(NOW_MS + 60_000) };
                task.crash_loop = Some(crash_loop);
            },
            "agent-1 ended: its pid now belongs to another process; crash loop, re-queued after a 60 s backoff \
             (attempt 2)",
        );
        assert_eq!(task, backing_off);
    }

    #[test]
    fn every_death_cause_reads_as_the_end_of_a_sentence_about_the_agent() {
        let shown = [
            (DeathCause::Exited(ExitKind::Code(2)), "its process exited with code 2"),
            (DeathCause::Exited(ExitKind::Died), "its process died"),
            (DeathCause::PidReused, "its pid now belongs to another process"),
            (DeathCause::NotAProcess(PidRefused::Init), "its recorded pid is not an agent process (pid 1 is init)"),
            (DeathCause::NeverStarted, "it never started"),
            (DeathCause::SpawnFailed(SpawnError::NoFreePid), "it could not be spawned: no free pid"),
            (DeathCause::EntryEnded(AgentStatus::Failed), "its registry entry is failed"),
        ];
        for (cause, text) in shown {
            assert_eq!(cause.to_string(), text);
        }
    }

    // Settling an ended agent inside a transaction.

    fn agent_1(status: &str) -> serde_json::Value {
        json!({"id": "agent-1", "pid": 7, "task_id": "t1", "started_at": "x", "status": status})
    }

    fn end_agent_1(state: &mut State) -> Option<Reaped> {
        let died = DeathCause::Exited(ExitKind::Died);
        on_agent_ended(state, &settings(), "reaper", "agent-1", 7, died, NOW_MS)
    }

    #[test]
    fn an_ended_agent_whose_task_is_still_its_own_settles_the_task_and_its_entry_together() {
        let mut state =
            state_of(&[json!({"id": "t1", "status": "in-progress", "assigned": "agent-1"})], &[agent_1("working")]);
        let reaped = end_agent_1(&mut state).expect("settled");
        let expected = Reaped {
            agent_id: "agent-1".into(),
            task_id: "t1".into(),
            cause: DeathCause::Exited(ExitKind::Died),
            task_now: Some(TaskStatus::Open),
        };
        assert_eq!(reaped, expected);
        assert_eq!(state.registry.agent("agent-1").unwrap().status, AgentStatus::Dead);
        assert_eq!(state.graph.task("t1").unwrap().retry_count, 1);
    }

    #[test]
    fn an_ended_agent_whose_task_moved_on_ends_its_entry_and_leaves_the_task_alone() {
        let moved_on = [
            (json!({"id": "t1", "status": "open", "retry_count": 1}), AgentStatus::Dead),
            (json!({"id": "t1", "status": "in-progress", "assigned": "agent-2"}), AgentStatus::Dead),
            (json!({"id": "t1", "status": "done", "assigned": "agent-1"}), AgentStatus::Done),
            (json!({"id": "t1", "status": "failed", "assigned": "agent-1"}), AgentStatus::Failed),
        ];
        for (task, entry_status) in moved_on {
            let before = state_of(std::slice::from_ref(&task), &[agent_1("working")]);
            let mut state = before.clone();
            let reaped = end_agent_1(&mut state).expect("the entry is settled");
            assert_eq!(reaped.task_now, None, "{task}");
            assert_eq!(state.graph, before.graph, "{task}: the task is not touched");
            assert_eq!(state.registry.agent("agent-1").unwrap().status, entry_status, "{task}");
        }
    }

    // A sweep that finds several agents ended settles them together.

    /// t1, t2, t3 in progress for agent-1, -2, -3 (pids 7, 8, 9), every process exited with code 0.
    fn three_finished() -> Fake {
        let tasks: Vec<_> = (1..=3)
            .map(|n| json!({"id": format!("t{n}"), "status": "in-progress", "assigned": format!("agent-{n}")}))
            .collect();
        let agents: Vec<_> = (1..=3)
            .map(|n| {
                json!({"id": format!("agent-{n}"), "pid": 6 + n, "task_id": format!("t{n}"), "started_at": "x",
                       "status": "working"})
            })
            .collect();
        Fake::new(state_of(&tasks, &agents), NOW_MS, Liveness::Gone(ExitKind::Code(0)))
    }

    fn statuses(fake: &Fake) -> Vec<(TaskStatus, AgentStatus)> {
        let state = fake.state.borrow();
        let entry = |n: usize| state.registry.agent(&format!("agent-{n}")).unwrap().status.clone();
        (1..=3).map(|n| (state.graph.task(&format!("t{n}")).unwrap().status.clone(), entry(n))).collect()
    }

    #[test]
    fn every_agent_a_sweep_finds_ended_is_settled_in_one_transaction_after_the_look() {
        let fake = three_finished();
        let reaped = block_on(reap(fake.ctx(), &settings())).unwrap();
        let settled: Vec<_> = reaped.iter().map(|r| (r.agent_id.as_str(), r.task_now.clone())).collect();
        let done = Some(TaskStatus::Done);
        assert_eq!(settled, [("agent-1", done.clone()), ("agent-2", done.clone()), ("agent-3", done)]);
        assert_eq!(statuses(&fake), vec![(TaskStatus::Done, AgentStatus::Done); 3]);
        assert_eq!(fake.transactions.get(), 2, "one to read the watch list, one to settle all three");
    }

    #[test]
    fn a_batched_settlement_leaves_alone_an_agent_somebody_else_settled_after_its_diagnosis() {
        // A `wg retry` stops agent-1 and re-queues t1 while the sweep is still looking at the others.
        let fake = three_finished();
        fake.at_next_liveness(|state| {
            state.registry.agent_mut("agent-1").unwrap().status = AgentStatus::Dead;
            let task = state.graph.task_mut("t1").unwrap();
            requeue(task, NOW_MS, "wg retry (pid 9)", "Retried: hung".into());
        });
        let reaped = block_on(reap(fake.ctx(), &settings())).unwrap();
        let settled: Vec<_> = reaped.iter().map(|r| r.agent_id.as_str()).collect();
        assert_eq!(settled, ["agent-2", "agent-3"], "agent-1 was the retry's to settle");
        let (done, dead) = ((TaskStatus::Done, AgentStatus::Done), (TaskStatus::Open, AgentStatus::Dead));
        assert_eq!(statuses(&fake), [dead, done.clone(), done]);
        assert_eq!(fake.state.borrow().graph.task("t1").unwrap().retry_count, 1, "counted once, by the retry");
    }

    #[test]
    fn a_sweep_that_finds_every_agent_alive_commits_nothing_after_its_look() {
        let (fake, reaped, _) = sweep(state("working", 7, None), 1_000);
        assert_eq!(reaped, []);
        assert_eq!(fake.transactions.get(), 1, "only the look at the registry");
    }

    // The orphan sweep: in-progress tasks whose entry ended without settling them.

    #[test]
    fn an_in_progress_task_whose_entry_was_ended_by_a_kill_is_requeued_without_counting_a_crash() {
        let mut killed = agent_1("dead");
        killed["stop_requested"] = json!({"by": "wg agents kill (pid 3)", "at_ms": 1});
        let mut state = state_of(&[json!({"id": "t1", "status": "in-progress", "assigned": "agent-1"})], &[killed]);
        let reaped = settle_orphans(&mut state, &settings(), "reaper", NOW_MS);
        let expected = Reaped {
            agent_id: "agent-1".into(),
            task_id: "t1".into(),
            cause: DeathCause::EntryEnded(AgentStatus::Dead),
            task_now: Some(TaskStatus::Open),
        };
        assert_eq!(reaped, [expected]);
        let task = state.graph.task("t1").unwrap();
        assert_eq!((task.retry_count, &task.crash_loop), (1, &None));
        assert_eq!(
            task.log.last().unwrap().message,
            "agent-1 was stopped by wg agents kill (pid 3); re-queued (attempt 1)"
        );
    }

    #[test]
    fn the_orphan_sweep_leaves_running_entries_foreign_claims_and_other_tasks_entries_alone() {
        let tasks = [
            json!({"id": "t1", "status": "in-progress", "assigned": "agent-1"}),
            json!({"id": "t2", "status": "in-progress", "assigned": "someone"}),
            json!({"id": "t3", "status": "in-progress", "assigned": "agent-3"}),
            json!({"id": "t4", "status": "failed", "assigned": "agent-4"}),
        ];
        let agents = [
            agent_1("working"),
            json!({"id": "agent-3", "pid": 9, "task_id": "t0", "started_at": "x", "status": "dead"}),
            json!({"id": "agent-4", "pid": 9, "task_id": "t4", "started_at": "x", "status": "dead"}),
        ];
        let before = state_of(&tasks, &agents);
        let mut state = before.clone();
        assert_eq!(settle_orphans(&mut state, &settings(), "reaper", NOW_MS), []);
        assert_eq!(state, before);
    }
}
