//! What the world records for the checkers, in the order it happened: commits, signal
//! deliveries, retries that returned, writes that did not read back. The world only records;
//! the executor hands each record to `crate::checks`, which alone decides what breaks an
//! invariant. So the world knows nothing of the checks.

use super::processes::{ProcKind, Root};
use super::{ActorId, ActorKind};
use std::rc::Rc;
use wg_core::model::{Agent, ProcessRef, Task};
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
    /// The ids of the tasks the transaction changed or added, in file order. Every other task's
    /// line was written back as read, so it reads back as it was in `before`.
    pub touched_tasks: Vec<String>,
    /// Lines of the graph file once written.
    pub graph_lines: usize,
}

impl CommitRecord {
    /// Each task this commit changed, as it was (`None`: added) and as it is, in file order.
    ///
    /// Only the tasks the transaction touched are compared: the checks and coverage look at
    /// every commit of every run, and comparing every task of the graph field by field was a
    /// visible part of a run's cost. Debug builds (every `cargo test`) compare the others too.
    pub fn changed_tasks(&self) -> impl Iterator<Item = (Option<&Task>, &Task)> {
        let (before, after) = (&self.before.graph, &self.after.graph);
        if cfg!(debug_assertions) {
            for task in after.tasks().filter(|task| !self.touched_tasks.contains(&task.id)) {
                assert_eq!(before.task(&task.id), Some(task), "an untouched task reads back as it was");
            }
        }
        self.touched_tasks.iter().filter_map(move |id| {
            let now = after.task(id).expect("a touched task is in the graph written");
            let was = before.task(id);
            (was != Some(now)).then_some((was, now))
        })
    }

    /// Each agent entry this commit changed, as it was (`None`: added) and as it is, in id order.
    /// An entry the transaction did not touch is the very entry of `before` (entries are shared
    /// between copies of a registry), which is checked first.
    pub fn changed_agents(&self) -> impl Iterator<Item = (Option<&Agent>, &Agent)> {
        let before = &self.before.registry;
        self.after.registry.agents().filter_map(move |now| {
            let was = before.agent(&now.id);
            let same = was.is_some_and(|was| std::ptr::eq(was, now) || was == now);
            (!same).then_some((was, now))
        })
    }
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
