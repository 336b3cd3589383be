//! `wg agents kill`: stop an agent's process tree and mark its entry dead. The task is left to
//! the reaper, whose next sweep (woken by this commit) re-queues it if it is still this agent's;
//! the entry keeps its stop request, so that re-queue is not counted as a crash.

use super::stop::{stop_process, StopResult};
use super::{mark_agent_ended, OpError};
use crate::model::{AgentStatus, ProcessRef, StopRequest};
use crate::ports::{Clock, Ctx, Liveness, Processes, Store};
use crate::settings::Settings;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KillOptions {
    pub force: bool,
    pub grace_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KillOutcome {
    /// No such entry: nothing to do.
    Unknown,
    /// The entry was already ended (its status is given), or its process had already exited.
    AlreadyDead { status: AgentStatus },
    /// The process tree is gone; `escalated` when SIGTERM was not enough.
    Killed { pid: i64, escalated: bool },
    /// The recorded pid is not the agent's process any more; nothing was signalled and the
    /// entry was marked dead.
    NotOurs { pid: i64, why: String },
}

pub async fn kill_agent<C: Clock, P: Processes, S: Store>(
    ctx: Ctx<'_, C, P, S>,
    settings: &Settings,
    agent_id: &str,
    options: &KillOptions,
) -> Result<KillOutcome, OpError> {
    let now_ms = ctx.clock.now_ms();
    let found = ctx
        .store
        .transact(|state| {
            let agent = state.registry.agent(agent_id)?;
            let found = (agent.status.clone(), agent.process());
            if agent.status.is_running() && agent.stop_requested.is_none() {
                // Tells the reaper this death was asked for, so it is not counted as a crash.
                let request = StopRequest { by: ctx.actor.to_string(), at_ms: now_ms };
                state.registry.agent_mut(agent_id).expect("found above").stop_requested = Some(request);
            }
            Some(found)
        })
        .await?;
    let Some((status, process)) = found else { return Ok(KillOutcome::Unknown) };
    if !status.is_running() {
        return Ok(KillOutcome::AlreadyDead { status });
    }
    let outcome = match ctx.processes.liveness(&process).await {
        Liveness::Gone(_) => KillOutcome::AlreadyDead { status: AgentStatus::Dead },
        Liveness::Replaced => {
            KillOutcome::NotOurs { pid: process.pid, why: "the pid now belongs to a process started later".into() }
        }
        Liveness::Refused(why) => KillOutcome::NotOurs { pid: process.pid, why },
        Liveness::Alive => {
            match stop_process(ctx, agent_id, &process, options.force, options.grace_ms, settings.kill_wait_ms).await? {
                StopResult::Stopped { escalated } => KillOutcome::Killed { pid: process.pid, escalated },
                StopResult::AlreadyGone => KillOutcome::AlreadyDead { status: AgentStatus::Dead },
                StopResult::NotOurs(why) => KillOutcome::NotOurs { pid: process.pid, why },
            }
        }
    };
    mark_dead(ctx, agent_id, &process).await?;
    Ok(outcome)
}

async fn mark_dead<C: Clock, P: Processes, S: Store>(
    ctx: Ctx<'_, C, P, S>,
    agent_id: &str,
    process: &ProcessRef,
) -> Result<(), OpError> {
    let now_ms = ctx.clock.now_ms();
    ctx.store.transact(|state| mark_agent_ended(state, agent_id, process.pid, now_ms)).await?;
    Ok(())
}
