//! Real agent processes (docs/design.md, Processes): the production [`Processes`] port.
//!
//! An agent is `sh -c <exec>` in its own process group, started behind a gate (`gate`). It is
//! identified by pid plus start time (field 22 of `/proc/<pid>/stat`, read in `procfs`). Every
//! signal path passes the pid guard and the identity check (`guard`), holding the process through
//! a pidfd (`pidfd`); an agent's whole tree is signalled and waited for in `tree`. This module
//! keeps what only the parent can do: reaping the children it spawned and remembering their exits.
//!
//! The port methods do their blocking work inside the call (a blocking `poll` on pidfds) and so
//! complete on their first poll, as `wg_core::block_on` requires.

mod gate;
mod guard;
mod pidfd;
mod procfs;
#[cfg(test)]
mod tests;
mod tree;

pub use guard::{check_identity, guard_pid, START_SLACK_MS};
pub use pidfd::{signal_verified, terminate_one, TerminateError};
pub use procfs::{
    parse_stat, read_comm, read_environ, read_start_ticks, read_stat, scan_processes, start_epoch_ms, ticks_per_second,
    Member, ProcStat,
};

use rustix::process::{pidfd_open, Pid, PidfdFlags};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use tree::Trees;
use wg_core::model::ProcessRef;
use wg_core::ports::{
    ExitKind, ExitWait, Liveness, Processes, Signal, SignalOutcome, SpawnError, SpawnRequest, Spawned,
};
use wg_core::time::EpochMs;

/// A process we spawned: we are its parent, so only we can reap it.
#[derive(Clone, Copy, Debug)]
struct Child {
    start_ticks: Option<u64>,
    /// Set once reaped. The pid is free for reuse from then on, so this exit belongs to
    /// `start_ticks` only.
    exit: Option<ExitKind>,
}

/// The production [`Processes`] port.
pub struct SystemProcesses {
    /// Absolute path of the `.wg` directory (exported to agents as `WG_DIR`).
    wg_dir: PathBuf,
    children: RefCell<BTreeMap<i32, Child>>,
    trees: Trees,
    /// Write ends of the gates of spawned agents not yet released (see `gate`).
    gates: RefCell<BTreeMap<i32, OwnedFd>>,
}

/// `waitpid(pid, WNOHANG)` on one of our children. `None` while it runs.
fn try_reap(pid: i32) -> Option<ExitKind> {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    match waitpid(nix::unistd::Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::Exited(_, code)) => Some(ExitKind::Code(code)),
        Ok(WaitStatus::Signaled(..)) => Some(ExitKind::Died),
        Ok(_) => None,
        // Someone else reaped it (or SIGCHLD is ignored): it is gone, how is unknown.
        Err(nix::errno::Errno::ECHILD) => Some(ExitKind::Died),
        Err(_) => None,
    }
}

impl SystemProcesses {
    pub fn new(wg_dir: PathBuf) -> SystemProcesses {
        let wg_dir = std::path::absolute(&wg_dir).unwrap_or(wg_dir);
        SystemProcesses { wg_dir, children: RefCell::default(), trees: Trees::default(), gates: RefCell::default() }
    }

    pub fn wg_dir(&self) -> &Path {
        &self.wg_dir
    }

    /// Reaps every spawned child that has ended (`waitpid(pid, WNOHANG)` on each, never
    /// `waitpid(-1)`), records the exits for [`Processes::liveness`] and returns the new ones.
    pub fn reap_children(&self) -> Vec<(i32, ExitKind)> {
        let mut children = self.children.borrow_mut();
        let mut reaped = Vec::new();
        for (&pid, child) in children.iter_mut().filter(|(_, child)| child.exit.is_none()) {
            if let Some(exit) = try_reap(pid) {
                child.exit = Some(exit);
                reaped.push((pid, exit));
            }
        }
        reaped
    }

    /// A fresh pidfd for every spawned child not reaped yet. The service polls them for
    /// readability (`POLLIN` = the child ended) and then calls [`SystemProcesses::reap_children`].
    /// Safe to open by pid: an unreaped child's pid cannot be reused.
    pub fn child_pidfds(&self) -> Vec<(i32, OwnedFd)> {
        let children = self.children.borrow();
        let unreaped = children.iter().filter(|(_, child)| child.exit.is_none());
        unreaped
            .filter_map(|(&pid, _)| Some((pid, pidfd_open(Pid::from_raw(pid)?, PidfdFlags::empty()).ok()?)))
            .collect()
    }

    /// The tree remembered from the last signal to `pid`: `(pid, start ticks)` of each member.
    pub fn tree_snapshot(&self, pid: i32) -> Vec<Member> {
        self.trees.snapshot(pid)
    }

    fn spawn_now(&self, request: &SpawnRequest) -> Result<Spawned, SpawnError> {
        let (pid, start_ticks, gate) = gate::spawn(&self.wg_dir, request)?;
        self.children.borrow_mut().insert(pid, Child { start_ticks, exit: None });
        self.gates.borrow_mut().insert(pid, gate);
        Ok(Spawned { pid: i64::from(pid), start_ticks })
    }

    /// Opens (`go`) or closes the gate of a process from `spawn_now`.
    fn release_now(&self, spawned: &Spawned, go: bool) {
        let gate = i32::try_from(spawned.pid).ok().and_then(|pid| self.gates.borrow_mut().remove(&pid));
        if let Some(gate) = gate {
            gate::release(gate, go);
        }
    }

    /// The recorded exit of our child at `pid`, if that child is the process `process` means.
    /// Reaps it first when it has ended.
    fn child_exit(&self, pid: i32, process: &ProcessRef) -> Option<ExitKind> {
        let mut children = self.children.borrow_mut();
        let child = children.get_mut(&pid)?;
        if let Some(start_ticks) = child.start_ticks {
            check_identity(process, start_ticks).ok()?;
        }
        if child.exit.is_none() {
            child.exit = try_reap(pid);
        }
        child.exit
    }

    /// Reaps `pid` if it is our child with these start ticks.
    fn reap_member(&self, member: Member) {
        let mut children = self.children.borrow_mut();
        if let Some(child) = children.get_mut(&member.pid) {
            if child.exit.is_none() && child.start_ticks.is_none_or(|ticks| ticks == member.start_ticks) {
                child.exit = try_reap(member.pid);
            }
        }
    }

    fn liveness_now(&self, process: &ProcessRef) -> Liveness {
        let pid = match guard_pid(process.pid) {
            Ok(pid) => pid,
            Err(refused) => return Liveness::Refused(refused),
        };
        if let Some(exit) = self.child_exit(pid, process) {
            return Liveness::Gone(exit);
        }
        let Some(stat) = read_stat(pid) else { return Liveness::Gone(ExitKind::Died) };
        if check_identity(process, stat.start_ticks).is_err() {
            return Liveness::Replaced;
        }
        if stat.has_ended() {
            return Liveness::Gone(ExitKind::Died);
        }
        Liveness::Alive
    }
}

impl Processes for SystemProcesses {
    async fn spawn(&self, request: &SpawnRequest) -> Result<Spawned, SpawnError> {
        self.spawn_now(request)
    }

    async fn release(&self, spawned: &Spawned, go: bool) {
        self.release_now(spawned, go)
    }

    async fn liveness(&self, process: &ProcessRef) -> Liveness {
        self.liveness_now(process)
    }

    async fn signal(&self, process: &ProcessRef, signal: Signal) -> SignalOutcome {
        self.trees.signal(process, signal)
    }

    async fn wait_exit(&self, process: &ProcessRef, deadline_ms: EpochMs) -> ExitWait {
        self.trees.wait(process, deadline_ms, &|member| self.reap_member(member))
    }
}
