//! Which process a registry entry means, and which pids are never signalled: the two rules every
//! signal passes (docs/invariants.md, S2). Defined once here; the real processes port, the
//! simulated process table and the smoke runner's checks all call these functions.

use crate::model::ProcessRef;
use crate::time::EpochMs;

/// The process that is about to signal: it must never signal itself or its own process group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signaller {
    pub pid: i32,
    pub pgid: i32,
}

/// Why the pid guard refused a pid: the kernel would read it as more than one process, or it is
/// a process no agent can be.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PidRefused {
    #[error("pid {0} is out of range")]
    OutOfRange(i64),
    #[error("pid {0} would address a whole group or every process")]
    Group(i64),
    #[error("pid 1 is init")]
    Init,
    #[error("pid {0} is this wg process")]
    OwnProcess(i32),
    #[error("pid {0} is this wg process's own process group")]
    OwnGroup(i32),
}

/// The pid guard. Refuses 0 and negative pids (the kernel reads them as "my group" or "every
/// process"), pid 1 (init), anything that is not an `i32` pid, and, when the caller is a real
/// process, its own pid and its own process group. Returns the pid as the kernel takes it.
pub fn check_pid(pid: i64, signaller: Option<Signaller>) -> Result<i32, PidRefused> {
    let Ok(pid32) = i32::try_from(pid) else { return Err(PidRefused::OutOfRange(pid)) };
    if pid32 <= 0 {
        return Err(PidRefused::Group(pid));
    }
    if pid32 == 1 {
        return Err(PidRefused::Init);
    }
    if let Some(signaller) = signaller {
        if pid32 == signaller.pid {
            return Err(PidRefused::OwnProcess(pid32));
        }
        if pid32 == signaller.pgid {
            return Err(PidRefused::OwnGroup(pid32));
        }
    }
    assert!(pid32 > 1, "the guard above let pid {pid} through"); // every build: a signal to 0/1/-1 is unrecoverable
    Ok(pid32)
}

/// What is known of the process that stands at a recorded pid now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observed {
    /// Its start time in clock ticks after boot (field 22 of `/proc/<pid>/stat`).
    pub start_ticks: u64,
    /// Its start time on the wall clock, when it can be worked out.
    pub start_ms: Option<EpochMs>,
}

/// The identity rule: is the observed process the one `recorded` means? Exact when the start
/// ticks were recorded at spawn. For an entry another tool wrote (no ticks), the process must not
/// have started after the entry's `started_at`; `start_slack_ms` is how far off the observer's
/// wall-clock start time may be (the kernel's boot time has one-second granularity; a simulated
/// clock is exact and passes 0). Without a `started_at` or a start time nothing can be told
/// apart, and the process is taken to be the agent.
pub fn check_identity(recorded: &ProcessRef, observed: Observed, start_slack_ms: i64) -> Result<(), NotTheAgent> {
    if let Some(ticks) = recorded.start_ticks {
        if ticks == observed.start_ticks {
            return Ok(());
        }
        return Err(NotTheAgent::OtherTicks { pid: recorded.pid, recorded: ticks, observed: observed.start_ticks });
    }
    let (Some(started_at_ms), Some(start_ms)) = (recorded.started_at_ms, observed.start_ms) else { return Ok(()) };
    if start_ms > started_at_ms + start_slack_ms {
        return Err(NotTheAgent::StartedLater { pid: recorded.pid, start_ms, started_at_ms });
    }
    Ok(())
}

/// Why the identity rule says the process at a recorded pid is not the agent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotTheAgent {
    /// The start ticks recorded at spawn differ from the process's.
    #[error("pid {pid} started at tick {observed}, not at tick {recorded}")]
    OtherTicks { pid: i64, recorded: u64, observed: u64 },
    /// No ticks were recorded, and the process started after the entry's `started_at`.
    #[error("pid {pid} started at {start_ms} ms, after the agent's start {started_at_ms} ms")]
    StartedLater { pid: i64, start_ms: EpochMs, started_at_ms: EpochMs },
}

/// Whether a signal that reached a process of the tree rooted at `target_tree` (leader pid and
/// its start ticks; `None` for a process of no agent's tree) was meant for `intended`.
pub fn signal_was_meant(intended: &ProcessRef, target_tree: Option<(i64, u64)>) -> bool {
    target_tree.is_some_and(|(leader_pid, leader_ticks)| {
        leader_pid == intended.pid && intended.start_ticks.is_none_or(|ticks| ticks == leader_ticks)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: Signaller = Signaller { pid: 4000, pgid: 3990 };

    #[test]
    fn check_pid_refuses_what_is_never_signalled() {
        for pid in [i64::MIN, -1, 0, 1, 4000, 3990, i64::from(i32::MAX) + 1] {
            assert!(check_pid(pid, Some(ME)).is_err(), "pid {pid} must be refused");
        }
        assert_eq!(check_pid(2, Some(ME)), Ok(2));
        assert_eq!(check_pid(4000, None), Ok(4000), "a simulated caller has no pid of its own");
        assert_eq!(check_pid(i64::from(i32::MAX), Some(ME)), Ok(i32::MAX));
    }

    #[test]
    fn a_refusal_says_which_pid_and_why() {
        let refusal = |pid| check_pid(pid, Some(ME)).unwrap_err().to_string();
        assert_eq!(refusal(-1), "pid -1 would address a whole group or every process");
        assert_eq!(refusal(1), "pid 1 is init");
        assert_eq!(refusal(4000), "pid 4000 is this wg process");
        assert_eq!(refusal(3990), "pid 3990 is this wg process's own process group");
        assert_eq!(refusal(1 << 40), "pid 1099511627776 is out of range");
    }

    fn recorded(start_ticks: Option<u64>, started_at_ms: Option<i64>) -> ProcessRef {
        ProcessRef { pid: 100, start_ticks, started_at_ms }
    }

    #[test]
    fn recorded_ticks_must_match_exactly() {
        let observed = Observed { start_ticks: 7, start_ms: Some(0) };
        assert!(check_identity(&recorded(Some(7), None), observed, 0).is_ok());
        let other = check_identity(&recorded(Some(8), None), observed, 2_000).unwrap_err();
        assert_eq!(other.to_string(), "pid 100 started at tick 7, not at tick 8");
    }

    #[test]
    fn without_ticks_a_process_started_after_the_entry_is_another() {
        let entry = recorded(None, Some(10_000));
        let at = |start_ms| Observed { start_ticks: 1, start_ms: Some(start_ms) };
        assert!(check_identity(&entry, at(10_000), 0).is_ok());
        let later = check_identity(&entry, at(10_001), 0).unwrap_err();
        assert_eq!(later.to_string(), "pid 100 started at 10001 ms, after the agent's start 10000 ms");
        assert!(check_identity(&entry, at(12_000), 2_000).is_ok(), "within the observer's slack");
        assert!(check_identity(&entry, at(12_001), 2_000).is_err());
        let unknown = Observed { start_ticks: 1, start_ms: None };
        assert!(check_identity(&entry, unknown, 0).is_ok(), "nothing to compare: taken as the agent");
    }

    #[test]
    fn a_signal_is_meant_only_for_the_recorded_tree() {
        let with_ticks = recorded(Some(5), None);
        assert!(signal_was_meant(&with_ticks, Some((100, 5))));
        assert!(!signal_was_meant(&with_ticks, Some((100, 6))), "a later process at the same pid");
        assert!(!signal_was_meant(&with_ticks, Some((101, 5))));
        assert!(!signal_was_meant(&with_ticks, None), "a process of no agent's tree");
        assert!(signal_was_meant(&recorded(None, None), Some((100, 9))));
    }
}
