//! The three ports the operations are written against (docs/design.md, Layers).
//!
//! Production implements them with the wall clock, real processes and the files of `.wg/`; the
//! simulator with a virtual clock, a process table and an in-memory store. Every `async` method is
//! a point where the simulator may switch to another actor. `Clock::now_ms` is not one: reading
//! the clock changes nothing shared, and virtual time only moves while every actor waits.
// The traits are used through generics by one single-threaded driver at a time, so the futures
// need no `Send` bound; that is what this lint would otherwise ask us to spell out.
#![allow(async_fn_in_trait)]

use crate::graph::Graph;
use crate::model::ProcessRef;
use crate::registry::Registry;
use crate::time::EpochMs;
use std::fmt;

/// Graph and registry as one transaction sees them.
#[derive(Clone, Debug, PartialEq)]
pub struct State {
    pub graph: Graph,
    pub registry: Registry,
}

impl State {
    pub fn is_changed(&self) -> bool {
        self.graph.is_changed() || self.registry.is_changed()
    }
}

pub trait Clock {
    fn now_ms(&self) -> EpochMs;
    /// Waits `duration_ms` (the simulator advances virtual time instead).
    async fn sleep_ms(&self, duration_ms: u64);
}

/// What to start for a task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpawnRequest {
    pub task_id: String,
    pub agent_id: String,
    /// The shell command (`exec`) of the task.
    pub command: String,
}

/// The identity of a freshly spawned agent process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spawned {
    pub pid: i64,
    pub start_ticks: Option<u64>,
}

/// How an agent process ended, when its parent saw it end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitKind {
    /// Exited with this code.
    Code(i32),
    /// Ended by a signal, or ended without its parent telling us how.
    Died,
}

/// What stands at a registry entry's pid right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// The very process that was recorded, not a zombie.
    Alive,
    /// It has ended (or is a zombie).
    Gone(ExitKind),
    /// The pid now belongs to a process that started later: not ours.
    Replaced,
    /// The pid is one we never signal (0, 1, negative, our own process or group).
    Refused(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Term,
    Kill,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignalOutcome {
    /// Sent to the agent and its descendants.
    Delivered,
    /// Nothing was left to signal.
    Gone,
    /// The identity check failed or the kernel said no (EPERM): nothing was sent.
    NotOurs(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitWait {
    Exited,
    TimedOut,
}

pub trait Processes {
    /// Starts the agent's process held at a gate: it runs nothing until [`Processes::release`]
    /// says go. Should the spawner die first, the gate closes and the process ends without
    /// having run the command, so a crash between spawn and recording the pid leaves no
    /// unrecorded agent at work (S1).
    async fn spawn(&self, request: &SpawnRequest) -> Result<Spawned, String>;
    /// Opens the gate of a process from [`Processes::spawn`] (`go`), or closes it for good, which
    /// makes the process end without running its command.
    async fn release(&self, spawned: &Spawned, go: bool);
    /// Checks the identity of the recorded process (pid, start time) before anything else.
    async fn liveness(&self, process: &ProcessRef) -> Liveness;
    /// Signals the agent's whole process tree, after the identity check.
    async fn signal(&self, process: &ProcessRef, signal: Signal) -> SignalOutcome;
    /// Waits for the exit event of the agent and its descendants, until `deadline_ms` at most.
    async fn wait_exit(&self, process: &ProcessRef, deadline_ms: EpochMs) -> ExitWait;
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreError {
    /// A file does not parse; nothing was written.
    Corrupt { file: String, line: Option<usize>, message: String },
    /// Reading, locking or writing failed. Nothing was committed, unless the message says the
    /// commit is recorded and the next transaction completes it (a failure past the commit point).
    Io(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Corrupt { file, line: Some(line), message } => write!(f, "{file}:{line}: {message}"),
            StoreError::Corrupt { file, line: None, message } => write!(f, "{file}: {message}"),
            StoreError::Io(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for StoreError {}

pub trait Store {
    /// Runs `change` on a fresh read of graph and registry under the lock and commits what it
    /// changed atomically; a closure that changes nothing writes nothing.
    async fn transact<R>(&self, change: impl FnOnce(&mut State) -> R) -> Result<R, StoreError>;
}

/// The ports one operation runs with, and who it acts as (for log entries and stop requests).
pub struct Ctx<'a, C, P, S> {
    pub clock: &'a C,
    pub processes: &'a P,
    pub store: &'a S,
    /// Who acts: written as the `user` of log entries, e.g. `wg retry (pid 4242)`.
    pub actor: &'a str,
}

impl<C, P, S> Clone for Ctx<'_, C, P, S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<C, P, S> Copy for Ctx<'_, C, P, S> {}
