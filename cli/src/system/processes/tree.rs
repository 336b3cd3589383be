//! An agent's process tree: signalling it whole (leader, group, descendants, and what forks
//! meanwhile), remembering what was signalled, and waiting for all of it to exit. A tree is
//! remembered per leader pid, so `wait_exit` and a later SIGKILL reach the same processes even
//! after the leader died and its descendants were reparented.

use super::guard::{check_identity, guard_pid, same_start};
use super::pidfd::{ended_members, hold, now_ms, raw_signal, send, Held, Hold};
use super::procfs::{scan_processes, Member, ProcStat};
use rustix::process::Pid;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use wg_core::model::ProcessRef;
use wg_core::ports::{ExitWait, NotOurs, Signal, SignalOutcome};
use wg_core::time::EpochMs;

/// How often `signal` looks for processes forked between its scan of `/proc` and its signal.
const MAX_SIGNAL_ROUNDS: usize = 8;

/// The tree we last signalled for an agent pid.
#[derive(Clone, Debug)]
struct Tree {
    leader: Member,
    members: Vec<Member>,
}

/// The trees signalled so far, by leader pid.
#[derive(Default)]
pub(super) struct Trees {
    by_leader: RefCell<BTreeMap<i32, Tree>>,
}

impl Trees {
    /// The tree remembered from the last signal to `pid`: `(pid, start ticks)` of each member.
    pub(super) fn snapshot(&self, pid: i32) -> Vec<Member> {
        self.by_leader.borrow().get(&pid).map(|tree| tree.members.clone()).unwrap_or_default()
    }

    /// The remembered tree of `pid`, if its leader is the process `process` means.
    fn remembered(&self, pid: i32, process: &ProcessRef) -> Option<Tree> {
        let tree = self.by_leader.borrow().get(&pid).cloned()?;
        check_identity(process, tree.leader.start_ticks).ok()?;
        Some(tree)
    }

    pub(super) fn signal(&self, process: &ProcessRef, signal: Signal) -> SignalOutcome {
        let pid = match guard_pid(process.pid) {
            Ok(pid) => pid,
            Err(why) => return SignalOutcome::NotOurs(why.into()),
        };
        let remembered = self.remembered(pid, process);
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
                self.by_leader.borrow_mut().insert(pid, Tree { leader: leader_member, members: signalled });
                if delivered {
                    SignalOutcome::Delivered
                } else {
                    SignalOutcome::Gone
                }
            }
        }
    }

    /// `reap` reaps a member if it is our child (only the parent can), as each one ends.
    pub(super) fn wait(&self, process: &ProcessRef, deadline_ms: EpochMs, reap: &dyn Fn(Member)) -> ExitWait {
        // A pid we may not touch has nothing of ours to wait for (signal refused it too).
        let Ok(pid) = guard_pid(process.pid) else { return ExitWait::Exited };
        let tree = match self.remembered(pid, process) {
            Some(tree) => tree,
            None => match hold(pid, |stat| check_identity(process, stat.start_ticks)) {
                Hold::Held(held) => {
                    let leader = Member { pid, start_ticks: held.start_ticks };
                    Tree { leader, members: vec![leader] }
                }
                Hold::Ended(_) | Hold::Gone | Hold::Other(_) => {
                    // Reap our own child even when nobody signalled it.
                    if let Some(start_ticks) = process.start_ticks {
                        reap(Member { pid, start_ticks });
                    }
                    return ExitWait::Exited;
                }
            },
        };
        let mut waiting: Vec<Held> = Vec::new();
        for member in &tree.members {
            match hold(member.pid, |stat| same_start(stat, member.start_ticks)) {
                Hold::Held(held) => waiting.push(held),
                Hold::Ended(_) | Hold::Gone | Hold::Other(_) => reap(*member),
            }
        }
        let leader_alive = waiting.iter().any(|held| held.pid == pid);
        if !leader_alive {
            self.add_late_members(&tree.leader, &mut waiting);
        }
        self.wait_until(tree.leader, waiting, !leader_alive, deadline_ms, reap)
    }

    /// Polls the pidfds of `waiting` until all have ended or `deadline_ms` passes.
    fn wait_until(
        &self,
        leader: Member,
        mut waiting: Vec<Held>,
        mut rescanned: bool,
        deadline_ms: EpochMs,
        reap: &dyn Fn(Member),
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
                reap(member);
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
        if let Some(tree) = self.by_leader.borrow_mut().get_mut(&leader.pid) {
            let late: Vec<Member> = waiting.iter().map(Held::member).filter(|m| !tree.members.contains(m)).collect();
            tree.members.extend(late);
        }
    }
}

/// `roots` plus every process below them by parent pid, with start ticks from `table`.
pub(super) fn with_descendants(roots: BTreeSet<i32>, table: &[ProcStat]) -> BTreeMap<i32, u64> {
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
) -> Result<(bool, Vec<Member>), NotOurs> {
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
