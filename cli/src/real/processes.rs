//! Real agent processes (docs/design.md, Processes).
//!
//! An agent is `sh -c <exec>` in its own process group. It is identified by pid plus start time
//! (field 22 of `/proc/<pid>/stat`). Every signal path passes [`guard_pid`] first, then opens a
//! pidfd and only afterwards checks the identity in `/proc`: if `/proc` still shows the recorded
//! process after the fd was opened, the fd refers to that very process, so the signal sent through
//! it cannot hit a process that took over the pid later.
//!
//! The port methods do their blocking work inside the call (a blocking `poll` on pidfds) and so
//! complete on their first poll, as `wg_core::block_on` requires.

use nix::sys::signal::SigSet;
use rustix::event::{poll, PollFd, PollFlags};
use rustix::io::Errno;
use rustix::process::{kill_process, pidfd_open, pidfd_send_signal, Pid, PidfdFlags, Signal as RawSignal};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use wg_core::identity::{check_pid, Observed, Signaller};
use wg_core::model::ProcessRef;
use wg_core::ports::{ExitKind, ExitWait, Liveness, Processes, Signal, SignalOutcome, SpawnRequest, Spawned};
use wg_core::time::EpochMs;

/// `btime` in `/proc/stat` has one-second granularity and the wall clock may have been stepped
/// since boot, so a process counts as "started later" only beyond this margin.
pub const START_SLACK_MS: i64 = 2_000;

/// Without pidfds (kernels before 5.3) there is no exit event to wait on; we look at `/proc`
/// this often instead. With pidfds this interval is never used.
const NO_PIDFD_RECHECK_MS: i64 = 20;

/// How often `signal` looks for processes forked between its scan of `/proc` and its signal.
const MAX_SIGNAL_ROUNDS: usize = 8;

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

/// The start time of `pid` in clock ticks after boot (field 22 of `/proc/<pid>/stat`).
pub fn read_start_ticks(pid: i32) -> Option<u64> {
    read_stat(pid).map(|stat| stat.start_ticks)
}

/// Every process in `/proc` right now. Processes that vanish while we read are skipped.
pub fn scan_processes() -> Vec<ProcStat> {
    let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
    entries.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok()).filter_map(read_stat).collect()
}

/// The pid guard ([`wg_core::identity::check_pid`], the one place for the rule) against this
/// process. Every path that signals or waits goes through it first.
pub fn guard_pid(pid: i64) -> Result<i32, String> {
    let own_pid = rustix::process::getpid().as_raw_nonzero().get();
    let own_pgid = rustix::process::getpgrp().as_raw_nonzero().get();
    check_pid(pid, Some(Signaller { pid: own_pid, pgid: own_pgid }))
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

/// Is the process that started at `start_ticks` the one `process` means? The identity rule
/// ([`wg_core::identity::check_identity`]) with what `/proc` shows and its precision.
pub fn check_identity(process: &ProcessRef, start_ticks: u64) -> Result<(), String> {
    wg_core::identity::check_identity(process, observe(start_ticks), START_SLACK_MS)
}

/// A process we verified and hold: the pidfd pins it (`None` only where the kernel has no pidfds).
struct Held {
    pid: i32,
    start_ticks: u64,
    fd: Option<OwnedFd>,
}

impl Held {
    fn member(&self) -> Member {
        Member { pid: self.pid, start_ticks: self.start_ticks }
    }
}

enum Hold {
    Held(Held),
    /// Verified, but it has ended (a zombie, start ticks given): nothing to signal, yet its pid
    /// cannot be reused until it is reaped, so it still names its process group.
    Ended(u64),
    /// No such process.
    Gone,
    /// The pid holds another process, or the pidfd could not be opened.
    Other(String),
}

/// Opens a pidfd for `pid`, then checks `/proc` (in that order, see the module comment).
fn hold(pid: i32, verify: impl Fn(&ProcStat) -> Result<(), String>) -> Hold {
    let Some(raw) = Pid::from_raw(pid) else { return Hold::Other(format!("pid {pid} is not a process")) };
    let fd = match pidfd_open(raw, PidfdFlags::empty()) {
        Ok(fd) => Some(fd),
        Err(Errno::NOSYS) => None,
        Err(Errno::SRCH) => return Hold::Gone,
        Err(error) => return Hold::Other(format!("pidfd_open({pid}): {error}")),
    };
    let Some(stat) = read_stat(pid) else { return Hold::Gone };
    if let Err(why) = verify(&stat) {
        return Hold::Other(why);
    }
    if stat.has_ended() {
        return Hold::Ended(stat.start_ticks);
    }
    Hold::Held(Held { pid, start_ticks: stat.start_ticks, fd })
}

fn raw_signal(signal: Signal) -> RawSignal {
    match signal {
        Signal::Term => RawSignal::Term,
        Signal::Kill => RawSignal::Kill,
    }
}

/// Sends through the pidfd (plain `kill` only without pidfd support, after the same checks).
/// `Ok(false)`: the process ended meanwhile. EPERM is reported, never worked around.
fn send(held: &Held, signal: Signal) -> Result<bool, String> {
    let result = match (&held.fd, Pid::from_raw(held.pid)) {
        (Some(fd), _) => pidfd_send_signal(fd, raw_signal(signal)),
        (None, Some(pid)) => kill_process(pid, raw_signal(signal)),
        (None, None) => return Ok(false),
    };
    match result {
        Ok(()) => Ok(true),
        Err(Errno::SRCH) => Ok(false),
        Err(Errno::PERM) => Err(format!("permission denied: signalling pid {}", held.pid)),
        Err(error) => Err(format!("signalling pid {}: {error}", held.pid)),
    }
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

fn now_ms() -> EpochMs {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_millis() as EpochMs
}

/// One process of an agent's tree, as it was when we signalled it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Member {
    pub pid: i32,
    pub start_ticks: u64,
}

/// The tree we last signalled for an agent pid, so that `wait_exit` and a later SIGKILL reach the
/// same processes even after the leader died and its descendants were reparented.
#[derive(Clone, Debug)]
struct Tree {
    leader: Member,
    members: Vec<Member>,
}

/// A process we spawned: we are its parent, so only we can reap it.
#[derive(Clone, Copy, Debug)]
struct Child {
    start_ticks: Option<u64>,
    /// Set once reaped. The pid is free for reuse from then on, so this exit belongs to
    /// `start_ticks` only.
    exit: Option<ExitKind>,
}

/// The production [`Processes`] port.
pub struct RealProcesses {
    /// Absolute path of the `.wg` directory (exported to agents as `WG_DIR`).
    wg_dir: PathBuf,
    children: RefCell<BTreeMap<i32, Child>>,
    trees: RefCell<BTreeMap<i32, Tree>>,
    /// Write ends of the gates of spawned agents not yet released (see [`AGENT_GATE`]).
    gates: RefCell<BTreeMap<i32, OwnedFd>>,
}

/// The agent's shell waits on fd 3 for the spawner's go before it runs the task's command
/// (`exec` keeps pid and start time). If the spawner closes the gate or dies first, `read` sees
/// end-of-file and the shell kills itself: a death by signal, which the reaper re-queues.
const AGENT_GATE: &str = r#"read -r _ <&3 || kill -KILL $$; exec 3<&-; exec sh -c "$WG_AGENT_COMMAND""#;

/// The fd the gate's read end gets in the agent.
const GATE_FD: i32 = 3;

impl RealProcesses {
    pub fn new(wg_dir: PathBuf) -> RealProcesses {
        let wg_dir = std::path::absolute(&wg_dir).unwrap_or(wg_dir);
        RealProcesses { wg_dir, children: RefCell::default(), trees: RefCell::default(), gates: RefCell::default() }
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
    /// readability (`POLLIN` = the child ended) and then calls [`RealProcesses::reap_children`].
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
        self.trees.borrow().get(&pid).map(|tree| tree.members.clone()).unwrap_or_default()
    }

    fn spawn_now(&self, request: &SpawnRequest) -> Result<Spawned, String> {
        let log = self.open_log(&request.agent_id)?;
        let log_err = log.try_clone().map_err(|error| format!("output.log: {error}"))?;
        // Both ends close on exec, so no other child inherits the write end and keeps a gate open.
        let (gate_read, gate_write) =
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|error| format!("gate pipe: {error}"))?;
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(AGENT_GATE)
            // Own group: a kill reaches the agent's whole group, and never ours.
            .process_group(0)
            .env("WG_AGENT_COMMAND", &request.command)
            .env("WG_TASK_ID", &request.task_id)
            .env("WG_AGENT_ID", &request.agent_id)
            .env("WG_DIR", &self.wg_dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        let gate_read_raw = gate_read.as_raw_fd();
        // The service blocks SIGTERM/SIGINT/SIGCHLD for its signalfd, and a blocked mask survives
        // fork and exec: without clearing it an agent could never be stopped by SIGTERM. The gate's
        // read end goes to fd 3 without close-on-exec.
        // SAFETY: runs in the forked child before exec; it only makes plain syscalls
        // (pthread_sigmask, dup2, fcntl), which are async-signal-safe, and allocates nothing.
        unsafe {
            command.pre_exec(move || {
                SigSet::empty().thread_set_mask().map_err(std::io::Error::from)?;
                if gate_read_raw == GATE_FD {
                    let flags = nix::fcntl::FdFlag::empty();
                    nix::fcntl::fcntl(GATE_FD, nix::fcntl::FcntlArg::F_SETFD(flags)).map_err(std::io::Error::from)?;
                } else {
                    nix::unistd::dup2(gate_read_raw, GATE_FD).map_err(std::io::Error::from)?;
                }
                Ok(())
            });
        }
        let child = command.spawn().map_err(|error| format!("spawning `sh -c` for {}: {error}", request.agent_id))?;
        drop(gate_read);
        // `Child` does not wait on drop; we reap by pid with waitpid.
        let pid = i32::try_from(child.id()).map_err(|_| format!("pid {} out of range", child.id()))?;
        // Unreaped, the child keeps its pid (even as a zombie), so this reads the right process.
        let start_ticks = read_start_ticks(pid);
        self.children.borrow_mut().insert(pid, Child { start_ticks, exit: None });
        self.gates.borrow_mut().insert(pid, gate_write);
        Ok(Spawned { pid: i64::from(pid), start_ticks })
    }

    /// Opens (`go`) or closes the gate of a process from `spawn_now`.
    fn release_now(&self, spawned: &Spawned, go: bool) {
        let Some(gate) = i32::try_from(spawned.pid).ok().and_then(|pid| self.gates.borrow_mut().remove(&pid)) else {
            return;
        };
        if go {
            // A failed write leaves the gate to close on drop below: the agent ends unrun, and the
            // reaper re-queues its task.
            let _ = rustix::io::write(&gate, b"go\n");
        }
    }

    /// `<wg_dir>/agents/<agent-id>/output.log`, appended to.
    fn open_log(&self, agent_id: &str) -> Result<File, String> {
        // The id becomes a directory name: it must not climb out of `agents/`.
        if agent_id.is_empty() || agent_id == "." || agent_id == ".." || agent_id.contains(['/', '\0']) {
            return Err(format!("agent id {agent_id:?} cannot name a directory"));
        }
        let dir = self.wg_dir.join("agents").join(agent_id);
        fs::create_dir_all(&dir).map_err(|error| format!("{}: {error}", dir.display()))?;
        let path = dir.join("output.log");
        let file = OpenOptions::new().create(true).append(true).open(&path);
        file.map_err(|error| format!("{}: {error}", path.display()))
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
            Err(why) => return Liveness::Refused(why),
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

    /// The remembered tree of `pid`, if its leader is the process `process` means.
    fn remembered_tree(&self, pid: i32, process: &ProcessRef) -> Option<Tree> {
        let tree = self.trees.borrow().get(&pid).cloned()?;
        check_identity(process, tree.leader.start_ticks).ok()?;
        Some(tree)
    }

    fn signal_now(&self, process: &ProcessRef, signal: Signal) -> SignalOutcome {
        let pid = match guard_pid(process.pid) {
            Ok(pid) => pid,
            Err(why) => return SignalOutcome::NotOurs(why),
        };
        let remembered = self.remembered_tree(pid, process);
        // `group`: the leader is verified and not reaped, so the group named by its pid is its own.
        let (leader, leader_member, group) = match hold(pid, |stat| check_identity(process, stat.start_ticks)) {
            Hold::Other(why) => return SignalOutcome::NotOurs(why),
            Hold::Held(held) => {
                let member = Member { pid, start_ticks: held.start_ticks };
                (Some(held), member, Some(pid))
            }
            Hold::Ended(start_ticks) => (None, Member { pid, start_ticks }, Some(pid)),
            // Reaped: what is left is reachable only through the tree remembered from an earlier
            // signal (its pid may name a stranger's group by now).
            Hold::Gone => match &remembered {
                Some(tree) => (None, tree.leader, None),
                None => return SignalOutcome::Gone,
            },
        };
        let mut roots = remembered.map(|tree| tree.members).unwrap_or_default();
        roots.push(leader_member);
        // The leader was verified just now, and a group id is not handed out again while any
        // process of the group exists: the group is the agent's. A group-wide signal also reaches
        // a child being forked right now (the kernel restarts such a fork), which a scan misses.
        // Sent after the per-process signals, so the tree snapshot still sees every member.
        let group_signal =
            if leader.is_some() { group.filter(|pgid| guard_pid(i64::from(*pgid)).is_ok()) } else { None };
        let result = signal_tree(leader, roots, group, signal);
        if let (Some(pgid), Ok(_)) = (group_signal, &result) {
            let _ = rustix::process::kill_process_group(Pid::from_raw(pgid).expect("guarded > 1"), raw_signal(signal));
        }
        match result {
            Err(why) => SignalOutcome::NotOurs(why),
            Ok((delivered, signalled)) => {
                self.trees.borrow_mut().insert(pid, Tree { leader: leader_member, members: signalled });
                if delivered {
                    SignalOutcome::Delivered
                } else {
                    SignalOutcome::Gone
                }
            }
        }
    }

    fn wait_now(&self, process: &ProcessRef, deadline_ms: EpochMs) -> ExitWait {
        // A pid we may not touch has nothing of ours to wait for (signal refused it too).
        let Ok(pid) = guard_pid(process.pid) else { return ExitWait::Exited };
        let tree = match self.remembered_tree(pid, process) {
            Some(tree) => tree,
            None => match hold(pid, |stat| check_identity(process, stat.start_ticks)) {
                Hold::Held(held) => {
                    let leader = Member { pid, start_ticks: held.start_ticks };
                    Tree { leader, members: vec![leader] }
                }
                Hold::Ended(_) | Hold::Gone | Hold::Other(_) => {
                    // Reap our own child even when nobody signalled it.
                    if let Some(start_ticks) = process.start_ticks {
                        self.reap_member(Member { pid, start_ticks });
                    }
                    return ExitWait::Exited;
                }
            },
        };
        let mut waiting: Vec<Held> = Vec::new();
        for member in &tree.members {
            match hold(member.pid, |stat| same_start(stat, member.start_ticks)) {
                Hold::Held(held) => waiting.push(held),
                Hold::Ended(_) | Hold::Gone | Hold::Other(_) => self.reap_member(*member),
            }
        }
        let leader_alive = waiting.iter().any(|held| held.pid == pid);
        if !leader_alive {
            self.add_late_members(&tree.leader, &mut waiting);
        }
        self.wait_until(tree.leader, waiting, !leader_alive, deadline_ms)
    }

    /// Polls the pidfds of `waiting` until all have ended or `deadline_ms` passes.
    fn wait_until(
        &self,
        leader: Member,
        mut waiting: Vec<Held>,
        mut rescanned: bool,
        deadline_ms: EpochMs,
    ) -> ExitWait {
        loop {
            if waiting.is_empty() {
                return ExitWait::Exited;
            }
            let remaining_ms = deadline_ms - now_ms();
            let ended = ended_members(&waiting, remaining_ms.max(0));
            for index in ended.iter().rev() {
                let held = waiting.remove(*index);
                let member = held.member();
                if member == leader && !rescanned {
                    // Before reaping: while the leader is a zombie its pid (= the group id)
                    // cannot be reused, so group members found now are the agent's.
                    rescanned = true;
                    self.add_late_members(&leader, &mut waiting);
                }
                self.reap_member(member);
            }
            if ended.is_empty() && remaining_ms <= 0 {
                return ExitWait::TimedOut;
            }
        }
    }

    /// Processes of the tree that appeared after the snapshot (the leader's group, descendants of
    /// members still running): waited for, not signalled, and remembered for a later SIGKILL.
    fn add_late_members(&self, leader: &Member, waiting: &mut Vec<Held>) {
        let table = scan_processes();
        let mut roots: BTreeSet<i32> = waiting.iter().map(|held| held.pid).collect();
        // Descendants start after the leader; anything older is not of this tree.
        let in_group = table.iter().filter(|stat| stat.pgid == leader.pid && stat.start_ticks >= leader.start_ticks);
        roots.extend(in_group.map(|stat| stat.pid));
        let known: BTreeSet<i32> = waiting.iter().map(|held| held.pid).collect();
        for (pid, start_ticks) in with_descendants(roots, &table) {
            if known.contains(&pid) || guard_pid(i64::from(pid)).is_err() {
                continue;
            }
            if let Hold::Held(held) = hold(pid, |stat| same_start(stat, start_ticks)) {
                waiting.push(held);
            }
        }
        if let Some(tree) = self.trees.borrow_mut().get_mut(&leader.pid) {
            let late: Vec<Member> = waiting.iter().map(Held::member).filter(|m| !tree.members.contains(m)).collect();
            tree.members.extend(late);
        }
    }
}

/// Sends SIGTERM to the single process `pid` (not its tree) if it still is the one that started
/// at `start_ticks`, and waits up to `grace` for it to exit. Used to stop the service, whose
/// agents are meant to keep running. `Ok` also when it was gone already; no SIGKILL follows.
pub fn terminate_one(pid: i32, start_ticks: u64, grace: Duration) -> Result<(), String> {
    let pid = guard_pid(i64::from(pid))?;
    let held = match hold(pid, |stat| same_start(stat, start_ticks)) {
        Hold::Held(held) => held,
        Hold::Ended(_) | Hold::Gone => return Ok(()),
        Hold::Other(why) => return Err(why),
    };
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
            return Err(format!("pid {pid} did not exit within {} ms of SIGTERM", grace.as_millis()));
        }
    }
    Ok(())
}

fn same_start(stat: &ProcStat, start_ticks: u64) -> Result<(), String> {
    if stat.start_ticks == start_ticks {
        Ok(())
    } else {
        Err(format!("pid {} was reused", stat.pid))
    }
}

/// `roots` plus every process below them by parent pid, with start ticks from `table`.
fn with_descendants(roots: BTreeSet<i32>, table: &[ProcStat]) -> BTreeMap<i32, u64> {
    let mut children: BTreeMap<i32, Vec<&ProcStat>> = BTreeMap::new();
    for stat in table {
        children.entry(stat.ppid).or_default().push(stat);
    }
    let ticks: BTreeMap<i32, u64> = table.iter().map(|stat| (stat.pid, stat.start_ticks)).collect();
    let mut found = BTreeMap::new();
    let mut queue: Vec<i32> = roots.into_iter().collect();
    while let Some(pid) = queue.pop() {
        // Never walk below init or ourselves: that would take in unrelated processes.
        if found.contains_key(&pid) || guard_pid(i64::from(pid)).is_err() {
            continue;
        }
        let Some(&start_ticks) = ticks.get(&pid) else { continue };
        found.insert(pid, start_ticks);
        queue.extend(children.get(&pid).into_iter().flatten().map(|stat| stat.pid));
    }
    found
}

/// Signals `leader` (first) and the rest of its tree: the process `group` named by its pid, and
/// every descendant by parent pid of the `roots` (members remembered from an earlier signal and
/// the leader) and of the group (which also finds those that left the group via setsid). Then
/// looks again: a process cannot fork once a fatal signal is pending, but it may have forked
/// between our scan and the signal. Stops when a scan finds nobody new, or after a few rounds
/// for a tree that ignores the signal and keeps forking (SIGKILL comes later).
/// Returns whether anything was delivered and what was signalled; `Err` when the kernel refused
/// the leader (which is signalled first, so nothing was sent then).
fn signal_tree(
    leader: Option<Held>,
    mut roots: Vec<Member>,
    group: Option<i32>,
    signal: Signal,
) -> Result<(bool, Vec<Member>), String> {
    let leader_pid = leader.as_ref().map(|held| held.pid);
    let mut batch: Vec<Held> = leader.into_iter().collect();
    let mut signalled: Vec<Member> = Vec::new();
    let mut delivered = false;
    // SIGTERM goes to the tree as it stands, once: what a cooperative agent starts in response
    // (its `wg done`, a cleanup helper) must be left to finish. SIGKILL is final, so it chases
    // processes forked meanwhile (one with a fatal signal pending cannot fork any more).
    let rounds = match signal {
        Signal::Term => 1,
        Signal::Kill => MAX_SIGNAL_ROUNDS,
    };
    for _ in 0..rounds {
        let known: BTreeSet<i32> = signalled.iter().map(|m| m.pid).chain(batch.iter().map(|h| h.pid)).collect();
        batch.extend(collect_new(&roots, group, &known, &scan_processes()));
        if batch.is_empty() {
            break;
        }
        for held in &batch {
            match send(held, signal) {
                Ok(sent) => delivered |= sent,
                Err(why) if Some(held.pid) == leader_pid => return Err(why),
                // A descendant we may not signal (e.g. setuid): wait_exit will wait for it in vain
                // and say so, rather than us pretending the tree is gone.
                Err(_) => {}
            }
        }
        signalled.extend(batch.drain(..).map(|held| held.member()));
        roots.clone_from(&signalled);
    }
    Ok((delivered, signalled))
}

/// The processes of the tree not in `known`, each verified and held: the members of `group` and
/// the descendants of those and of the `roots` that still run.
fn collect_new(roots: &[Member], group: Option<i32>, known: &BTreeSet<i32>, table: &[ProcStat]) -> Vec<Held> {
    let running: BTreeSet<Member> =
        table.iter().map(|stat| Member { pid: stat.pid, start_ticks: stat.start_ticks }).collect();
    let mut root_pids: BTreeSet<i32> = roots.iter().filter(|m| running.contains(m)).map(|m| m.pid).collect();
    if let Some(pgid) = group {
        root_pids.extend(table.iter().filter(|stat| stat.pgid == pgid).map(|stat| stat.pid));
    }
    let new = with_descendants(root_pids, table).into_iter().filter(|(pid, _)| !known.contains(pid));
    new.filter_map(|(pid, start_ticks)| match hold(pid, |stat| same_start(stat, start_ticks)) {
        Hold::Held(held) => Some(held),
        Hold::Ended(_) | Hold::Gone | Hold::Other(_) => None,
    })
    .collect()
}

/// Blocks until at least one of `waiting` has ended or `timeout_ms` passes; returns the indices
/// of those that ended. Waits on the pidfds' exit events; `/proc` is only looked at for
/// processes held without a pidfd.
fn ended_members(waiting: &[Held], timeout_ms: i64) -> Vec<usize> {
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

impl Processes for RealProcesses {
    async fn spawn(&self, request: &SpawnRequest) -> Result<Spawned, String> {
        self.spawn_now(request)
    }

    async fn release(&self, spawned: &Spawned, go: bool) {
        self.release_now(spawned, go)
    }

    async fn liveness(&self, process: &ProcessRef) -> Liveness {
        self.liveness_now(process)
    }

    async fn signal(&self, process: &ProcessRef, signal: Signal) -> SignalOutcome {
        self.signal_now(process, signal)
    }

    async fn wait_exit(&self, process: &ProcessRef, deadline_ms: EpochMs) -> ExitWait {
        self.wait_now(process, deadline_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::wait::waitpid;
    use std::time::Instant;
    use wg_core::block_on;

    fn request(agent_id: &str, command: &str) -> SpawnRequest {
        SpawnRequest { task_id: "task-1".into(), agent_id: agent_id.into(), command: command.into() }
    }

    /// Spawns and opens the gate at once, as the dispatcher does after recording the pid.
    fn spawn_released(processes: &RealProcesses, request: &SpawnRequest) -> Result<Spawned, String> {
        let spawned = block_on(processes.spawn(request))?;
        block_on(processes.release(&spawned, true));
        Ok(spawned)
    }

    #[test]
    fn a_closed_gate_ends_the_agent_before_it_runs_anything() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("ran");
        let command = format!("touch {}", marker.display());
        for close in ["by release", "by the spawner going away"] {
            let processes = RealProcesses::new(dir.path().to_path_buf());
            let spawned = block_on(processes.spawn(&request("agent-1", &command))).expect("spawns");
            let process = ProcessRef { pid: spawned.pid, start_ticks: spawned.start_ticks, started_at_ms: None };
            if close == "by release" {
                block_on(processes.release(&spawned, false));
            } else {
                drop(processes.gates.borrow_mut().remove(&(spawned.pid as i32)));
            }
            let deadline_ms = now_ms() + 5_000;
            assert_eq!(block_on(processes.wait_exit(&process, deadline_ms)), ExitWait::Exited, "gate closed {close}");
            assert_eq!(block_on(processes.liveness(&process)), Liveness::Gone(ExitKind::Died), "{close}");
            assert!(!marker.exists(), "the command never ran (gate closed {close})");
        }
    }

    fn process_ref(spawned: Spawned) -> ProcessRef {
        ProcessRef { pid: spawned.pid, start_ticks: spawned.start_ticks, started_at_ms: None }
    }

    fn in_ms(duration_ms: i64) -> EpochMs {
        now_ms() + duration_ms
    }

    /// Gone, a zombie, or the pid holds another process now.
    fn is_gone(member: Member) -> bool {
        read_stat(member.pid).is_none_or(|stat| stat.has_ended() || stat.start_ticks != member.start_ticks)
    }

    /// Test set-up only: waits (by looking every 10 ms) until `ready`, at most `limit_ms`.
    fn wait_for(limit_ms: u64, ready: impl Fn() -> bool) -> bool {
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(limit_ms) {
            if ready() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        ready()
    }

    /// The running tree below `leader`: its group and descendants, zombies left out.
    fn live_tree(leader: i32) -> BTreeMap<i32, u64> {
        let table: Vec<ProcStat> = scan_processes().into_iter().filter(|stat| !stat.has_ended()).collect();
        let mut roots: BTreeSet<i32> = table.iter().filter(|stat| stat.pgid == leader).map(|stat| stat.pid).collect();
        roots.insert(leader);
        with_descendants(roots, &table)
    }

    /// Kills (SIGKILL, by verified pid) whatever a test started and did not stop, and reaps the
    /// children among them, so no test leaves anything behind even when it fails.
    struct Cleanup {
        children: Vec<Member>,
        others: Vec<Member>,
    }

    impl Cleanup {
        fn new() -> Cleanup {
            Cleanup { children: Vec::new(), others: Vec::new() }
        }

        fn child(&mut self, spawned: Spawned) -> Member {
            let pid = i32::try_from(spawned.pid).expect("pid fits i32");
            let member = Member { pid, start_ticks: spawned.start_ticks.expect("start ticks read at spawn") };
            self.children.push(member);
            member
        }
    }

    impl Drop for Cleanup {
        fn drop(&mut self) {
            // Repeated: a parent may have forked after our scan and before its SIGKILL.
            for _ in 0..50 {
                let mut doomed: Vec<Member> = self.others.iter().copied().filter(|m| !is_gone(*m)).collect();
                for child in &self.children {
                    let tree = live_tree(child.pid).into_iter();
                    doomed.extend(tree.map(|(pid, start_ticks)| Member { pid, start_ticks }));
                }
                if doomed.is_empty() {
                    break;
                }
                for member in doomed {
                    let verified = read_start_ticks(member.pid) == Some(member.start_ticks);
                    if let (true, Ok(pid)) = (verified, guard_pid(i64::from(member.pid))) {
                        let _ = kill_process(Pid::from_raw(pid).expect("guarded pid > 1"), RawSignal::Kill);
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            for child in &self.children {
                // Blocks only for a child we just killed; ECHILD if RealProcesses reaped it.
                let _ = waitpid(nix::unistd::Pid::from_raw(child.pid), None);
            }
        }
    }

    #[test]
    fn parse_stat_reads_fields_after_the_last_parenthesis() {
        let line = "4242 (we(ird) )name) S 17 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 98765 1 2 3";
        let stat = parse_stat(line).expect("parses");
        assert_eq!(stat, ProcStat { pid: 4242, state: 'S', ppid: 17, pgid: 4242, start_ticks: 98765 });
        assert_eq!(parse_stat("12 (short) S 1 2"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn read_start_ticks_of_this_process_is_stable() {
        let own = rustix::process::getpid().as_raw_nonzero().get();
        let first = read_start_ticks(own).expect("own stat readable");
        assert_eq!(read_start_ticks(own), Some(first));
        assert_eq!(read_stat(own).map(|stat| stat.pid), Some(own));
    }

    #[test]
    fn guard_pid_refuses_our_own_pid_and_group() {
        let own_pid = rustix::process::getpid().as_raw_nonzero().get();
        let own_pgid = rustix::process::getpgrp().as_raw_nonzero().get();
        assert!(guard_pid(i64::from(own_pid)).is_err());
        assert!(guard_pid(i64::from(own_pgid)).is_err());
        assert!(guard_pid(0).is_err() && guard_pid(1).is_err() && guard_pid(-1).is_err());
        assert!(guard_pid(i64::MAX).is_err());
        // Refused pids are reported, never looked at, by liveness (which sends nothing).
        let processes = RealProcesses::new(PathBuf::from("/nonexistent/.wg"));
        let own = ProcessRef { pid: i64::from(own_pid), start_ticks: None, started_at_ms: None };
        assert!(matches!(block_on(processes.liveness(&own)), Liveness::Refused(_)));
    }

    #[test]
    fn start_epoch_ms_adds_ticks_to_boot_time() {
        assert_eq!(start_epoch_ms(250, 1_700_000_000, 100), 1_700_000_002_500);
        assert_eq!(start_epoch_ms(0, 10, 0), 10_000);
    }

    #[test]
    fn identity_without_ticks_rejects_a_process_started_after_the_entry() {
        let own = rustix::process::getpid().as_raw_nonzero().get();
        let ticks = read_start_ticks(own).expect("own stat readable");
        let entry =
            |started_at_ms| ProcessRef { pid: i64::from(own), start_ticks: None, started_at_ms: Some(started_at_ms) };
        assert!(check_identity(&entry(now_ms()), ticks).is_ok());
        assert!(check_identity(&entry(now_ms() - 3_600_000), ticks).is_err());
        let exact = ProcessRef { pid: i64::from(own), start_ticks: Some(ticks), started_at_ms: None };
        assert!(check_identity(&exact, ticks).is_ok());
        assert!(check_identity(&exact, ticks + 1).is_err());
    }

    #[test]
    fn spawn_exports_env_and_appends_output_to_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let processes = RealProcesses::new(dir.path().join(".wg"));
        let mut cleanup = Cleanup::new();
        let command = r#"echo "$WG_TASK_ID $WG_AGENT_ID $WG_DIR"; echo oops >&2; read line || echo "stdin closed""#;
        let spawned = spawn_released(&processes, &request("agent-7", command)).expect("spawns");
        cleanup.child(spawned);
        assert_eq!(block_on(processes.wait_exit(&process_ref(spawned), in_ms(5_000))), ExitWait::Exited);
        let log = fs::read_to_string(dir.path().join(".wg/agents/agent-7/output.log")).expect("log written");
        let wg_dir = dir.path().join(".wg");
        assert_eq!(log, format!("task-1 agent-7 {}\noops\nstdin closed\n", wg_dir.display()));
        assert!(spawn_released(&processes, &request("../escape", "true")).is_err());
    }

    #[test]
    fn spawn_unblocks_the_signals_the_service_blocks() {
        use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow, Signal as NixSignal};
        let dir = tempfile::tempdir().expect("tempdir");
        let processes = RealProcesses::new(dir.path().join(".wg"));
        let mut cleanup = Cleanup::new();
        // The service blocks SIGTERM for its signalfd; a mask is inherited across exec.
        let mut blocked = SigSet::empty();
        blocked.add(NixSignal::SIGTERM);
        let mut previous = SigSet::empty();
        pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&blocked), Some(&mut previous)).expect("blocks");
        let spawned = spawn_released(&processes, &request("agent-1", "exec sleep 30"));
        pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&previous), None).expect("restores");
        let spawned = spawned.expect("spawns");
        let leader = cleanup.child(spawned);
        // Look at `sleep`, not at sh, which blocks everything for a moment around its own forks.
        let comm = || fs::read_to_string(format!("/proc/{}/comm", leader.pid)).unwrap_or_default();
        assert!(wait_for(5_000, || comm() == "sleep\n"), "comm: {:?}", comm());
        let status = fs::read_to_string(format!("/proc/{}/status", leader.pid)).expect("status readable");
        let sig_blk = status.lines().find_map(|line| line.strip_prefix("SigBlk:")).expect("SigBlk line");
        let mask = u64::from_str_radix(sig_blk.trim(), 16).expect("hex mask");
        assert_eq!(mask & (1 << (libc_sigterm() - 1)), 0, "SIGTERM blocked in the agent: {mask:x}");
        let process = process_ref(spawned);
        assert_eq!(block_on(processes.signal(&process, Signal::Term)), SignalOutcome::Delivered);
        assert_eq!(block_on(processes.wait_exit(&process, in_ms(2_000))), ExitWait::Exited);
    }

    fn libc_sigterm() -> u32 {
        RawSignal::Term as u32
    }

    #[test]
    fn spawned_agent_is_alive_then_gone_with_its_exit_code() {
        let dir = tempfile::tempdir().expect("tempdir");
        let processes = RealProcesses::new(dir.path().join(".wg"));
        let mut cleanup = Cleanup::new();
        let spawned = spawn_released(&processes, &request("agent-1", "sleep 0.3; exit 3")).expect("spawns");
        let leader = cleanup.child(spawned);
        assert_eq!(read_stat(leader.pid).map(|stat| stat.pgid), Some(leader.pid), "own process group");
        let process = process_ref(spawned);
        assert_eq!(block_on(processes.liveness(&process)), Liveness::Alive);
        assert_eq!(block_on(processes.wait_exit(&process, in_ms(5_000))), ExitWait::Exited);
        assert_eq!(block_on(processes.liveness(&process)), Liveness::Gone(ExitKind::Code(3)));
        assert_eq!(read_stat(leader.pid), None, "reaped, not left a zombie");
    }

    #[test]
    fn term_stops_a_cooperative_agent_quickly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let processes = RealProcesses::new(dir.path().join(".wg"));
        let mut cleanup = Cleanup::new();
        let spawned = spawn_released(&processes, &request("agent-1", "sleep 30")).expect("spawns");
        cleanup.child(spawned);
        let process = process_ref(spawned);
        let start = Instant::now();
        assert_eq!(block_on(processes.signal(&process, Signal::Term)), SignalOutcome::Delivered);
        assert_eq!(block_on(processes.wait_exit(&process, in_ms(10_000))), ExitWait::Exited);
        assert!(start.elapsed() < Duration::from_secs(2), "took {:?}", start.elapsed());
        assert!(matches!(block_on(processes.liveness(&process)), Liveness::Gone(_)));
        assert!(processes.tree_snapshot(cleanup.children[0].pid).into_iter().all(is_gone));
    }

    #[test]
    fn an_agent_ignoring_term_times_out_then_dies_of_kill() {
        let dir = tempfile::tempdir().expect("tempdir");
        let processes = RealProcesses::new(dir.path().join(".wg"));
        let mut cleanup = Cleanup::new();
        let spawned = spawn_released(&processes, &request("agent-1", "trap '' TERM; sleep 30")).expect("spawns");
        let leader = cleanup.child(spawned);
        // The sleep exists only after the trap was set.
        assert!(wait_for(5_000, || live_tree(leader.pid).len() == 2));
        let process = process_ref(spawned);
        assert_eq!(block_on(processes.signal(&process, Signal::Term)), SignalOutcome::Delivered);
        let start = Instant::now();
        assert_eq!(block_on(processes.wait_exit(&process, in_ms(200))), ExitWait::TimedOut);
        assert!(start.elapsed() >= Duration::from_millis(150), "waited only {:?}", start.elapsed());
        assert_eq!(block_on(processes.liveness(&process)), Liveness::Alive);
        assert_eq!(block_on(processes.signal(&process, Signal::Kill)), SignalOutcome::Delivered);
        assert_eq!(block_on(processes.wait_exit(&process, in_ms(5_000))), ExitWait::Exited);
        let snapshot = processes.tree_snapshot(leader.pid);
        assert_eq!(snapshot.len(), 2, "sh and sleep: {snapshot:?}");
        assert!(snapshot.into_iter().all(is_gone));
        assert_eq!(block_on(processes.liveness(&process)), Liveness::Gone(ExitKind::Died));
    }

    #[test]
    fn signal_reaches_group_grandchildren_and_setsid_descendants() {
        let dir = tempfile::tempdir().expect("tempdir");
        let processes = RealProcesses::new(dir.path().join(".wg"));
        let mut cleanup = Cleanup::new();
        let command = "sleep 30 & (sleep 30 &); setsid sleep 30 & sh -c 'sleep 30' & wait";
        let spawned = spawn_released(&processes, &request("agent-1", command)).expect("spawns");
        let leader = cleanup.child(spawned);
        // sh, three sleeps, the inner sh and its sleep (the subshell that forked one has exited).
        assert!(wait_for(5_000, || live_tree(leader.pid).len() == 6), "tree: {:?}", live_tree(leader.pid));
        let before = live_tree(leader.pid);
        cleanup.others.extend(before.iter().map(|(&pid, &start_ticks)| Member { pid, start_ticks }));
        let pgid_of = |pid: &i32| read_stat(*pid).map(|stat| stat.pgid);
        assert!(before.keys().any(|pid| pgid_of(pid) != Some(leader.pid)), "one left the group via setsid");
        assert!(before.keys().any(|pid| read_stat(*pid).is_some_and(|stat| stat.ppid != leader.pid)));
        let process = process_ref(spawned);
        assert_eq!(block_on(processes.signal(&process, Signal::Term)), SignalOutcome::Delivered);
        assert_eq!(block_on(processes.wait_exit(&process, in_ms(10_000))), ExitWait::Exited);
        let snapshot: BTreeSet<Member> = processes.tree_snapshot(leader.pid).into_iter().collect();
        let expected: BTreeSet<Member> =
            before.iter().map(|(&pid, &start_ticks)| Member { pid, start_ticks }).collect();
        assert_eq!(snapshot, expected);
        assert!(snapshot.into_iter().all(is_gone));
    }

    #[test]
    fn wrong_start_ticks_are_not_ours_and_nothing_is_sent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let processes = RealProcesses::new(dir.path().join(".wg"));
        let mut cleanup = Cleanup::new();
        let spawned = spawn_released(&processes, &request("agent-1", "sleep 30")).expect("spawns");
        let leader = cleanup.child(spawned);
        let stranger = ProcessRef { start_ticks: Some(leader.start_ticks + 1), ..process_ref(spawned) };
        assert!(matches!(block_on(processes.signal(&stranger, Signal::Kill)), SignalOutcome::NotOurs(_)));
        assert_eq!(block_on(processes.liveness(&stranger)), Liveness::Replaced);
        std::thread::sleep(Duration::from_millis(100));
        assert!(!is_gone(leader), "the process must still run");
        assert_eq!(block_on(processes.liveness(&process_ref(spawned))), Liveness::Alive);
        // Cleanup kills it directly.
    }

    #[test]
    fn a_zombie_counts_as_gone() {
        let processes = RealProcesses::new(PathBuf::from("/nonexistent/.wg"));
        // Started by the test itself, so RealProcesses is not its parent and cannot reap it.
        let mut child = Command::new("true").spawn().expect("spawns");
        let pid = i32::try_from(child.id()).expect("pid fits");
        assert!(wait_for(5_000, || read_stat(pid).is_some_and(|stat| stat.has_ended())));
        let process = ProcessRef { pid: i64::from(pid), start_ticks: read_start_ticks(pid), started_at_ms: None };
        assert_eq!(block_on(processes.liveness(&process)), Liveness::Gone(ExitKind::Died));
        assert_eq!(block_on(processes.signal(&process, Signal::Term)), SignalOutcome::Gone);
        assert_eq!(block_on(processes.wait_exit(&process, in_ms(1_000))), ExitWait::Exited);
        assert!(child.wait().expect("reaped").success());
    }

    #[test]
    fn our_own_zombie_child_is_gone_with_its_code() {
        let dir = tempfile::tempdir().expect("tempdir");
        let processes = RealProcesses::new(dir.path().join(".wg"));
        let mut cleanup = Cleanup::new();
        let spawned = spawn_released(&processes, &request("agent-1", "exit 4")).expect("spawns");
        let leader = cleanup.child(spawned);
        assert!(wait_for(5_000, || read_stat(leader.pid).is_some_and(|stat| stat.has_ended())));
        assert_eq!(block_on(processes.signal(&process_ref(spawned), Signal::Term)), SignalOutcome::Gone);
        assert_eq!(block_on(processes.liveness(&process_ref(spawned))), Liveness::Gone(ExitKind::Code(4)));
        assert_eq!(read_stat(leader.pid), None, "liveness reaped it");
    }

    #[test]
    fn signalling_a_pid_that_does_not_exist_is_gone() {
        let processes = RealProcesses::new(PathBuf::from("/nonexistent/.wg"));
        // Above PID_MAX_LIMIT (2^22): no process can have it.
        let missing = ProcessRef { pid: 4_194_305, start_ticks: Some(1), started_at_ms: None };
        assert_eq!(block_on(processes.signal(&missing, Signal::Kill)), SignalOutcome::Gone);
        assert_eq!(block_on(processes.liveness(&missing)), Liveness::Gone(ExitKind::Died));
        assert_eq!(block_on(processes.wait_exit(&missing, in_ms(1_000))), ExitWait::Exited);
    }

    #[test]
    fn reap_children_reports_exits_and_child_pidfds_wake_the_service() {
        let dir = tempfile::tempdir().expect("tempdir");
        let processes = RealProcesses::new(dir.path().join(".wg"));
        let mut cleanup = Cleanup::new();
        let spawned = spawn_released(&processes, &request("agent-1", "sleep 0.2; exit 5")).expect("spawns");
        let leader = cleanup.child(spawned);
        assert_eq!(processes.reap_children(), Vec::new());
        let pidfds = processes.child_pidfds();
        assert_eq!(pidfds.iter().map(|(pid, _)| *pid).collect::<Vec<_>>(), vec![leader.pid]);
        let mut poll_fds = [PollFd::new(&pidfds[0].1, PollFlags::IN)];
        assert_eq!(poll(&mut poll_fds, 5_000).expect("polls"), 1, "the exit wakes the poll");
        assert_eq!(processes.reap_children(), vec![(leader.pid, ExitKind::Code(5))]);
        assert!(processes.child_pidfds().is_empty());
        assert_eq!(block_on(processes.liveness(&process_ref(spawned))), Liveness::Gone(ExitKind::Code(5)));
    }

    #[test]
    fn terminate_one_stops_a_single_verified_process() {
        let mut child = Command::new("sleep").arg("30").spawn().expect("spawns");
        let pid = i32::try_from(child.id()).expect("pid fits");
        let mut cleanup = Cleanup::new();
        cleanup.children.push(Member { pid, start_ticks: read_start_ticks(pid).expect("readable") });
        let ticks = cleanup.children[0].start_ticks;
        assert!(terminate_one(pid, ticks + 1, Duration::from_secs(1)).is_err(), "a stranger is refused");
        assert!(!is_gone(cleanup.children[0]));
        assert_eq!(terminate_one(pid, ticks, Duration::from_secs(5)), Ok(()));
        assert!(!child.wait().expect("reaped").success());
    }
}
