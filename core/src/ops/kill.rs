//! `wg agents kill`: stop an agent's process tree and mark its entry dead. The task is left to
//! the reaper, whose next sweep (woken by this commit) re-queues it if it is still this agent's;
//! the entry keeps its stop request, so that re-queue is not counted as a crash.

use super::stop::{stop_process, StopOptions, StopResult};
use super::{mark_agent_ended, OpError};
use crate::model::{AgentStatus, ProcessRef, StopRequest};
use crate::ports::{Clock, Ctx, Liveness, Processes, Store};
use crate::settings::Settings;

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
    options: &StopOptions,
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
        Liveness::Refused(why) => KillOutcome::NotOurs { pid: process.pid, why: why.to_string() },
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block_on;
    use crate::graph::Graph;
    use crate::ops::fake::Fake;
    use crate::ports::{ExitKind, Signal, State};
    use crate::registry::Registry;

    fn state(status: &str, stop_requested_by: Option<&str>) -> State {
        let graph = r#"{"kind":"task","id":"t1","status":"in-progress","assigned":"agent-1"}"#;
        let mut agent =
            serde_json::json!({"id": "agent-1", "pid": 7, "task_id": "t1", "status": status, "started_at": "x"});
        if let Some(by) = stop_requested_by {
            agent["stop_requested"] = serde_json::json!({"by": by, "at_ms": 0});
        }
        let registry = serde_json::json!({"agents": {"agent-1": agent}, "next_agent_id": 2}).to_string();
        State {
            graph: Graph::parse(graph.as_bytes()).unwrap(),
            registry: Registry::parse(registry.as_bytes()).unwrap(),
        }
    }

    fn kill(fake: &Fake) -> KillOutcome {
        let options = StopOptions { force: false, grace_ms: 1_000 };
        block_on(kill_agent(fake.ctx(), &Settings::default(), "agent-1", &options)).unwrap()
    }

    #[test]
    fn kill_of_an_ended_agent_signals_and_writes_nothing() {
        let fake = Fake::new(state("dead", None), 1_000, Liveness::Alive);
        assert_eq!(kill(&fake), KillOutcome::AlreadyDead { status: AgentStatus::Dead });
        assert_eq!(*fake.state.borrow(), state("dead", None));
        assert_eq!(*fake.signals.borrow(), []);
    }

    #[test]
    fn kill_of_an_agent_whose_process_is_gone_marks_its_entry_dead_and_keeps_the_first_stop_request() {
        let fake = Fake::new(state("working", Some("wg retry (pid 1)")), 1_000, Liveness::Gone(ExitKind::Died));
        assert_eq!(kill(&fake), KillOutcome::AlreadyDead { status: AgentStatus::Dead });
        let state = fake.state.borrow();
        let agent = state.registry.agent("agent-1").unwrap();
        assert_eq!(agent.status, AgentStatus::Dead);
        assert_eq!(agent.stop_requested.as_ref().map(|request| request.by.as_str()), Some("wg retry (pid 1)"));
        assert_eq!(state.graph.task("t1").unwrap().status, crate::model::TaskStatus::InProgress, "left to the reaper");
        assert_eq!(*fake.signals.borrow(), []);
    }

    fn kill_with(fake: &Fake, force: bool) -> Result<KillOutcome, OpError> {
        let options = StopOptions { force, grace_ms: 1_000 };
        block_on(kill_agent(fake.ctx(), &Settings::default(), "agent-1", &options))
    }

    /// `state(status, None)` once the kill has asked for the stop and (when `ended`) ended the
    /// entry, at 1 000: the task is never touched.
    fn killed(ended: bool) -> State {
        let mut expected = state("working", None);
        let agent = expected.registry.agent_mut("agent-1").unwrap();
        agent.stop_requested = Some(StopRequest { by: "test".into(), at_ms: 1_000 });
        if ended {
            agent.status = AgentStatus::Dead;
            agent.completed_at = Some(crate::time::format_rfc3339(1_000));
        }
        expected
    }

    #[test]
    fn kill_of_an_agent_not_in_the_registry_does_nothing() {
        let fake = Fake::new(state("working", None), 1_000, Liveness::Alive);
        let options = StopOptions { force: false, grace_ms: 1_000 };
        let outcome = block_on(kill_agent(fake.ctx(), &Settings::default(), "agent-9", &options));
        assert_eq!(outcome, Ok(KillOutcome::Unknown));
        assert_eq!(*fake.state.borrow(), state("working", None));
        assert_eq!(*fake.signals.borrow(), []);
    }

    #[test]
    fn kill_of_a_running_agent_stops_it_with_sigterm_and_marks_its_entry_dead_leaving_the_task_to_the_reaper() {
        let fake = Fake::new(state("working", None), 1_000, Liveness::Alive);
        assert_eq!(kill(&fake), KillOutcome::Killed { pid: 7, escalated: false });
        assert_eq!(*fake.signals.borrow(), [(7, Signal::Term)]);
        assert_eq!(*fake.state.borrow(), killed(true), "the stop request says the death was asked for");
    }

    #[test]
    fn kill_escalates_to_sigkill_for_an_agent_that_ignores_sigterm() {
        let mut fake = Fake::new(state("working", None), 1_000, Liveness::Alive);
        fake.exits_on = Some(Signal::Kill);
        assert_eq!(kill(&fake), KillOutcome::Killed { pid: 7, escalated: true });
        assert_eq!(*fake.signals.borrow(), [(7, Signal::Term), (7, Signal::Kill)]);
        assert_eq!(*fake.waits.borrow(), [1_000 + 1_000, 1_000 + Settings::default().kill_wait_ms as i64]);
    }

    #[test]
    fn a_forced_kill_starts_at_sigkill() {
        let fake = Fake::new(state("working", None), 1_000, Liveness::Alive);
        assert_eq!(kill_with(&fake, true), Ok(KillOutcome::Killed { pid: 7, escalated: false }));
        assert_eq!(*fake.signals.borrow(), [(7, Signal::Kill)]);
        assert_eq!(*fake.state.borrow(), killed(true));
    }

    #[test]
    fn kill_of_an_agent_whose_pid_is_not_its_process_signals_nothing_and_marks_the_entry_dead() {
        let replaced = Fake::new(state("working", None), 1_000, Liveness::Replaced);
        let why = "the pid now belongs to a process started later".to_string();
        assert_eq!(kill(&replaced), KillOutcome::NotOurs { pid: 7, why });
        assert_eq!(*replaced.signals.borrow(), []);
        assert_eq!(*replaced.state.borrow(), killed(true));
        // The pid guard refuses pid 1 outright.
        let mut init = state("working", None);
        init.registry.agent_mut("agent-1").unwrap().pid = 1;
        let refused = Fake::new(init, 1_000, Liveness::Alive);
        assert!(matches!(kill(&refused), KillOutcome::NotOurs { pid: 1, .. }));
        assert_eq!(*refused.signals.borrow(), []);
        assert_eq!(refused.state.borrow().registry.agent("agent-1").unwrap().status, AgentStatus::Dead);
    }

    #[test]
    fn a_process_that_survives_sigkill_is_an_error_and_its_entry_keeps_its_status() {
        let mut fake = Fake::new(state("working", None), 1_000, Liveness::Alive);
        fake.exits_on = None;
        assert_eq!(kill_with(&fake, false), Err(OpError::WillNotDie { agent_id: "agent-1".into(), pid: 7 }));
        assert_eq!(*fake.signals.borrow(), [(7, Signal::Term), (7, Signal::Kill)]);
        assert_eq!(*fake.state.borrow(), killed(false), "only the stop request was written");
    }
}
