//! The two checks every signal passes, against what `/proc` shows: the pid guard (never pid <= 1,
//! never our own pid or group) and the identity rule (pid plus start time). The rules themselves
//! live once in `wg_core::identity`; this applies them with `/proc`'s precision.

use super::procfs::{observe, ProcStat};
use wg_core::identity::{check_pid, NotTheAgent, PidRefused, Signaller};
use wg_core::model::ProcessRef;
use wg_core::ports::NotOurs;

/// `btime` in `/proc/stat` has one-second granularity and the wall clock may have been stepped
/// since boot, so a process counts as "started later" only beyond this margin.
pub const START_SLACK_MS: i64 = 2_000;

/// The pid guard ([`wg_core::identity::check_pid`], the one place for the rule) against this
/// process. Every path that signals or waits goes through it first.
pub fn guard_pid(pid: i64) -> Result<i32, PidRefused> {
    let own_pid = rustix::process::getpid().as_raw_nonzero().get();
    let own_pgid = rustix::process::getpgrp().as_raw_nonzero().get();
    check_pid(pid, Some(Signaller { pid: own_pid, pgid: own_pgid }))
}

/// Is the process that started at `start_ticks` the one `process` means? The identity rule
/// ([`wg_core::identity::check_identity`]) with what `/proc` shows and its precision.
pub fn check_identity(process: &ProcessRef, start_ticks: u64) -> Result<(), NotTheAgent> {
    wg_core::identity::check_identity(process, observe(start_ticks), START_SLACK_MS)
}

/// Is the process `stat` shows the one that started at `start_ticks` (a tree member we saw)?
pub(super) fn same_start(stat: &ProcStat, start_ticks: u64) -> Result<(), NotOurs> {
    if stat.start_ticks == start_ticks {
        Ok(())
    } else {
        Err(NotOurs::Reused(i64::from(stat.pid)))
    }
}
