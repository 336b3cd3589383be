//! `wg retry`: re-queue a task, stopping its agent first when one runs.
//!
//! Three transactions at most: claim (mark the agent as being stopped by this retry), stop the
//! process, then re-queue on the condition that the task is still the agent's. A second retry
//! that finds the claim leaves while the agent still runs (one kill, one count, one log entry);
//! once the agent is gone it re-queues the task itself if nobody has yet, as the requester may
//! have crashed after its signal, and otherwise leaves without writing. A retry that loses the
//! race to the reaper only logs its reason, the reaper having counted the death (S3, S7).

use super::stop::{stop_process, StopOptions, StopResult};
use super::{mark_agent_ended, requeue, still_running_for, OpError};
use crate::model::{ProcessRef, StopRequest, TaskStatus};
use crate::ports::{Clock, Ctx, Liveness, Processes, State, Store};
use crate::settings::Settings;
use crate::time::format_rfc3339;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RetryOutcome {
    /// The task was failed (or in progress with no live agent) and is open again.
    Requeued { from: TaskStatus, retry_count: u32 },
    /// The agent was stopped and the task re-opened; `by_reaper` when the reaper re-queued it
    /// first (then the count is the reaper's and this retry only logged its reason).
    Restarted { agent_id: String, pid: i64, stop: StopResult, by_reaper: bool, retry_count: u32 },
    /// The task was already open: nothing to do.
    AlreadyOpen,
    /// The task was open but held back by a crash-loop backoff until `until_ms`; the retry lifted
    /// it, so the service starts the task at its next poll. Not a new attempt: the death that
    /// started the backoff already re-queued and counted it.
    BackoffLifted { until_ms: i64 },
    /// Another `wg retry` is stopping this task's agent right now; it will finish the job.
    InFlight { agent_id: String, by: String },
    /// The agent finished the task while it was being stopped; the task stays done (S4).
    FinishedMeanwhile { agent_id: String },
}

/// What the claim transaction decided.
enum Claim {
    Done(RetryOutcome),
    Stop {
        agent_id: String,
        process: ProcessRef,
    },
    /// Another command asked this agent to stop, recently enough to be still at it.
    InFlight {
        agent_id: String,
        by: String,
        process: ProcessRef,
        age_ms: i64,
    },
}

pub async fn retry<C: Clock, P: Processes, S: Store>(
    ctx: Ctx<'_, C, P, S>,
    settings: &Settings,
    task_id: &str,
    reason: &str,
    stop: &StopOptions,
) -> Result<RetryOutcome, OpError> {
    let now_ms = ctx.clock.now_ms();
    let claim = ctx.store.transact(|state| claim(state, settings, ctx.actor, task_id, reason, now_ms)).await??;
    let (agent_id, process, stopped) = match claim {
        Claim::Done(outcome) => return Ok(outcome),
        Claim::Stop { agent_id, process } => {
            let stopped =
                stop_process(ctx, &agent_id, &process, stop.force, stop.grace_ms, settings.kill_wait_ms).await?;
            (agent_id, process, stopped)
        }
        Claim::InFlight { agent_id, by, process, age_ms } => {
            planted!(settings, DoubleCountRetries => planted::count_retry(ctx, task_id, reason, now_ms).await?);
            let taken_over = take_over_if_late(ctx, settings, task_id, &agent_id, &process, age_ms, reason).await?;
            return Ok(taken_over.unwrap_or(RetryOutcome::InFlight { agent_id, by }));
        }
    };
    let now_ms = ctx.clock.now_ms();
    planted!(settings, UnconditionalRetry => {
        return planted::requeue_unchecked(ctx, task_id, &agent_id, &process, stopped, reason, now_ms).await
    });
    let outcome = ctx
        .store
        .transact(|state| finish(state, ctx.actor, task_id, &agent_id, process.pid, stopped.clone(), reason, now_ms))
        .await?;
    Ok(outcome)
}

/// Finishes the job of a stop in flight whose requester is late (a requester at work is done
/// [`Settings::stop_max_ms`] after its request; later, it may have crashed after its signal) and
/// whose agent is gone, if the task still waits for its re-queue. If the requester (or the
/// reaper) made the re-queue meanwhile, this retry had nothing to do and writes nothing, so two
/// retries at once leave one count and one log entry. `None`: leave it to the requester.
async fn take_over_if_late<C: Clock, P: Processes, S: Store>(
    ctx: Ctx<'_, C, P, S>,
    settings: &Settings,
    task_id: &str,
    agent_id: &str,
    process: &ProcessRef,
    age_ms: i64,
    reason: &str,
) -> Result<Option<RetryOutcome>, OpError> {
    if age_ms < settings.stop_max_ms() as i64 {
        return Ok(None);
    }
    let Some(stopped) = already_stopped(ctx, process).await else { return Ok(None) };
    let now_ms = ctx.clock.now_ms();
    let taken_over = ctx
        .store
        .transact(|state| {
            let waiting = state.graph.task(task_id).is_some_and(|task| still_running_for(task, agent_id));
            waiting.then(|| finish(state, ctx.actor, task_id, agent_id, process.pid, stopped, reason, now_ms))
        })
        .await?;
    Ok(taken_over)
}

/// Whether the agent another command is stopping is gone already. Then nothing is left to stop,
/// only the re-queue, which nothing else may do (the requester may have crashed after its signal,
/// and a `wg agents kill` leaves the task to the reaper, which may not run): this retry does it,
/// on the usual condition, so it is counted once whoever gets there first.
async fn already_stopped<C: Clock, P: Processes, S: Store>(
    ctx: Ctx<'_, C, P, S>,
    process: &ProcessRef,
) -> Option<StopResult> {
    match ctx.processes.liveness(process).await {
        Liveness::Gone(_) => Some(StopResult::AlreadyGone),
        Liveness::Replaced => Some(StopResult::NotOurs("the pid now belongs to a process started later".into())),
        // Alive: the stop is under way. Refused: a `starting` entry (no pid yet), which the
        // dispatcher settles when it finds the stop request.
        Liveness::Alive | Liveness::Refused(_) => None,
    }
}

fn claim(
    state: &mut State,
    settings: &Settings,
    actor: &str,
    task_id: &str,
    reason: &str,
    now_ms: i64,
) -> Result<Claim, OpError> {
    let task = state.graph.task(task_id).ok_or_else(|| OpError::UnknownTask(task_id.to_string()))?;
    if task.is_companion() {
        return Err(OpError::Refused(format!(
            "{task_id} is an agency companion task; retry never changes companions, retry the task it belongs to"
        )));
    }
    match task.status.clone() {
        TaskStatus::Open => Ok(Claim::Done(lift_backoff(state, actor, task_id, reason, now_ms))),
        TaskStatus::Failed => {
            if let Some(max) = task.max_retries.filter(|max| task.retry_count >= *max) {
                return Err(OpError::Refused(format!(
                    "{task_id} has used {} of its {max} retries; raise max_retries in the graph to retry it again",
                    task.retry_count
                )));
            }
            let task = state.graph.task_mut(task_id).expect("found above");
            requeue(task, now_ms, actor, format!("Retried (was failed): {reason}"));
            task.crash_loop = None; // a person looked at it: the throttle starts afresh
            let retry_count = task.retry_count;
            Ok(Claim::Done(RetryOutcome::Requeued { from: TaskStatus::Failed, retry_count }))
        }
        TaskStatus::InProgress => claim_in_progress(state, settings, actor, task_id, reason, now_ms),
        other => {
            Err(OpError::Refused(format!("{task_id} is {other}; only failed and in-progress tasks can be retried")))
        }
    }
}

/// A retry of an open task lifts a crash-loop backoff, if one holds it back: the person (or agent)
/// retrying has looked at the task, so the throttle starts afresh, as it does when a failed task is
/// retried. Otherwise there is nothing to do.
fn lift_backoff(state: &mut State, actor: &str, task_id: &str, reason: &str, now_ms: i64) -> RetryOutcome {
    // Looked at before `task_mut`, which marks the line changed: a retry with nothing to do
    // writes nothing (another tool's formatting of the line survives, nobody is woken).
    let task = state.graph.task(task_id).expect("found by the claim");
    let Some(until_ms) = super::backoff_until(task, now_ms) else { return RetryOutcome::AlreadyOpen };
    let task = state.graph.task_mut(task_id).expect("found by the claim");
    task.crash_loop = None;
    let until = format_rfc3339(until_ms);
    task.push_log(now_ms, actor, format!("Retried: {reason} (lifted the crash-loop backoff until {until})"));
    RetryOutcome::BackoffLifted { until_ms }
}

fn claim_in_progress(
    state: &mut State,
    settings: &Settings,
    actor: &str,
    task_id: &str,
    reason: &str,
    now_ms: i64,
) -> Result<Claim, OpError> {
    let assigned = state.graph.task(task_id).and_then(|task| task.assigned.clone());
    let agent = assigned.as_deref().and_then(|agent_id| state.registry.agent(agent_id));
    let Some(agent) = agent.filter(|agent| agent.status.is_running()) else {
        // No live entry behind the task: nothing to stop, re-queue at once.
        let task = state.graph.task_mut(task_id).expect("checked by the caller");
        requeue(task, now_ms, actor, format!("Retried (its agent was not running): {reason}"));
        let retry_count = task.retry_count;
        return Ok(Claim::Done(RetryOutcome::Requeued { from: TaskStatus::InProgress, retry_count }));
    };
    let agent_id = agent.id.clone();
    let process = agent.process();
    if let Some(request) = &agent.stop_requested {
        let age_ms = now_ms.saturating_sub(request.at_ms);
        if age_ms < settings.stop_request_expiry_ms() as i64 {
            return Ok(Claim::InFlight { agent_id, by: request.by.clone(), process, age_ms });
        }
        // Older than any stop can take: whoever asked has crashed. Take it over.
    }
    let request = StopRequest { by: actor.to_string(), at_ms: now_ms };
    state.registry.agent_mut(&agent_id).expect("found above").stop_requested = Some(request);
    Ok(Claim::Stop { agent_id, process })
}

#[allow(clippy::too_many_arguments)]
fn finish(
    state: &mut State,
    actor: &str,
    task_id: &str,
    agent_id: &str,
    pid: i64,
    stop: StopResult,
    reason: &str,
    now_ms: i64,
) -> RetryOutcome {
    mark_agent_ended(state, agent_id, pid, now_ms);
    let task = state.graph.task(task_id).expect("tasks are never deleted");
    if task.status == TaskStatus::Done {
        let task = state.graph.task_mut(task_id).expect("found above");
        let message = format!("Retry ({reason}): {agent_id} finished the task while being stopped; left done");
        task.push_log(now_ms, actor, message);
        return RetryOutcome::FinishedMeanwhile { agent_id: agent_id.to_string() };
    }
    let by_reaper = !still_running_for(task, agent_id);
    let task = state.graph.task_mut(task_id).expect("found above");
    if by_reaper {
        let message = format!("Retry ({reason}): stopped {agent_id}; the reaper had already re-queued the task");
        task.push_log(now_ms, actor, message);
    } else {
        requeue(task, now_ms, actor, format!("Retried: {reason} (stopped {agent_id}, pid {pid})"));
    }
    RetryOutcome::Restarted { agent_id: agent_id.to_string(), pid, stop, by_reaper, retry_count: task.retry_count }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Graph;
    use crate::model::AgentStatus;
    use crate::registry::Registry;

    /// t1 in progress for agent-1, whose stop `wg retry (pid 1)` requested at 0.
    fn being_stopped() -> State {
        let graph = r#"{"kind":"task","id":"t1","status":"in-progress","assigned":"agent-1"}"#;
        let registry = r#"{"agents":{"agent-1":{"id":"agent-1","pid":7,"task_id":"t1","started_at":"x","status":"working",
            "stop_requested":{"by":"wg retry (pid 1)","at_ms":0}}},"next_agent_id":2}"#;
        State {
            graph: Graph::parse(graph.as_bytes()).unwrap(),
            registry: Registry::parse(registry.as_bytes()).unwrap(),
        }
    }

    /// A `wg agents kill` (or a retry) that asked for the stop and sent SIGTERM, then crashed: its
    /// stop request has not expired, but the agent is gone and the requester would have finished
    /// by now. Nothing else would re-queue the task without a service, so the retry does, once,
    /// and signals nothing.
    /// `wg retry t1 --reason hung` against `fake`, stopping as `settings` configure.
    fn retry_t1(fake: &crate::ops::fake::Fake, settings: &Settings) -> RetryOutcome {
        crate::block_on(retry(fake.ctx(), settings, "t1", "hung", &StopOptions::configured(settings))).unwrap()
    }

    #[test]
    fn a_retry_finishes_a_stop_in_flight_whose_agent_is_gone_and_whose_requester_is_late() {
        use crate::ops::fake::Fake;
        use crate::ports::ExitKind;
        let settings = Settings::default();
        let requester_done_ms = settings.stop_max_ms() as i64;
        assert!(requester_done_ms < settings.stop_request_expiry_ms() as i64, "not yet expired");
        let early = Fake::new(being_stopped(), requester_done_ms - 1, Liveness::Gone(ExitKind::Died));
        let outcome = retry_t1(&early, &settings);
        assert!(matches!(outcome, RetryOutcome::InFlight { .. }), "the requester may still finish: {outcome:?}");
        assert_eq!(*early.state.borrow(), being_stopped(), "nothing written");
        let fake = Fake::new(being_stopped(), requester_done_ms, Liveness::Gone(ExitKind::Died));
        let outcome = retry_t1(&fake, &settings);
        assert!(
            matches!(
                outcome,
                RetryOutcome::Restarted { stop: StopResult::AlreadyGone, by_reaper: false, retry_count: 1, .. }
            ),
            "{outcome:?}"
        );
        let state = fake.state.borrow();
        let task = state.graph.task("t1").unwrap();
        assert_eq!((task.status.clone(), task.retry_count), (TaskStatus::Open, 1));
        assert!(task.log.last().unwrap().message.contains("hung"), "{:?}", task.log);
        assert!(!state.registry.agent("agent-1").unwrap().status.is_running());
        assert!(fake.signals.borrow().is_empty(), "nothing left to signal");
    }

    #[test]
    fn a_retry_leaves_a_stop_in_flight_alone_while_its_agent_runs() {
        use crate::ops::fake::Fake;
        let fake = Fake::new(being_stopped(), 1_000, Liveness::Alive);
        let outcome = retry_t1(&fake, &Settings::default());
        assert!(matches!(outcome, RetryOutcome::InFlight { ref by, .. } if by == "wg retry (pid 1)"), "{outcome:?}");
        assert_eq!(*fake.state.borrow(), being_stopped(), "nothing written");
        assert!(fake.signals.borrow().is_empty());
    }

    #[test]
    fn a_retry_leaves_a_stop_in_flight_to_its_requester_until_it_outlived_any_stop() {
        let settings = Settings::default();
        let expiry_ms = settings.stop_request_expiry_ms() as i64;
        let mut state = being_stopped();
        let claim = claim_in_progress(&mut state, &settings, "wg retry (pid 2)", "t1", "hung", expiry_ms - 1).unwrap();
        assert!(matches!(claim, Claim::InFlight { ref by, .. } if by == "wg retry (pid 1)"));
        let mut state = being_stopped();
        let claim = claim_in_progress(&mut state, &settings, "wg retry (pid 2)", "t1", "hung", expiry_ms).unwrap();
        assert!(matches!(claim, Claim::Stop { ref agent_id, .. } if agent_id == "agent-1"), "taken over");
        let request = state.registry.agent("agent-1").unwrap().stop_requested.clone().unwrap();
        assert_eq!((request.by.as_str(), request.at_ms), ("wg retry (pid 2)", expiry_ms));
    }

    #[test]
    fn a_retry_of_a_task_in_a_crash_loop_backoff_lifts_it_once_and_logs_it_without_counting() {
        let graph = r#"{"kind":"task","id":"t1","status":"open","exec":"true","retry_count":2,
            "crash_loop":{"deaths_ms":[1,2],"backoffs_served":1,"not_before_ms":5000}}"#;
        let mut state = State {
            graph: Graph::parse(graph.replace('\n', "").as_bytes()).unwrap(),
            registry: Registry::parse(br#"{"agents":{},"next_agent_id":1}"#).unwrap(),
        };
        let outcome = lift_backoff(&mut state, "wg retry (pid 9)", "t1", "fixed the config", 1_000);
        assert_eq!(outcome, RetryOutcome::BackoffLifted { until_ms: 5_000 });
        let task = state.graph.task("t1").unwrap();
        assert_eq!((task.status.clone(), task.retry_count, task.crash_loop.is_none()), (TaskStatus::Open, 2, true));
        let entry = task.log.last().unwrap();
        assert!(entry.message.contains("fixed the config") && entry.message.contains("backoff"), "{entry:?}");
        assert_eq!(crate::ops::attempt_marked(&entry.message), None, "not a new attempt");
        let again = lift_backoff(&mut state, "wg retry (pid 9)", "t1", "fixed the config", 1_000);
        assert_eq!(again, RetryOutcome::AlreadyOpen, "nothing left to lift");
        assert_eq!(state.graph.task("t1").unwrap().log.len(), 1);
        let expired = graph.replace("5000", "900");
        let mut state = State {
            graph: Graph::parse(expired.replace('\n', "").as_bytes()).unwrap(),
            registry: Registry::parse(br#"{"agents":{},"next_agent_id":1}"#).unwrap(),
        };
        assert_eq!(lift_backoff(&mut state, "r", "t1", "x", 1_000), RetryOutcome::AlreadyOpen, "the backoff is over");
        assert!(state.graph.task("t1").unwrap().log.is_empty());
    }

    // The claim, on hand-made states: what each status leads to, and exactly what it writes.

    use crate::ops::fake::{state_of, Fake};
    use serde_json::json;

    const ACTOR: &str = "wg retry (pid 2)";
    const NOW_MS: i64 = 60_000;

    fn working_agent() -> serde_json::Value {
        json!({"id": "agent-1", "pid": 7, "task_id": "t1", "started_at": "x", "status": "working"})
    }

    fn claim_t1(state: &mut State) -> Result<Claim, OpError> {
        claim(state, &Settings::default(), ACTOR, "t1", "hung", NOW_MS)
    }

    /// The state after `change` to a copy of `before`, made through the same accessors an
    /// operation uses, so the comparison also covers which lines count as changed.
    fn after(before: &State, change: impl FnOnce(&mut State)) -> State {
        let mut expected = before.clone();
        change(&mut expected);
        expected
    }

    #[test]
    fn a_retry_of_a_task_not_in_the_graph_is_refused_naming_it() {
        let before = state_of(&[json!({"id": "t1", "status": "failed"})], &[]);
        let mut state = before.clone();
        let refused = claim(&mut state, &Settings::default(), ACTOR, "t9", "hung", NOW_MS);
        assert!(matches!(refused, Err(OpError::UnknownTask(ref id)) if id == "t9"));
        assert_eq!(state, before, "nothing written");
    }

    #[test]
    fn a_retry_of_a_companion_task_is_refused_whatever_its_status() {
        for status in ["failed", "open", "in-progress"] {
            let before = state_of(&[json!({"id": ".evaluate-t1", "status": status})], &[]);
            let mut state = before.clone();
            let refused = claim(&mut state, &Settings::default(), ACTOR, ".evaluate-t1", "hung", NOW_MS);
            let message = ".evaluate-t1 is an agency companion task; retry never changes companions, retry the \
                           task it belongs to";
            assert!(matches!(refused, Err(OpError::Refused(ref m)) if m == message), "{status}");
            assert_eq!(state, before, "{status}: nothing written");
        }
    }

    #[test]
    fn a_retry_of_a_done_or_abandoned_task_is_refused_and_writes_nothing() {
        for status in ["done", "abandoned"] {
            let before = state_of(&[json!({"id": "t1", "status": status})], &[]);
            let mut state = before.clone();
            let message = format!("t1 is {status}; only failed and in-progress tasks can be retried");
            assert!(matches!(claim_t1(&mut state), Err(OpError::Refused(ref m)) if *m == message), "{status}");
            assert_eq!(state, before, "{status}: nothing written");
        }
    }

    #[test]
    fn a_retry_of_an_open_task_finds_it_already_open_and_writes_nothing() {
        let before = state_of(&[json!({"id": "t1", "status": "open", "retry_count": 1})], &[]);
        let mut state = before.clone();
        assert!(matches!(claim_t1(&mut state), Ok(Claim::Done(RetryOutcome::AlreadyOpen))));
        assert_eq!(state.graph.task("t1"), before.graph.task("t1"));
        assert_eq!(state.registry, before.registry);
        // Not even touched: a line taken through `task_mut` is re-serialized on commit, which
        // would lose another tool's formatting of it and wake the service for nothing.
        assert!(!state.graph.is_changed(), "nothing to write");
    }

    #[test]
    fn a_retry_of_a_failed_task_reopens_it_counts_one_attempt_and_restarts_the_throttle() {
        let failed = json!({"id": "t1", "status": "failed", "retry_count": 1, "failure_reason": "exit code 3",
            "crash_loop": {"deaths_ms": [1], "backoffs_served": 2}});
        let before = state_of(&[failed], &[]);
        let mut state = before.clone();
        let outcome = claim_t1(&mut state);
        assert!(
            matches!(outcome, Ok(Claim::Done(RetryOutcome::Requeued { from: TaskStatus::Failed, retry_count: 2 }))),
            "the count raised once"
        );
        let expected = after(&before, |state| {
            let task = state.graph.task_mut("t1").unwrap();
            task.status = TaskStatus::Open;
            task.retry_count = 2;
            task.failure_reason = None;
            task.crash_loop = None;
            task.push_log(NOW_MS, ACTOR, "Retried (was failed): hung (attempt 2)".into());
        });
        assert_eq!(state, expected);
    }

    #[test]
    fn a_failed_task_is_retried_until_it_has_used_its_max_retries() {
        let failed = |retry_count: u32| {
            state_of(&[json!({"id": "t1", "status": "failed", "max_retries": 2, "retry_count": retry_count})], &[])
        };
        let mut state = failed(1);
        assert!(
            matches!(claim_t1(&mut state), Ok(Claim::Done(RetryOutcome::Requeued { retry_count: 2, .. }))),
            "one retry left"
        );
        assert_eq!(state.graph.task("t1").unwrap().status, TaskStatus::Open);
        for used in [2, 3] {
            let before = failed(used);
            let mut state = before.clone();
            let message =
                format!("t1 has used {used} of its 2 retries; raise max_retries in the graph to retry it again");
            assert!(matches!(claim_t1(&mut state), Err(OpError::Refused(ref m)) if *m == message), "{used} used");
            assert_eq!(state, before, "{used} used: nothing written");
        }
    }

    #[test]
    fn a_retry_of_an_in_progress_task_claims_the_stop_of_its_running_agent_and_changes_nothing_else() {
        for status in ["working", "starting", "frozen"] {
            let mut agent = working_agent();
            agent["status"] = json!(status);
            let before = state_of(&[json!({"id": "t1", "status": "in-progress", "assigned": "agent-1"})], &[agent]);
            let mut state = before.clone();
            let claimed = claim_t1(&mut state);
            assert!(
                matches!(claimed, Ok(Claim::Stop { ref agent_id, ref process }) if agent_id == "agent-1" && process.pid == 7),
                "{status}"
            );
            let expected = after(&before, |state| {
                let request = StopRequest { by: ACTOR.into(), at_ms: NOW_MS };
                state.registry.agent_mut("agent-1").unwrap().stop_requested = Some(request);
            });
            assert_eq!(state, expected, "{status}: only the stop request is written");
        }
    }

    #[test]
    fn a_retry_of_an_in_progress_task_without_a_running_agent_requeues_it_at_once() {
        let in_progress = json!({"id": "t1", "status": "in-progress", "assigned": "agent-1"});
        let mut dead = working_agent();
        dead["status"] = json!("dead");
        let unassigned = json!({"id": "t1", "status": "in-progress"});
        for (task, agents) in [(in_progress.clone(), vec![dead]), (in_progress, vec![]), (unassigned, vec![])] {
            let before = state_of(&[task], &agents);
            let mut state = before.clone();
            let outcome = claim_t1(&mut state);
            assert!(
                matches!(
                    outcome,
                    Ok(Claim::Done(RetryOutcome::Requeued { from: TaskStatus::InProgress, retry_count: 1 }))
                ),
                "{before:?}"
            );
            let expected = after(&before, |state| {
                let task = state.graph.task_mut("t1").unwrap();
                task.status = TaskStatus::Open;
                task.assigned = None;
                task.retry_count = 1;
                task.push_log(NOW_MS, ACTOR, "Retried (its agent was not running): hung (attempt 1)".into());
            });
            assert_eq!(state, expected, "the registry is left as it was");
        }
    }

    // The finish, once the agent is stopped: who re-queues, and what else is written.

    /// t1 (`task`) and agent-1, which this retry asked to stop at 0.
    fn stopped_by_this_retry(task: serde_json::Value, agent_status: &str) -> State {
        let mut agent = working_agent();
        agent["status"] = json!(agent_status);
        agent["stop_requested"] = json!({"by": ACTOR, "at_ms": 0});
        state_of(&[task], &[agent])
    }

    fn finish_t1(state: &mut State) -> RetryOutcome {
        finish(state, ACTOR, "t1", "agent-1", 7, StopResult::Stopped { escalated: true }, "hung", NOW_MS)
    }

    fn ended(state: &mut State, status: AgentStatus) {
        let agent = state.registry.agent_mut("agent-1").unwrap();
        agent.status = status;
        agent.completed_at = Some(format_rfc3339(NOW_MS));
    }

    #[test]
    fn a_retry_that_stopped_the_agent_requeues_the_task_and_ends_the_entry() {
        let before =
            stopped_by_this_retry(json!({"id": "t1", "status": "in-progress", "assigned": "agent-1"}), "working");
        let mut state = before.clone();
        let outcome = finish_t1(&mut state);
        let restarted = RetryOutcome::Restarted {
            agent_id: "agent-1".into(),
            pid: 7,
            stop: StopResult::Stopped { escalated: true },
            by_reaper: false,
            retry_count: 1,
        };
        assert_eq!(outcome, restarted);
        let expected = after(&before, |state| {
            ended(state, AgentStatus::Dead);
            let task = state.graph.task_mut("t1").unwrap();
            task.status = TaskStatus::Open;
            task.assigned = None;
            task.retry_count = 1;
            task.push_log(NOW_MS, ACTOR, "Retried: hung (stopped agent-1, pid 7) (attempt 1)".into());
        });
        assert_eq!(state, expected);
        let request = state.registry.agent("agent-1").unwrap().stop_requested.clone();
        assert_eq!(request.map(|request| request.by), Some(ACTOR.to_string()), "who ended it stays recorded");
    }

    #[test]
    fn when_the_reaper_requeued_first_the_retry_only_logs_its_reason_and_counts_nothing() {
        // The reaper settled the death (count 1, entry dead); in the second state the dispatcher
        // has since given the task to agent-2.
        let requeued = json!({"id": "t1", "status": "open", "retry_count": 1});
        let redispatched = json!({"id": "t1", "status": "in-progress", "assigned": "agent-2", "retry_count": 1});
        for task in [requeued, redispatched] {
            let before = stopped_by_this_retry(task, "dead");
            let mut state = before.clone();
            let outcome = finish_t1(&mut state);
            assert!(matches!(outcome, RetryOutcome::Restarted { by_reaper: true, retry_count: 1, .. }), "{outcome:?}");
            let expected = after(&before, |state| {
                let message = "Retry (hung): stopped agent-1; the reaper had already re-queued the task";
                state.graph.task_mut("t1").unwrap().push_log(NOW_MS, ACTOR, message.into());
            });
            assert_eq!(state, expected, "one log entry, nothing else");
        }
    }

    #[test]
    fn when_the_agent_finished_the_task_while_being_stopped_it_stays_done() {
        let done = json!({"id": "t1", "status": "done", "assigned": "agent-1", "completed_at": "y"});
        let before = stopped_by_this_retry(done, "working");
        let mut state = before.clone();
        assert_eq!(finish_t1(&mut state), RetryOutcome::FinishedMeanwhile { agent_id: "agent-1".into() });
        let expected = after(&before, |state| {
            ended(state, AgentStatus::Done);
            let message = "Retry (hung): agent-1 finished the task while being stopped; left done";
            state.graph.task_mut("t1").unwrap().push_log(NOW_MS, ACTOR, message.into());
        });
        assert_eq!(state, expected);
    }

    // The whole retry against the fake ports.

    #[test]
    fn a_retry_of_a_running_agent_sends_sigterm_once_and_requeues_its_task_once() {
        let in_progress = json!({"id": "t1", "status": "in-progress", "assigned": "agent-1"});
        let fake = Fake::new(state_of(&[in_progress], &[working_agent()]), NOW_MS, Liveness::Alive);
        let outcome = retry_t1(&fake, &Settings::default());
        let restarted = RetryOutcome::Restarted {
            agent_id: "agent-1".into(),
            pid: 7,
            stop: StopResult::Stopped { escalated: false },
            by_reaper: false,
            retry_count: 1,
        };
        assert_eq!(outcome, restarted);
        assert_eq!(*fake.signals.borrow(), [(7, crate::ports::Signal::Term)]);
        let state = fake.state.borrow();
        let task = state.graph.task("t1").unwrap();
        assert_eq!((&task.status, task.retry_count, task.log.len()), (&TaskStatus::Open, 1, 1));
        assert_eq!(state.registry.agent("agent-1").unwrap().status, AgentStatus::Dead);
    }

    #[test]
    fn a_late_takeover_writes_nothing_when_the_requester_requeued_the_task_meanwhile() {
        let settings = Settings::default();
        let late_ms = settings.stop_max_ms() as i64;
        let mut agent = working_agent();
        agent["stop_requested"] = json!({"by": "wg retry (pid 1)", "at_ms": 0});
        let in_progress = json!({"id": "t1", "status": "in-progress", "assigned": "agent-1"});
        let fake = Fake::new(state_of(&[in_progress], &[agent]), late_ms, Liveness::Gone(crate::ports::ExitKind::Died));
        // The requester commits its re-queue between the claim and the takeover's look.
        fake.at_next_liveness(|state| {
            requeue(state.graph.task_mut("t1").unwrap(), 1, "wg retry (pid 1)", "Retried: hung".into());
            mark_agent_ended(state, "agent-1", 7, 1);
        });
        let before_takeover = {
            let mut state = fake.state.borrow().clone();
            requeue(state.graph.task_mut("t1").unwrap(), 1, "wg retry (pid 1)", "Retried: hung".into());
            mark_agent_ended(&mut state, "agent-1", 7, 1);
            state
        };
        let outcome = retry_t1(&fake, &settings);
        assert_eq!(outcome, RetryOutcome::InFlight { agent_id: "agent-1".into(), by: "wg retry (pid 1)".into() });
        assert_eq!(*fake.state.borrow(), before_takeover, "one count, one log entry: the requester's");
        assert!(fake.signals.borrow().is_empty());
    }

    #[test]
    fn a_late_takeover_finds_a_reused_pid_not_ours_and_still_requeues_without_signalling() {
        let settings = Settings::default();
        let mut agent = working_agent();
        agent["stop_requested"] = json!({"by": "wg retry (pid 1)", "at_ms": 0});
        let in_progress = json!({"id": "t1", "status": "in-progress", "assigned": "agent-1"});
        let fake = Fake::new(state_of(&[in_progress], &[agent]), settings.stop_max_ms() as i64, Liveness::Replaced);
        let outcome = retry_t1(&fake, &settings);
        let not_ours = StopResult::NotOurs("the pid now belongs to a process started later".into());
        assert!(
            matches!(outcome, RetryOutcome::Restarted { ref stop, by_reaper: false, retry_count: 1, .. } if *stop == not_ours),
            "{outcome:?}"
        );
        assert!(fake.signals.borrow().is_empty(), "a pid that is not ours is never signalled");
    }
}
