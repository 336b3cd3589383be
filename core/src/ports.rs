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
use crate::identity::{NotTheAgent, PidRefused};
use crate::model::ProcessRef;
use crate::registry::Registry;
use crate::time::EpochMs;
use std::io;
use std::path::PathBuf;

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

/// Why [`Processes::spawn`] started no process. Nothing runs for the request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpawnError {
    /// Every pid is taken (the simulator's process table is bounded).
    #[error("no free pid")]
    NoFreePid,
    /// The agent id cannot name the folder of its output log.
    #[error("agent id {0:?} cannot name a directory")]
    BadAgentId(String),
    /// Preparing the process failed: `what` names the file or pipe (its output log, its gate).
    #[error("{what}: {message}")]
    Io { what: String, kind: io::ErrorKind, message: String },
    /// The command could not be started (`fork` or `exec` failed).
    #[error("spawning {program} for {agent_id}: {message}")]
    CouldNotStart { program: String, agent_id: String, kind: io::ErrorKind, message: String },
    /// The kernel gave the child a pid that does not fit the registry's.
    #[error("pid {0} out of range")]
    PidOutOfRange(u32),
}

impl SpawnError {
    /// An I/O failure while preparing `what`.
    pub fn io(what: impl Into<String>, error: &io::Error) -> SpawnError {
        SpawnError::Io { what: what.into(), kind: error.kind(), message: error.to_string() }
    }
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
    Refused(PidRefused),
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
    NotOurs(NotOurs),
}

/// Why a signal path sent nothing to a recorded process.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotOurs {
    /// The pid guard refused the pid.
    #[error(transparent)]
    Refused(#[from] PidRefused),
    /// The identity rule: the process at the pid is not the recorded one.
    #[error(transparent)]
    NotTheAgent(#[from] NotTheAgent),
    /// The pid now belongs to a process that started later (told apart by the process table).
    #[error("pid {0} now belongs to a process started later")]
    Replaced(i64),
    /// A member of the agent's tree was replaced between being listed and being signalled.
    #[error("pid {0} was reused")]
    Reused(i64),
    /// The kernel refused the signal (EPERM); we never work around that.
    #[error("permission denied: signalling pid {0}")]
    PermissionDenied(i64),
    /// A system call on the pid failed: `call` names it, `message` is the kernel's error.
    #[error("{call}: {message}")]
    System { call: String, message: String },
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
    async fn spawn(&self, request: &SpawnRequest) -> Result<Spawned, SpawnError>;
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

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// A file does not parse; nothing was written.
    #[error("{file}{}: {message}", line.map(|line| format!(":{line}")).unwrap_or_default())]
    Corrupt { file: String, line: Option<usize>, message: String },
    /// An I/O call on one file failed. Nothing was committed, unless `then` says the commit is
    /// recorded and the next transaction completes it (a failure past the commit point).
    #[error("{source}{}", then.as_ref().map(|then| format!("; {then}")).unwrap_or_default())]
    File { source: FileError, then: Option<String> },
    /// A lock stayed taken for the whole wait; `holder` says who holds it, when that is known.
    #[error(
        "{} is still locked after {waited_ms} ms{}; wait for that command to finish, or stop it",
        path.display(),
        holder.as_ref().map(|holder| format!(" (held by {holder})")).unwrap_or_default()
    )]
    Locked { path: PathBuf, waited_ms: u128, holder: Option<String> },
    /// The folder has no graph: `wg init` was never run there, or `--dir` names another folder.
    #[error("{} not found: {} is not a workgraph folder (run `wg init`, or pass --dir)", graph.display(), dir.display())]
    NotAWorkgraph { graph: PathBuf, dir: PathBuf },
    /// Anything else that stopped the transaction; the message says what, and what to do.
    /// Nothing was committed, unless the message says the commit is recorded and the next
    /// transaction completes it.
    #[error("{0}")]
    Io(String),
}

/// One I/O call on one file that failed: `cannot <action> <path>: <the system's error>`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot {action} {}: {message}", path.display())]
pub struct FileError {
    /// What was being done, as a verb phrase (`read`, `rename graph.jsonl.tmp onto`).
    pub action: String,
    pub path: PathBuf,
    pub kind: io::ErrorKind,
    pub message: String,
}

impl FileError {
    pub fn new(action: impl Into<String>, path: impl Into<PathBuf>, error: &io::Error) -> FileError {
        FileError { action: action.into(), path: path.into(), kind: error.kind(), message: error.to_string() }
    }
}

impl From<FileError> for StoreError {
    /// A failure before the commit point: nothing was written.
    fn from(source: FileError) -> StoreError {
        StoreError::File { source, then: None }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_error_says_which_file_what_failed_and_what_happens_next() {
        let shown = |error: StoreError| error.to_string();
        let corrupt = |line| StoreError::Corrupt { file: "graph.jsonl".into(), line, message: "not valid JSON".into() };
        assert_eq!(shown(corrupt(Some(3))), "graph.jsonl:3: not valid JSON");
        assert_eq!(shown(corrupt(None)), "graph.jsonl: not valid JSON");
        let full = io::Error::from(io::ErrorKind::StorageFull);
        let write = FileError::new("write", "/w/.wg/graph.jsonl", &full);
        assert_eq!(write.kind, io::ErrorKind::StorageFull);
        assert_eq!(shown(write.clone().into()), format!("cannot write /w/.wg/graph.jsonl: {full}"));
        let past_commit = StoreError::File { source: write, then: Some("the next wg command completes it".into()) };
        assert_eq!(
            shown(past_commit),
            format!("cannot write /w/.wg/graph.jsonl: {full}; the next wg command completes it")
        );
        let locked = |holder: Option<&str>| StoreError::Locked {
            path: "/w/.wg/graph.lock".into(),
            waited_ms: 300,
            holder: holder.map(str::to_string),
        };
        assert_eq!(
            shown(locked(Some("pid 7: wg retry t1"))),
            "/w/.wg/graph.lock is still locked after 300 ms (held by pid 7: wg retry t1); wait for that command to \
             finish, or stop it"
        );
        assert!(shown(locked(None)).starts_with("/w/.wg/graph.lock is still locked after 300 ms; wait"));
        let nowhere = StoreError::NotAWorkgraph { graph: "/w/.wg/graph.jsonl".into(), dir: "/w/.wg".into() };
        assert_eq!(
            shown(nowhere),
            "/w/.wg/graph.jsonl not found: /w/.wg is not a workgraph folder (run `wg init`, or pass --dir)"
        );
    }

    #[test]
    fn a_refused_signal_says_why() {
        assert_eq!(NotOurs::from(PidRefused::Init).to_string(), "pid 1 is init");
        assert_eq!(NotOurs::Replaced(42).to_string(), "pid 42 now belongs to a process started later");
        assert_eq!(NotOurs::PermissionDenied(42).to_string(), "permission denied: signalling pid 42");
        let system = NotOurs::System { call: "pidfd_open(42)".into(), message: "No such device".into() };
        assert_eq!(system.to_string(), "pidfd_open(42): No such device");
    }
}
