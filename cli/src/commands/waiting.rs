//! Saying what a stop waits for. `wg retry` and `wg agents kill` on an agent that ignores SIGTERM
//! wait the whole grace period; on a terminal they say so once per wait, on stderr, so the
//! silence is not mistaken for a hang: "waiting for agent-3 (pid 1234) to exit after SIGTERM;
//! SIGKILL in 4s".
//!
//! A [`Processes`] port around the real one: it passes every call through, remembers the last
//! signal it delivered, and announces each wait for an exit before it starts.

use crate::system::clock::epoch_ms_now;
use crate::system::processes::SystemProcesses;
use crate::system::store::FileStore;
use std::cell::Cell;
use std::io::{IsTerminal, Write};
use wg_core::model::ProcessRef;
use wg_core::ports::{ExitWait, Liveness, Processes, Signal, SignalOutcome, SpawnError, SpawnRequest, Spawned};
use wg_core::time::EpochMs;

pub struct Announcing<'a> {
    inner: &'a SystemProcesses,
    /// Where the agent's id is read from (the port is told only the process).
    store: &'a FileStore,
    /// Whether to say anything: only a person at a terminal is helped by it.
    enabled: bool,
    last_signal: Cell<Option<Signal>>,
}

impl<'a> Announcing<'a> {
    /// Announces waits when stderr is a terminal.
    pub fn on_terminal(inner: &'a SystemProcesses, store: &'a FileStore) -> Self {
        Announcing { inner, store, enabled: std::io::stderr().is_terminal(), last_signal: Cell::new(None) }
    }

    /// The agent whose process this is, as the registry names it.
    fn agent_of(&self, process: &ProcessRef) -> Option<String> {
        let state = self.store.read().ok()?;
        let agent = state.registry.agents().find(|agent| agent.pid == process.pid && agent.status.is_running())?;
        Some(agent.id.clone())
    }
}

/// What is said before waiting `left_ms` for `who` to exit after `signal`.
pub fn wait_message(who: &str, signal: Signal, left_ms: u64) -> String {
    let left = seconds(left_ms);
    match signal {
        Signal::Term => format!("waiting for {who} to exit after SIGTERM; SIGKILL in {left}"),
        Signal::Kill => format!("waiting for {who} to exit after SIGKILL; giving up in {left}"),
    }
}

/// `4s`, `0.2s`: one decimal, none when it is zero.
fn seconds(ms: u64) -> String {
    let text = format!("{:.1}", ms as f64 / 1000.0);
    format!("{}s", text.trim_end_matches(".0"))
}

impl Processes for Announcing<'_> {
    async fn spawn(&self, request: &SpawnRequest) -> Result<Spawned, SpawnError> {
        self.inner.spawn(request).await
    }

    async fn release(&self, spawned: &Spawned, go: bool) {
        self.inner.release(spawned, go).await
    }

    async fn liveness(&self, process: &ProcessRef) -> Liveness {
        self.inner.liveness(process).await
    }

    async fn signal(&self, process: &ProcessRef, signal: Signal) -> SignalOutcome {
        let outcome = self.inner.signal(process, signal).await;
        if outcome == SignalOutcome::Delivered {
            self.last_signal.set(Some(signal));
        }
        outcome
    }

    async fn wait_exit(&self, process: &ProcessRef, deadline_ms: EpochMs) -> ExitWait {
        if let (true, Some(signal)) = (self.enabled, self.last_signal.get()) {
            let who = match self.agent_of(process) {
                Some(agent_id) => format!("{agent_id} (pid {})", process.pid),
                None => format!("pid {}", process.pid),
            };
            let left_ms = u64::try_from(deadline_ms - epoch_ms_now()).unwrap_or(0);
            // Best effort: a closed stderr must not stop the stop.
            let _ = writeln!(std::io::stderr(), "{}", wait_message(&who, signal, left_ms));
        }
        self.inner.wait_exit(process, deadline_ms).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_the_agent_the_signal_and_the_time_left() {
        assert_eq!(
            wait_message("agent-3 (pid 1234)", Signal::Term, 4_000),
            "waiting for agent-3 (pid 1234) to exit after SIGTERM; SIGKILL in 4s"
        );
        assert_eq!(
            wait_message("pid 7", Signal::Kill, 200),
            "waiting for pid 7 to exit after SIGKILL; giving up in 0.2s"
        );
    }
}
