//! Processes: identity from `/proc`, agents started in their own group, a child's exit with its
//! peak memory (`wait4`), and guarded clean-up by pid.

use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::{getpgrp, getpid, Pid};
use serde_json::{json, Value};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What `/proc/<pid>/stat` says about a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    pub state: char,
    pub parent_pid: i32,
    /// Field 22: the start time in clock ticks after boot.
    pub start_ticks: u64,
}

/// Parses `/proc/<pid>/stat` after the last `)` (the command name may hold anything).
pub fn stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = text.get(text.rfind(')')? + 2..)?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    Some(Stat {
        state: fields.first()?.chars().next()?,
        parent_pid: fields.get(1)?.parse().ok()?,
        start_ticks: fields.get(19)?.parse().ok()?,
    })
}

/// The start time of a running process; `None` when it is gone or a zombie.
pub fn start_ticks(pid: i32) -> Option<u64> {
    stat(pid).filter(|stat| !matches!(stat.state, 'Z' | 'X' | 'x')).map(|stat| stat.start_ticks)
}

/// Whether the process recorded as (`pid`, `ticks`) has ended (gone, zombie, or pid reused).
pub fn is_gone(pid: i32, ticks: u64) -> bool {
    start_ticks(pid) != Some(ticks)
}

/// Every live descendant of `root` as (pid, start ticks), from one scan of `/proc`.
pub fn descendants(root: i32) -> Vec<(i32, u64)> {
    let mut table = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<i32>().ok()) else { continue };
        if let Some(stat) = stat(pid).filter(|stat| stat.state != 'Z') {
            table.push((pid, stat));
        }
    }
    let mut found = vec![root];
    let mut index = 0;
    while index < found.len() {
        let parent = found[index];
        found.extend(table.iter().filter(|(_, stat)| stat.parent_pid == parent).map(|(pid, _)| *pid));
        index += 1;
    }
    found.into_iter().skip(1).filter_map(|pid| Some((pid, start_ticks(pid)?))).collect()
}

/// Makes this process the reaper of its orphaned descendants, so the children of a killed agent
/// end as our zombies and we can collect them (instead of piling up under a pid 1 that may not).
pub fn become_subreaper() {
    nix::sys::prctl::set_child_subreaper(true).expect("prctl(PR_SET_CHILD_SUBREAPER)");
}

/// Collects a zombie that is ours (a child, or an orphan handed to us as subreaper); a no-op
/// for any other pid.
pub fn reap(pid: i32) {
    if pid > 1 {
        let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
    }
}

/// Collects every zombie child of ours (orphans handed to us as subreaper, such as the children
/// an agent left behind). Call it only when no `Child` handle of ours still waits for an exit.
pub fn reap_orphans() {
    let own = getpid().as_raw();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<i32>().ok()) else { continue };
        if stat(pid).is_some_and(|stat| stat.parent_pid == own && stat.state == 'Z') {
            reap(pid);
        }
    }
}

/// SIGKILLs the process group led by (`pid`, `ticks`), only if that very process still leads
/// it and it is neither pid 0/1 nor our own process or group.
pub fn kill_group_checked(pid: i32, ticks: u64) {
    if pid <= 1 || pid == getpid().as_raw() || pid == getpgrp().as_raw() || is_gone(pid, ticks) {
        return;
    }
    let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
}

/// SIGKILLs the single process (`pid`, `ticks`) under the same guard.
pub fn kill_checked(pid: i32, ticks: u64) {
    if pid <= 1 || pid == getpid().as_raw() || pid == getpgrp().as_raw() || is_gone(pid, ticks) {
        return;
    }
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
}

/// Polls `condition` every `step` until it holds or `limit` passes; returns whether it held.
pub fn wait_for(limit: Duration, step: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(step);
    }
}

/// An agent the bench started itself: `sh -c command` in its own process group, as the service
/// would. Dropping it SIGKILLs its group and the descendants seen at start, then reaps them.
pub struct AgentProcess {
    child: Child,
    pub pid: i32,
    pub start_ticks: u64,
    pub command: String,
    /// Descendants recorded by [`AgentProcess::wait_children`], to check and clean up.
    pub children: Vec<(i32, u64)>,
}

impl AgentProcess {
    pub fn start(command: &str) -> AgentProcess {
        let mut child = Command::new("sh");
        child.arg("-c").arg(command).process_group(0);
        child.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        let child = child.spawn().expect("spawn the agent");
        let pid = child.id() as i32;
        let start_ticks = stat(pid).expect("a process just spawned has a /proc entry").start_ticks;
        AgentProcess { child, pid, start_ticks, command: command.to_string(), children: Vec::new() }
    }

    /// Waits (up to 5 s) until the agent has `count` live descendants, and records them.
    pub fn wait_children(&mut self, count: usize) {
        let pid = self.pid;
        let mut seen = Vec::new();
        let ok = wait_for(Duration::from_secs(5), Duration::from_millis(1), || {
            seen = descendants(pid);
            seen.len() >= count
        });
        assert!(ok, "the agent {pid} started {} of its {count} children within 5 s", seen.len());
        self.children = seen;
    }

    /// Waits (up to 5 s) until the agent ignores SIGTERM (`SigIgn` in `/proc/<pid>/status`).
    pub fn wait_ignoring_term(&self) {
        let path = format!("/proc/{}/status", self.pid);
        let term_bit = 1u64 << (libc::SIGTERM - 1);
        let ok = wait_for(Duration::from_secs(5), Duration::from_micros(200), || {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let mask = text.lines().find_map(|line| line.strip_prefix("SigIgn:")).map(str::trim);
            mask.and_then(|mask| u64::from_str_radix(mask, 16).ok()).is_some_and(|mask| mask & term_bit != 0)
        });
        assert!(ok, "the agent {} did not start ignoring SIGTERM within 5 s", self.pid);
    }

    /// The registry entry upstream workgraph would have written for this agent.
    pub fn registry_entry(&self, agent_id: &str, task_id: &str) -> Value {
        let now = now_rfc3339();
        json!({
            "id": agent_id, "pid": self.pid, "task_id": task_id, "executor": "shell",
            "started_at": now, "last_heartbeat": now, "status": "working",
            "output_file": format!(".wg/agents/{agent_id}/output.log"), "process_start_ticks": self.start_ticks
        })
    }

    /// Whether the agent and every recorded descendant have ended (a zombie counts as ended).
    pub fn tree_gone(&self) -> bool {
        is_gone(self.pid, self.start_ticks) && self.children.iter().all(|&(pid, ticks)| is_gone(pid, ticks))
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        kill_group_checked(self.pid, self.start_ticks);
        for &(pid, ticks) in &self.children {
            kill_checked(pid, ticks);
        }
        let _ = self.child.wait();
        for &(pid, _) in &self.children {
            // Orphans come to us as subreaper; wait briefly for SIGKILL to land, then collect.
            wait_for(Duration::from_secs(2), Duration::from_millis(1), || {
                stat(pid).is_none_or(|stat| matches!(stat.state, 'Z' | 'X' | 'x'))
            });
            reap(pid);
        }
        reap_orphans();
    }
}

/// How a child ended: its exit status, peak resident memory, and what it printed.
#[derive(Debug)]
pub struct Finished {
    /// From the spawn to `wait4` returning.
    pub elapsed: Duration,
    /// `Some(code)` for a normal exit.
    pub code: Option<i32>,
    /// `ru_maxrss` of the child, in KiB.
    pub max_rss_kib: u64,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    pub fn assert_success(&self, what: &str) {
        assert_eq!(self.code, Some(0), "{what} failed:\nstdout: {}\nstderr: {}", self.stdout, self.stderr);
    }
}

/// A child being measured: spawned with piped output, waited for with `wait4` so that its
/// rusage is its own, not that of every child we ever had. Output must stay small (< a pipe
/// buffer), as it is read only after the exit.
pub struct Measured {
    child: Child,
    started: Instant,
}

impl Measured {
    pub fn spawn(command: &mut Command) -> Measured {
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let started = Instant::now();
        let child = command.spawn().expect("spawn");
        Measured { child, started }
    }

    /// When the spawn began.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Waits for the exit.
    pub fn finish(mut self) -> Finished {
        self.wait4(0).expect("a blocking wait4 returns the child")
    }

    /// The exit, if it has happened (`elapsed` is then as late as this call).
    pub fn try_finish(&mut self) -> Option<Finished> {
        self.wait4(libc::WNOHANG)
    }

    fn wait4(&mut self, flags: libc::c_int) -> Option<Finished> {
        let pid = self.child.id() as libc::pid_t;
        let mut status = 0;
        // SAFETY: rusage is plain data that wait4 fills in.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let waited = loop {
            // SAFETY: valid pointers to locals; `pid` is our child and nothing else waits for it.
            let result = unsafe { libc::wait4(pid, &mut status, flags, &mut usage) };
            if result != -1 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                break result;
            }
        };
        if waited == 0 {
            return None;
        }
        let elapsed = self.started.elapsed();
        assert_eq!(waited, pid, "wait4({pid}): {}", std::io::Error::last_os_error());
        let mut stdout = String::new();
        let mut stderr = String::new();
        if let Some(pipe) = self.child.stdout.as_mut() {
            let _ = std::io::Read::read_to_string(pipe, &mut stdout);
        }
        if let Some(pipe) = self.child.stderr.as_mut() {
            let _ = std::io::Read::read_to_string(pipe, &mut stderr);
        }
        let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
        Some(Finished { elapsed, code, max_rss_kib: usage.ru_maxrss.max(0) as u64, stdout, stderr })
    }
}

/// Runs `command` to the end and returns how it ended (see [`Measured`]).
pub fn run_measured(command: &mut Command) -> Finished {
    Measured::spawn(command).finish()
}

pub fn now_rfc3339() -> String {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_millis();
    wg_core::time::format_rfc3339(ms as i64)
}
