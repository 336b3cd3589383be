//! Stopping one agent process tree: SIGTERM, wait for the exit event up to the grace period,
//! SIGKILL, wait again. Shared by `agents kill`, `retry` and the reaper's heartbeat timeout.

use super::OpError;
use crate::model::ProcessRef;
use crate::ports::{Clock, Ctx, ExitWait, Processes, Signal, SignalOutcome, Store};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopResult {
    /// The process exited after SIGTERM (or after SIGKILL when `escalated`).
    Stopped { escalated: bool },
    /// It was already gone when we looked.
    AlreadyGone,
    /// The identity check failed: the pid is not our agent's any more. Nothing was signalled.
    NotOurs(String),
}

/// Stops `process`. With `force`, starts at SIGKILL. Bounded: grace + kill wait at most.
pub async fn stop_process<C: Clock, P: Processes, S: Store>(
    ctx: Ctx<'_, C, P, S>,
    agent_id: &str,
    process: &ProcessRef,
    force: bool,
    grace_ms: u64,
    kill_wait_ms: u64,
) -> Result<StopResult, OpError> {
    let first = if force { Signal::Kill } else { Signal::Term };
    match ctx.processes.signal(process, first).await {
        SignalOutcome::Gone => return Ok(StopResult::AlreadyGone),
        SignalOutcome::NotOurs(why) => return Ok(StopResult::NotOurs(why)),
        SignalOutcome::Delivered => {}
    }
    if !force {
        let deadline_ms = ctx.clock.now_ms() + grace_ms as i64;
        if ctx.processes.wait_exit(process, deadline_ms).await == ExitWait::Exited {
            return Ok(StopResult::Stopped { escalated: false });
        }
        match ctx.processes.signal(process, Signal::Kill).await {
            SignalOutcome::Gone => return Ok(StopResult::Stopped { escalated: false }),
            SignalOutcome::NotOurs(why) => return Ok(StopResult::NotOurs(why)),
            SignalOutcome::Delivered => {}
        }
    }
    let deadline_ms = ctx.clock.now_ms() + kill_wait_ms as i64;
    match ctx.processes.wait_exit(process, deadline_ms).await {
        ExitWait::Exited => Ok(StopResult::Stopped { escalated: !force }),
        ExitWait::TimedOut => Err(OpError::WillNotDie { agent_id: agent_id.to_string(), pid: process.pid }),
    }
}
