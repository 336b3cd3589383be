//! What `/proc` says about processes: the fields of `/proc/<pid>/stat` we use, the whole process
//! table, and a process's start on the wall clock. Read only; nothing here signals.

use std::fs;
use wg_core::identity::Observed;
use wg_core::time::EpochMs;

/// The fields of `/proc/<pid>/stat` we use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: i32,
    /// `R`, `S`, `D`, `T`, `Z` (zombie), `X` (dead), ...
    pub state: char,
    pub ppid: i32,
    pub pgid: i32,
    /// Field 22: clock ticks after boot at which the process started.
    pub start_ticks: u64,
}

impl ProcStat {
    /// A zombie has ended; only its parent's `waitpid` is missing.
    pub fn has_ended(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Parses one `/proc/<pid>/stat` line. The command name (field 2) is in parentheses and may itself
/// contain spaces and parentheses, so the fixed fields are read after the *last* `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let open = text.find(" (")?;
    let close = text.rfind(')')?;
    let pid = text[..open].trim().parse().ok()?;
    // After ')' field 3 (state) has index 0, so field n has index n - 3.
    let fields: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    Some(ProcStat {
        pid,
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgid: fields.get(2)?.parse().ok()?,
        start_ticks: fields.get(19)?.parse().ok()?,
    })
}

/// Reads `/proc/<pid>/stat`; `None` when there is no such process (or it is not readable).
pub fn read_stat(pid: i32) -> Option<ProcStat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text).filter(|stat| stat.pid == pid)
}

/// The command name of `pid` (`/proc/<pid>/comm`, without its newline).
pub fn read_comm(pid: i32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm")).ok().map(|comm| comm.trim_end().to_string())
}

/// The environment `pid` started with (`/proc/<pid>/environ`): `NAME=value` entries.
pub fn read_environ(pid: i32) -> Option<Vec<Vec<u8>>> {
    let raw = fs::read(format!("/proc/{pid}/environ")).ok()?;
    Some(raw.split(|byte| *byte == 0).filter(|entry| !entry.is_empty()).map(<[u8]>::to_vec).collect())
}

/// The start time of `pid` in clock ticks after boot (field 22 of `/proc/<pid>/stat`).
pub fn read_start_ticks(pid: i32) -> Option<u64> {
    read_stat(pid).map(|stat| stat.start_ticks)
}

/// Every process in `/proc` right now. Processes that vanish while we read are skipped.
pub fn scan_processes() -> Vec<ProcStat> {
    let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
    entries.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok()).filter_map(read_stat).collect()
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`), read from the auxiliary vector the kernel
/// hands every process, which is where libc gets it too. USER_HZ is 100 nearly everywhere.
pub fn ticks_per_second() -> u64 {
    const AT_CLKTCK: u64 = 17;
    let Ok(auxv) = fs::read("/proc/self/auxv") else { return 100 };
    let word = |chunk: &[u8]| u64::from_ne_bytes(chunk.try_into().unwrap_or([0; 8]));
    auxv.chunks_exact(16)
        .map(|pair| (word(&pair[..8]), word(&pair[8..])))
        .find(|&(key, _)| key == AT_CLKTCK)
        .map_or(100, |(_, value)| value.max(1))
}

/// Boot time in seconds since the epoch (`btime` in `/proc/stat`).
fn boot_time_s() -> Option<i64> {
    let text = fs::read_to_string("/proc/stat").ok()?;
    text.lines().find_map(|line| line.strip_prefix("btime ")?.trim().parse().ok())
}

/// When a process that started `start_ticks` after boot started, in epoch milliseconds.
pub fn start_epoch_ms(start_ticks: u64, boot_time_s: i64, ticks_per_s: u64) -> EpochMs {
    boot_time_s * 1000 + (start_ticks.saturating_mul(1000) / ticks_per_s.max(1)) as i64
}

/// What `/proc` tells of a process that started `start_ticks` after boot: its start on the wall
/// clock, worked out from the boot time and the kernel's tick rate.
pub fn observe(start_ticks: u64) -> Observed {
    let start_ms = boot_time_s().map(|boot_s| start_epoch_ms(start_ticks, boot_s, ticks_per_second()));
    Observed { start_ticks, start_ms }
}

/// One process as `/proc` identifies it: a pid and the start time that tells it from a later
/// process given the same pid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Member {
    pub pid: i32,
    pub start_ticks: u64,
}
