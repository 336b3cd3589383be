//! Stopping one agent process tree: SIGTERM, wait for the exit event up to the grace period,
//! SIGKILL, wait again. Shared by `agents kill`, `retry` and the reaper's heartbeat timeout.

use super::OpError;
use crate::model::ProcessRef;
use crate::ports::{Clock, Ctx, ExitWait, Processes, Signal, SignalOutcome, Store};

/// How to stop an agent, as `wg agents kill` and `wg retry` are told (`--force`, `--grace`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StopOptions {
    /// SIGKILL at once, without SIGTERM first.
    pub force: bool,
    /// Time between SIGTERM and SIGKILL.
    pub grace_ms: u64,
}

impl StopOptions {
    /// SIGTERM, then SIGKILL after the configured grace period.
    pub fn configured(settings: &crate::settings::Settings) -> StopOptions {
        StopOptions { force: false, grace_ms: settings.grace_ms }
    }
}

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
        SignalOutcome::NotOurs(why) => return Ok(StopResult::NotOurs(why.to_string())),
        SignalOutcome::Delivered => {}
    }
    if !force {
        let deadline_ms = ctx.clock.now_ms() + grace_ms as i64;
        if ctx.processes.wait_exit(process, deadline_ms).await == ExitWait::Exited {
            return Ok(StopResult::Stopped { escalated: false });
        }
        match ctx.processes.signal(process, Signal::Kill).await {
            SignalOutcome::Gone => return Ok(StopResult::Stopped { escalated: false }),
            SignalOutcome::NotOurs(why) => return Ok(StopResult::NotOurs(why.to_string())),
            SignalOutcome::Delivered => {}
        }
    }
    let deadline_ms = ctx.clock.now_ms() + kill_wait_ms as i64;
    match ctx.processes.wait_exit(process, deadline_ms).await {
        ExitWait::Exited => Ok(StopResult::Stopped { escalated: !force }),
        ExitWait::TimedOut => Err(OpError::WillNotDie { agent_id: agent_id.to_string(), pid: process.pid }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block_on;
    use crate::graph::Graph;
    use crate::ops::fake::Fake;
    use crate::ports::{Liveness, NotOurs, Signal, State};
    use crate::registry::Registry;

    const NOW_MS: i64 = 10_000;
    const GRACE_MS: u64 = 2_000;
    const KILL_WAIT_MS: u64 = 500;

    /// Stops pid 7 (which exits on `exits_on`) at `NOW_MS`: the result, the signals sent and the
    /// deadline of each wait for the exit.
    fn stop(exits_on: Option<Signal>, force: bool) -> (Result<StopResult, OpError>, Vec<Signal>, Vec<i64>) {
        stop_with(exits_on, Vec::new(), force)
    }

    /// [`stop`], with each signal finding what `outcomes` says in turn (then delivered).
    fn stop_with(
        exits_on: Option<Signal>,
        outcomes: Vec<SignalOutcome>,
        force: bool,
    ) -> (Result<StopResult, OpError>, Vec<Signal>, Vec<i64>) {
        let state = State { graph: Graph::parse(b"").unwrap(), registry: Registry::empty() };
        let mut fake = Fake::new(state, NOW_MS, Liveness::Alive);
        fake.exits_on = exits_on;
        *fake.signal_outcomes.borrow_mut() = outcomes.into();
        let process = ProcessRef { pid: 7, start_ticks: Some(1), started_at_ms: None };
        let result = block_on(stop_process(fake.ctx(), "agent-1", &process, force, GRACE_MS, KILL_WAIT_MS));
        let signals = fake.signals.borrow().iter().map(|(_, signal)| *signal).collect();
        let waits = fake.waits.borrow().clone();
        (result, signals, waits)
    }

    #[test]
    fn sigterm_is_enough_for_a_cooperative_agent() {
        let (result, signals, waits) = stop(Some(Signal::Term), false);
        assert_eq!(result, Ok(StopResult::Stopped { escalated: false }));
        assert_eq!((signals, waits), (vec![Signal::Term], vec![NOW_MS + GRACE_MS as i64]));
    }

    #[test]
    fn an_agent_ignoring_sigterm_gets_sigkill_after_the_grace_period() {
        let (result, signals, waits) = stop(Some(Signal::Kill), false);
        assert_eq!(result, Ok(StopResult::Stopped { escalated: true }));
        assert_eq!(signals, [Signal::Term, Signal::Kill]);
        assert_eq!(waits, [NOW_MS + GRACE_MS as i64, NOW_MS + KILL_WAIT_MS as i64]);
    }

    #[test]
    fn force_starts_at_sigkill_and_is_no_escalation() {
        let (result, signals, waits) = stop(Some(Signal::Kill), true);
        assert_eq!(result, Ok(StopResult::Stopped { escalated: false }));
        assert_eq!((signals, waits), (vec![Signal::Kill], vec![NOW_MS + KILL_WAIT_MS as i64]));
    }

    #[test]
    fn a_process_that_survives_sigkill_is_reported_not_hidden() {
        let (result, signals, _) = stop(None, false);
        assert_eq!(result, Err(OpError::WillNotDie { agent_id: "agent-1".into(), pid: 7 }));
        assert_eq!(signals, [Signal::Term, Signal::Kill]);
    }

    /// [`stop_with`] a process that never exits of its own.
    fn stop_finding(outcomes: Vec<SignalOutcome>, force: bool) -> (Result<StopResult, OpError>, Vec<Signal>, Vec<i64>) {
        stop_with(None, outcomes, force)
    }

    #[test]
    fn a_process_gone_before_the_first_signal_is_already_gone_and_not_waited_for() {
        for force in [false, true] {
            let (result, signals, waits) = stop_finding(vec![SignalOutcome::Gone], force);
            assert_eq!(result, Ok(StopResult::AlreadyGone), "force {force}");
            assert_eq!((signals, waits), (vec![], vec![]), "force {force}");
        }
    }

    #[test]
    fn a_pid_that_is_not_the_agents_is_reported_and_never_waited_for() {
        for force in [false, true] {
            let (result, signals, waits) = stop_finding(vec![SignalOutcome::NotOurs(NotOurs::Reused(7))], force);
            assert_eq!(result, Ok(StopResult::NotOurs("pid 7 was reused".into())), "force {force}");
            assert_eq!((signals, waits), (vec![], vec![]), "force {force}");
        }
    }

    #[test]
    fn a_process_that_exits_just_as_the_grace_period_ends_is_stopped_without_escalation() {
        let (result, signals, waits) = stop_finding(vec![SignalOutcome::Delivered, SignalOutcome::Gone], false);
        assert_eq!(result, Ok(StopResult::Stopped { escalated: false }));
        assert_eq!((signals, waits), (vec![Signal::Term], vec![NOW_MS + GRACE_MS as i64]));
    }

    #[test]
    fn a_sigkill_the_identity_check_refuses_after_the_grace_period_is_reported_not_waited_on() {
        let outcomes = vec![SignalOutcome::Delivered, SignalOutcome::NotOurs(NotOurs::PermissionDenied(7))];
        let (result, signals, waits) = stop_finding(outcomes, false);
        assert_eq!(result, Ok(StopResult::NotOurs("permission denied: signalling pid 7".into())));
        assert_eq!((signals, waits), (vec![Signal::Term], vec![NOW_MS + GRACE_MS as i64]));
    }
}
