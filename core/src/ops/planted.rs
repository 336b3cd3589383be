//! Planted bugs (FoundationDB's BUGGIFY): known bugs the simulator must prove it finds
//! (`wg-sim`'s `tests/planted.rs`, whose table names each bug's scenario, checker and seed budget).
//!
//! An operation names a bug in one line, at the rule the bug breaks:
//!
//! ```ignore
//! planted!(settings, UnconditionalRetry => return planted::requeue_unchecked(...).await);
//! ```
//!
//! With the `planted-bugs` feature the hook runs its buggy branch when `settings.planted_bug` is
//! that bug; without it the hook expands to nothing, so no normal build compiles a buggy branch.
//! The buggy bodies longer than a line live here, and exist only with the feature.

#[cfg(feature = "planted-bugs")]
use super::retry::RetryOutcome;
#[cfg(feature = "planted-bugs")]
use super::stop::StopResult;
#[cfg(feature = "planted-bugs")]
use super::{mark_agent_ended, requeue, DeathCause, OpError, Reaped};
#[cfg(feature = "planted-bugs")]
use crate::model::{ProcessRef, TaskStatus};
#[cfg(feature = "planted-bugs")]
use crate::ports::{Clock, Ctx, Processes, State, Store};

/// `planted!(settings, Bug => branch)`: runs `branch` when `settings` plant `Bug`; in `branch`,
/// `planted::` names this module. Expands to nothing without the `planted-bugs` feature.
#[cfg(feature = "planted-bugs")]
macro_rules! planted {
    ($settings:expr, $bug:ident => $branch:expr) => {
        if $settings.planted_bug == Some($crate::settings::PlantedBug::$bug) {
            use $crate::ops::planted;
            $branch;
        }
    };
}

#[cfg(not(feature = "planted-bugs"))]
macro_rules! planted {
    ($settings:expr, $bug:ident => $branch:expr) => {};
}

/// Bug 1 (`UnconditionalRetry`): after the stop, the task is re-queued without checking it is
/// still the stopped agent's (only that it is not done), so a reaper or a dispatch in between is
/// overwritten.
#[cfg(feature = "planted-bugs")]
pub(super) async fn requeue_unchecked<C: Clock, P: Processes, S: Store>(
    ctx: Ctx<'_, C, P, S>,
    task_id: &str,
    agent_id: &str,
    process: &ProcessRef,
    stopped: StopResult,
    reason: &str,
    now_ms: i64,
) -> Result<RetryOutcome, OpError> {
    let outcome = ctx
        .store
        .transact(|state| {
            mark_agent_ended(state, agent_id, process.pid, now_ms);
            let task = state.graph.task_mut(task_id).expect("tasks are never deleted");
            if task.status != TaskStatus::Done {
                requeue(task, now_ms, ctx.actor, format!("Retried: {reason}"));
            }
            RetryOutcome::Restarted {
                agent_id: agent_id.to_string(),
                pid: process.pid,
                stop: stopped.clone(),
                by_reaper: false,
                retry_count: task.retry_count,
            }
        })
        .await?;
    Ok(outcome)
}

/// Bug 2 (`ReaperUnchecked`): the reaper re-queues the dead agent's task whoever it belongs to
/// now, even when done.
#[cfg(feature = "planted-bugs")]
pub(super) fn settle_unchecked(
    state: &mut State,
    actor: &str,
    agent_id: &str,
    pid: i64,
    task_id: String,
    cause: DeathCause,
    now_ms: i64,
) -> Option<Reaped> {
    let task_now = state.graph.task_mut(&task_id).map(|task| {
        task.status = TaskStatus::Open;
        task.assigned = None;
        task.retry_count += 1;
        task.push_log(now_ms, actor, format!("{agent_id} ended: {cause}; re-queued"));
        task.status.clone()
    });
    mark_agent_ended(state, agent_id, pid, now_ms);
    Some(Reaped { agent_id: agent_id.to_string(), task_id, cause, task_now })
}

/// Bug 3 (`DoubleCountRetries`): a retry that finds another retry in flight counts an attempt
/// and logs its reason too.
#[cfg(feature = "planted-bugs")]
pub(super) async fn count_retry<C: Clock, P: Processes, S: Store>(
    ctx: Ctx<'_, C, P, S>,
    task_id: &str,
    reason: &str,
    now_ms: i64,
) -> Result<(), OpError> {
    ctx.store
        .transact(|state| {
            let task = state.graph.task_mut(task_id).expect("found by the claim");
            task.retry_count += 1;
            task.push_log(now_ms, ctx.actor, format!("Retried: {reason}"));
        })
        .await?;
    Ok(())
}

/// Bug 4 (`SplitReap`): the non-atomic reap. Instead of settling every dead agent of the sweep
/// in one transaction, each agent is marked dead in one transaction and its task re-queued in
/// another, which does not check that the task is still this agent's (only that it is not done).
/// The split alone is now repaired by the orphan sweep (a dead entry beside an in-progress task
/// is a legitimate, transient state); what stays wrong is the second transaction acting on a
/// task that a retry re-queued, or the dispatcher gave to a new agent, in between.
#[cfg(feature = "planted-bugs")]
pub(super) async fn split_reap<C: Clock, P: Processes, S: Store>(
    ctx: Ctx<'_, C, P, S>,
    agent_id: &str,
    pid: i64,
    now_ms: i64,
) -> Result<(), OpError> {
    let task_id = ctx
        .store
        .transact(|state| {
            let task_id =
                state.registry.agent(agent_id).filter(|a| a.pid == pid && a.status.is_running())?.task_id.clone();
            mark_agent_ended(state, agent_id, pid, now_ms);
            Some(task_id)
        })
        .await?;
    let Some(task_id) = task_id else { return Ok(()) };
    ctx.store
        .transact(|state| {
            if let Some(task) = state.graph.task_mut_if(&task_id, |task| task.status != TaskStatus::Done) {
                requeue(task, now_ms, ctx.actor, format!("{agent_id} ended; re-queued"));
            }
        })
        .await?;
    Ok(())
}

// Bug 5 (`SignalWithoutIdentity`) is honoured by the process port: the simulator's signals the
// pid without asking whose it is now (`wg-sim`'s `world/processes.rs`, its own `planted!` hook).
