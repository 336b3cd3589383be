//! The processes a smoke run starts, and how each is identified and ended.
//!
//! Every process is ended by its pid, never by name. A pid we signal is either our own child
//! that we have not waited for yet (the kernel cannot give its pid to anyone else until we do),
//! or a registry entry whose start ticks we have just checked in `/proc`. [`guard_pid`] comes
//! first every time, so pid 0, 1, negative pids and our own process group are never signalled.

use super::setup_error::SetupError;
use crate::system::processes::{self, check_identity, guard_pid, read_comm, read_environ, read_stat, scan_processes};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use rustix::process::Signal as RawSignal;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};
use wg_core::model::Agent;

/// How long a process gets to end after SIGTERM before SIGKILL, when we stop it at the end.
const TERM_WAIT: Duration = Duration::from_secs(3);

/// A child process we started, still unwaited while `status` is `None`.
pub struct OurChild {
    pub child: Child,
    pub pid: i32,
    pub start_ticks: u64,
    /// Whether it leads its own process group (then the group is ended with it).
    pub group_leader: bool,
    pub status: Option<ExitStatus>,
}

impl OurChild {
    /// Starts `command`; `own_group` puts it in a process group of its own.
    pub fn start(command: &mut Command, own_group: bool) -> Result<OurChild, SetupError> {
        if own_group {
            command.process_group(0);
        }
        let child = command
            .spawn()
            .map_err(|source| SetupError::CannotStart { program: command.get_program().to_os_string(), source })?;
        let pid = child.id() as i32;
        // Our unwaited child: it is in /proc, at worst as a zombie, so its stat is readable.
        let start_ticks = read_stat(pid).map_or(0, |stat| stat.start_ticks);
        Ok(OurChild { child, pid, start_ticks, group_leader: own_group, status: None })
    }

    /// Reaps it if it has exited; returns whether it still runs.
    pub fn poll(&mut self) -> bool {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status.is_none()
    }

    /// Sends `signal` to it (and its group when it leads one), only while it is unwaited.
    pub fn signal(&mut self, signal: Signal) {
        if !self.poll() {
            return;
        }
        let Ok(pid) = guard_pid(self.pid as i64) else { return };
        if self.group_leader {
            let _ = killpg(Pid::from_raw(pid), signal);
        }
        let _ = kill(Pid::from_raw(pid), signal);
    }

    /// SIGTERM, up to [`TERM_WAIT`] for the exit, then SIGKILL; always waits for it.
    pub fn end(&mut self, gently: bool) {
        if gently {
            self.signal(Signal::SIGTERM);
            let deadline = Instant::now() + TERM_WAIT;
            while self.poll() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        self.signal(Signal::SIGKILL);
        if self.status.is_none() {
            self.status = self.child.wait().ok();
        }
    }
}

/// Whether the process a registry entry names is alive and is that entry's process, by the
/// identity rule the real processes port applies (`wg_core::identity::check_identity`).
pub fn is_live(agent: &Agent) -> bool {
    let Ok(pid) = guard_pid(agent.pid) else { return false };
    let Some(stat) = read_stat(pid) else { return false };
    !stat.has_ended() && check_identity(&agent.process(), stat.start_ticks).is_ok()
}

/// SIGKILL to the process group of a registry entry's agent, after checking that the pid still
/// holds the recorded process and leads its own group. Returns whether it signalled.
pub fn kill_agent_group(agent: &Agent) -> bool {
    let (Some(ticks), Ok(pid)) = (agent.process_start_ticks, guard_pid(agent.pid)) else { return false };
    let Some(stat) = read_stat(pid) else { return false };
    if stat.start_ticks != ticks || stat.pgid != pid || stat.has_ended() {
        return false;
    }
    killpg(Pid::from_raw(pid), Signal::SIGKILL).is_ok()
}

/// The direct children of `parent` whose command name is `comm` (e.g. the `sh` subshell that
/// runs an agent's heartbeat loop), as (pid, start ticks).
pub fn children_named(parent: i32, comm: &str) -> Vec<(i32, u64)> {
    scan_processes()
        .into_iter()
        .filter(|stat| stat.ppid == parent && !stat.has_ended())
        .filter(|stat| read_comm(stat.pid).is_some_and(|name| name == comm))
        .map(|stat| (stat.pid, stat.start_ticks))
        .collect()
}

/// Sends `signal` to `pid` only if it still started at `start_ticks` (through the port's pid
/// guard, identity check and pidfd).
pub fn signal_verified(pid: i32, start_ticks: u64, signal: RawSignal) -> bool {
    processes::signal_verified(pid, start_ticks, signal).unwrap_or(false)
}

/// Processes whose environment names `wg_dir` as `WG_DIR` (agents and their children), as
/// (pid, start ticks, command name): after the end of a run there must be none.
pub fn processes_of(wg_dir: &str) -> Vec<(i32, u64, String)> {
    let needle = format!("WG_DIR={wg_dir}");
    scan_processes()
        .into_iter()
        .filter(|stat| !stat.has_ended())
        .filter(|stat| read_environ(stat.pid).is_some_and(|env| env.iter().any(|var| var == needle.as_bytes())))
        .map(|stat| (stat.pid, stat.start_ticks, read_comm(stat.pid).unwrap_or_default()))
        .collect()
}
