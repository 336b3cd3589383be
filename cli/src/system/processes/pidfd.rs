//! Holding one verified process through a pidfd, signalling it, and waiting for it to exit.
//!
//! The order is what makes it safe: open the pidfd first, then check the identity in `/proc`. If
//! `/proc` still shows the recorded process after the fd was opened, the fd refers to that very
//! process, so a signal sent through it cannot hit a process that took over the pid later.

use super::guard::{guard_pid, same_start};
use super::procfs::{read_stat, Member, ProcStat};
use rustix::event::{poll, PollFd, PollFlags};
use rustix::io::Errno;
use rustix::process::{kill_process, pidfd_open, pidfd_send_signal, Pid, PidfdFlags, Signal as RawSignal};
use std::os::fd::OwnedFd;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use wg_core::identity::PidRefused;
use wg_core::ports::{NotOurs, Signal};
use wg_core::time::EpochMs;

/// Without pidfds (kernels before 5.3) there is no exit event to wait on; we look at `/proc`
/// this often instead. With pidfds this interval is never used.
const NO_PIDFD_RECHECK_MS: i64 = 20;

/// A process we verified and hold: the pidfd pins it (`None` only where the kernel has no pidfds).
pub(super) struct Held {
    pub(super) pid: i32,
    pub(super) start_ticks: u64,
    pub(super) fd: Option<OwnedFd>,
}

impl Held {
    pub(super) fn member(&self) -> Member {
        Member { pid: self.pid, start_ticks: self.start_ticks }
    }
}

pub(super) enum Hold {
    Held(Held),
    /// Verified, but it has ended (a zombie, start ticks given): nothing to signal, yet its pid
    /// cannot be reused until it is reaped, so it still names its process group.
    Ended(u64),
    /// No such process.
    Gone,
    /// The pid holds another process, or the pidfd could not be opened.
    Other(NotOurs),
}

/// Opens a pidfd for `pid`, then checks `/proc` (in that order, see the module comment).
pub(super) fn hold<E: Into<NotOurs>>(pid: i32, verify: impl Fn(&ProcStat) -> Result<(), E>) -> Hold {
    let Some(raw) = Pid::from_raw(pid) else { return Hold::Other(PidRefused::Group(i64::from(pid)).into()) };
    let fd = match pidfd_open(raw, PidfdFlags::empty()) {
        Ok(fd) => Some(fd),
        Err(Errno::NOSYS) => None,
        Err(Errno::SRCH) => return Hold::Gone,
        Err(error) => {
            return Hold::Other(NotOurs::System { call: format!("pidfd_open({pid})"), message: error.to_string() })
        }
    };
    let Some(stat) = read_stat(pid) else { return Hold::Gone };
    if let Err(why) = verify(&stat) {
        return Hold::Other(why.into());
    }
    if stat.has_ended() {
        return Hold::Ended(stat.start_ticks);
    }
    Hold::Held(Held { pid, start_ticks: stat.start_ticks, fd })
}

pub(super) fn raw_signal(signal: Signal) -> RawSignal {
    match signal {
        Signal::Term => RawSignal::Term,
        Signal::Kill => RawSignal::Kill,
    }
}

/// Sends through the pidfd (plain `kill` only without pidfd support, after the same checks).
/// `Ok(false)`: the process ended meanwhile. EPERM is reported, never worked around.
pub(super) fn send(held: &Held, signal: Signal) -> Result<bool, NotOurs> {
    send_raw(held, raw_signal(signal))
}

/// [`send`] with any signal (the smoke runner stops and continues agents to stall them).
fn send_raw(held: &Held, signal: RawSignal) -> Result<bool, NotOurs> {
    let result = match (&held.fd, Pid::from_raw(held.pid)) {
        (Some(fd), _) => pidfd_send_signal(fd, signal),
        (None, Some(pid)) => kill_process(pid, signal),
        (None, None) => return Ok(false),
    };
    match result {
        Ok(()) => Ok(true),
        Err(Errno::SRCH) => Ok(false),
        Err(Errno::PERM) => Err(NotOurs::PermissionDenied(i64::from(held.pid))),
        Err(error) => Err(NotOurs::System { call: format!("signalling pid {}", held.pid), message: error.to_string() }),
    }
}

/// Blocks until at least one of `waiting` has ended or `timeout_ms` passes; returns the indices
/// of those that ended. Waits on the pidfds' exit events; `/proc` is only looked at for
/// processes held without a pidfd.
pub(super) fn ended_members(waiting: &[Held], timeout_ms: i64) -> Vec<usize> {
    let without_fd = waiting.iter().any(|held| held.fd.is_none());
    let timeout_ms = if without_fd { timeout_ms.min(NO_PIDFD_RECHECK_MS) } else { timeout_ms };
    let with_fd: Vec<(usize, &OwnedFd)> =
        waiting.iter().enumerate().filter_map(|(index, held)| Some((index, held.fd.as_ref()?))).collect();
    let mut poll_fds: Vec<PollFd<'_>> = with_fd.iter().map(|(_, fd)| PollFd::new(*fd, PollFlags::IN)).collect();
    let timeout = i32::try_from(timeout_ms).unwrap_or(i32::MAX);
    if poll_fds.is_empty() {
        std::thread::sleep(Duration::from_millis(timeout_ms.max(0) as u64));
    } else if poll(&mut poll_fds, timeout).is_err() {
        // EINTR and the like: report nothing ended; the caller re-checks the deadline and polls again.
        return Vec::new();
    }
    let mut ended: Vec<usize> = poll_fds
        .iter()
        .zip(&with_fd)
        .filter(|(poll_fd, _)| !poll_fd.revents().is_empty())
        .map(|(_, (index, _))| *index)
        .collect();
    let gone_without_fd = waiting.iter().enumerate().filter(|(_, held)| held.fd.is_none()).filter(|(_, held)| {
        read_stat(held.pid).is_none_or(|stat| stat.has_ended() || stat.start_ticks != held.start_ticks)
    });
    ended.extend(gone_without_fd.map(|(index, _)| index));
    ended.sort_unstable();
    ended
}

/// Sends SIGTERM to the single process `pid` (not its tree) if it still is the one that started
/// at `start_ticks`, and waits up to `grace` for it to exit. Used to stop the service, whose
/// agents are meant to keep running. `Ok` also when it was gone already; no SIGKILL follows.
pub fn terminate_one(pid: i32, start_ticks: u64, grace: Duration) -> Result<(), TerminateError> {
    let pid = guard_pid(i64::from(pid)).map_err(NotOurs::from)?;
    let Some(held) = hold_verified(pid, start_ticks)? else { return Ok(()) };
    if !send(&held, Signal::Term)? {
        return Ok(());
    }
    let deadline_ms = now_ms() + i64::try_from(grace.as_millis()).unwrap_or(i64::MAX / 2);
    let mut waiting = vec![held];
    while !waiting.is_empty() {
        let remaining_ms = deadline_ms - now_ms();
        if !ended_members(&waiting, remaining_ms.max(0)).is_empty() {
            waiting.clear();
        } else if remaining_ms <= 0 {
            return Err(TerminateError::DidNotExit { pid, grace_ms: grace.as_millis() });
        }
    }
    Ok(())
}

/// Why [`terminate_one`] could not stop its process.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TerminateError {
    /// Nothing was sent: the pid is refused, or is no longer the process meant.
    #[error(transparent)]
    NotOurs(#[from] NotOurs),
    /// SIGTERM was sent and the process still runs after the grace period.
    #[error("pid {pid} did not exit within {grace_ms} ms of SIGTERM")]
    DidNotExit { pid: i32, grace_ms: u128 },
}

pub(super) fn now_ms() -> EpochMs {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_millis() as EpochMs
}

/// Sends `signal` to the single process `pid` if it still is the one that started at
/// `start_ticks`, through the pid guard and a pidfd like every other signal. `Ok(false)`: it had
/// ended (or was never there); `Err`: the guard or the kernel refused, or the pid was reused.
pub fn signal_verified(pid: i32, start_ticks: u64, signal: RawSignal) -> Result<bool, NotOurs> {
    let pid = guard_pid(i64::from(pid))?;
    match hold_verified(pid, start_ticks)? {
        Some(held) => send_raw(&held, signal),
        None => Ok(false),
    }
}

/// Holds `pid` if it is the process that started at `start_ticks` and still runs.
fn hold_verified(pid: i32, start_ticks: u64) -> Result<Option<Held>, NotOurs> {
    match hold(pid, |stat| same_start(stat, start_ticks)) {
        Hold::Held(held) => Ok(Some(held)),
        Hold::Ended(_) | Hold::Gone => Ok(None),
        Hold::Other(why) => Err(why),
    }
}
