//! What the world records for the checkers, in the order it happened: commits, signal
//! deliveries, retries that returned, writes that did not read back. The world only records;
//! the executor hands each record to `crate::checks`, which alone decides what breaks an
//! invariant. So the world knows nothing of the checks.

use super::processes::{ProcKind, Root};
use super::{ActorId, ActorKind};
use std::rc::Rc;
use wg_core::model::ProcessRef;
use wg_core::ops::RetryOutcome;
use wg_core::ports::{Signal, State};

pub enum Record {
    Commit(CommitRecord),
    Signal(SignalRecord),
    Retry(RetryRecord),
    /// A file written by a commit did not read back (which file, and how); nothing was
    /// committed.
    Unreadable(String),
}

/// One commit: who wrote, the committed state before and after.
pub struct CommitRecord {
    pub actor: ActorId,
    pub kind: ActorKind,
    pub before: Rc<State>,
    pub after: Rc<State>,
    /// Lines of the graph file once written.
    pub graph_lines: usize,
}

/// One delivery of a signal to one process: the process it was meant for and the one it hit.
pub struct SignalRecord {
    pub signal: Signal,
    pub intended: ProcessRef,
    pub pid: i64,
    pub kind: ProcKind,
    pub start_ticks: u64,
    /// The agent tree of the process hit (`None` for a foreign program).
    pub root: Option<Root>,
}

/// A `wg retry` that returned successfully, with the committed state as it returned.
pub struct RetryRecord {
    /// The command's actor name (the `user` of the log entries it wrote).
    pub actor_name: String,
    pub task_id: String,
    pub reason: String,
    pub outcome: RetryOutcome,
    pub state: Rc<State>,
}
