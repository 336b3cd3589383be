//! The simulated `Processes` port: a process table on a small range of pids (so pids are
//! reused), agent process trees, spawn gates, and signal delivery under the identity rule of
//! `wg_core::identity`.

use super::clock::Timer;
use super::record::{Record, SignalRecord};
use super::{mix, ActorId, ActorSpec, Inner, Wait, World};
use crate::planted::planted;
use crate::scenario::Behaviour;
use std::collections::BTreeMap;
use wg_core::identity::{check_identity, check_pid, Observed};
use wg_core::model::ProcessRef;
use wg_core::ports::{
    ExitKind, ExitWait, Liveness, NotOurs, Processes, Signal, SignalOutcome, SpawnError, SpawnRequest, Spawned,
};
use wg_core::time::EpochMs;

/// The pids agents and foreign programs share: small, so that pids are reused.
pub const PID_FIRST: i64 = 100;
pub const PID_SLOTS: i64 = 12;

/// Identity of an agent process tree: leader pid and its start ticks.
pub type Root = (i64, u64);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProcKind {
    Agent { agent_id: String, task_id: String },
    Child,
    Foreign,
}

#[derive(Clone, Debug)]
pub struct Proc {
    pub pid: i64,
    pub start_ticks: u64,
    pub start_ms: EpochMs,
    pub kind: ProcKind,
    /// The agent tree it belongs to (`None` for foreign programs).
    pub root: Option<Root>,
    pub ignore_term: bool,
    pub stalled_until_ms: EpochMs,
    pub actors: Vec<ActorId>,
    /// An agent held at its spawn gate: alive (pid, identity, signals) but running nothing yet.
    pub gate: Option<Gate>,
}

/// The spawn gate of an agent process (`Processes::spawn` / `Processes::release`).
#[derive(Clone, Debug)]
pub struct Gate {
    /// The actor that spawned it: if it dies before the release, the gate closes by itself.
    pub spawner: ActorId,
    /// What the process does once released.
    pub behaviours: Vec<Behaviour>,
    /// Closed (release(go = false), or the spawner died): the process is about to end unrun.
    pub closed: bool,
}

impl Proc {
    /// A process just started: not stalled, taking SIGTERM, no actor inside it, no gate yet.
    pub fn started(pid: i64, start_ticks: u64, start_ms: EpochMs, kind: ProcKind, root: Option<Root>) -> Proc {
        Proc {
            pid,
            start_ticks,
            start_ms,
            kind,
            root,
            ignore_term: false,
            stalled_until_ms: 0,
            actors: Vec::new(),
            gate: None,
        }
    }

    /// An agent process that runs its command: released from its gate (or never gated).
    pub fn runs_agent(&self) -> bool {
        matches!(self.kind, ProcKind::Agent { .. }) && self.gate.is_none()
    }
}

/// The process table and what is remembered of processes that ended.
#[derive(Debug)]
pub struct ProcessTable {
    /// Live processes by pid. Started and ended only through [`ProcessTable::insert`] and
    /// [`ProcessTable::remove`], which keep `live_per_root` in step.
    pub procs: BTreeMap<i64, Proc>,
    /// How many live processes each agent tree has: every actor waiting on an exit asks whether
    /// its tree is alive at every step, and a scan of the table per ask was a visible part of a
    /// run's cost.
    live_per_root: BTreeMap<Root, u32>,
    /// The last exit seen at each pid: (start ticks, how).
    pub exited: BTreeMap<i64, (u64, ExitKind)>,
    /// When each agent's process ended (L1 gives the reaper a sweep from then).
    pub agent_exits_ms: BTreeMap<String, EpochMs>,
    /// Pids freed by an exit, most recent last (candidates for reuse).
    pub freed_pids: Vec<i64>,
    pub next_pid: i64,
    pub last_ticks: u64,
    /// Agents spawned per task so far (a respawn may behave differently, `respawn_exec`).
    pub spawns_per_task: BTreeMap<String, u32>,
}

impl ProcessTable {
    pub fn new() -> ProcessTable {
        ProcessTable {
            procs: BTreeMap::new(),
            live_per_root: BTreeMap::new(),
            exited: BTreeMap::new(),
            agent_exits_ms: BTreeMap::new(),
            freed_pids: Vec::new(),
            next_pid: PID_FIRST,
            last_ticks: 0,
            spawns_per_task: BTreeMap::new(),
        }
    }

    /// Allocates a pid the way a kernel does: the next one in a small range, skipping live ones.
    fn allocate_pid(&mut self) -> Option<i64> {
        for _ in 0..PID_SLOTS {
            let pid = self.next_pid;
            self.next_pid = PID_FIRST + (self.next_pid - PID_FIRST + 1) % PID_SLOTS;
            if !self.procs.contains_key(&pid) {
                return Some(pid);
            }
        }
        None
    }

    fn next_ticks(&mut self, now_ms: EpochMs) -> u64 {
        // Kernel start ticks are 10 ms; two processes on one pid never share them here.
        self.last_ticks = (now_ms as u64 / 10).max(self.last_ticks + 1);
        self.last_ticks
    }

    /// Which live process `process` means, if it is still that process: the identity rule of
    /// `wg_core::identity`, with the simulated clock's exact start times (no slack).
    fn identity_of(&self, process: &ProcessRef) -> Option<Root> {
        let proc = self.procs.get(&process.pid)?;
        let observed = Observed { start_ticks: proc.start_ticks, start_ms: Some(proc.start_ms) };
        check_identity(process, observed, 0).is_ok().then_some((proc.pid, proc.start_ticks))
    }

    /// The root a wait or a tree signal means: the live leader, or the recorded identity.
    fn root_of(&self, process: &ProcessRef) -> Option<Root> {
        self.identity_of(process).or_else(|| process.start_ticks.map(|ticks| (process.pid, ticks)))
    }

    /// Whether any process of the agent tree `root` is alive.
    pub fn tree_alive(&self, root: Root) -> bool {
        self.live_per_root.contains_key(&root)
    }

    /// A process starts at its pid (free: the caller checked).
    fn insert(&mut self, proc: Proc) {
        if let Some(root) = proc.root {
            *self.live_per_root.entry(root).or_insert(0) += 1;
        }
        self.freed_pids.retain(|freed| *freed != proc.pid);
        let taken = self.procs.insert(proc.pid, proc);
        assert!(taken.is_none(), "a pid holds one live process");
    }

    /// The process at `pid` ends, if there is one.
    fn remove(&mut self, pid: i64) -> Option<Proc> {
        let proc = self.procs.remove(&pid)?;
        if let Some(root) = proc.root {
            let live = self.live_per_root.get_mut(&root).expect("a live process is counted in its tree");
            *live -= 1;
            if *live == 0 {
                self.live_per_root.remove(&root);
            }
        }
        self.freed_pids.push(pid);
        Some(proc)
    }

    /// What the port answers about `process` (`Processes::liveness`).
    pub fn liveness(&self, process: &ProcessRef) -> Liveness {
        if let Err(why) = check_pid(process.pid, None) {
            return Liveness::Refused(why);
        }
        if self.identity_of(process).is_some() {
            return Liveness::Alive;
        }
        if self.procs.contains_key(&process.pid) {
            return Liveness::Replaced;
        }
        let exit = self.exited.get(&process.pid).filter(|(ticks, _)| process.start_ticks.is_none_or(|t| t == *ticks));
        Liveness::Gone(exit.map_or(ExitKind::Died, |(_, kind)| *kind))
    }
}

impl Default for ProcessTable {
    fn default() -> ProcessTable {
        ProcessTable::new()
    }
}

impl World {
    /// Starts a process at `pid` (or a fresh pid). Returns its identity.
    pub fn start_process(
        &self,
        inner: &mut Inner,
        pid: Option<i64>,
        kind: ProcKind,
        root: Option<Root>,
    ) -> Option<Proc> {
        let table = &mut inner.processes;
        let pid = match pid {
            Some(pid) => pid,
            None => table.allocate_pid()?,
        };
        assert!(!table.procs.contains_key(&pid), "pid {pid} is taken");
        let start_ticks = table.next_ticks(inner.clock.now_ms);
        let root = match kind {
            ProcKind::Agent { .. } => Some((pid, start_ticks)),
            ProcKind::Child => root,
            ProcKind::Foreign => None,
        };
        let proc = Proc::started(pid, start_ticks, inner.clock.now_ms, kind, root);
        table.insert(proc.clone());
        inner.version += 1;
        Some(proc)
    }

    /// Starts an agent process: running `behaviours` at once, or, with `spawner`, held at its
    /// gate until [`World::open_gate`] (the dispatcher's spawn).
    pub fn start_agent(
        &self,
        inner: &mut Inner,
        agent_id: &str,
        task_id: &str,
        behaviours: &[Behaviour],
        spawner: Option<ActorId>,
    ) -> Option<Proc> {
        let kind = ProcKind::Agent { agent_id: agent_id.to_string(), task_id: task_id.to_string() };
        let proc = self.start_process(inner, None, kind, None)?;
        match spawner {
            Some(spawner) => {
                let gate = Gate { spawner, behaviours: behaviours.to_vec(), closed: false };
                inner.processes.procs.get_mut(&proc.pid).expect("just started").gate = Some(gate);
            }
            None => self.run_behaviours(inner, &proc, behaviours),
        }
        self.emit(inner, "spawn", agent_id);
        Some(proc)
    }

    /// What an agent process starts doing when it runs: children, scripts, a TERM trap.
    fn run_behaviours(&self, inner: &mut Inner, proc: &Proc, behaviours: &[Behaviour]) {
        let ProcKind::Agent { agent_id, task_id } = &proc.kind else { return };
        let root = proc.root;
        for behaviour in behaviours {
            match behaviour {
                Behaviour::Hang => {}
                Behaviour::HangIgnoringTerm => {
                    inner.processes.procs.get_mut(&proc.pid).expect("running").ignore_term = true
                }
                Behaviour::SpawnChildren { count } => {
                    for _ in 0..*count {
                        let child = self.start_process(inner, None, ProcKind::Child, root);
                        if let Some(child) = child {
                            let ignore = behaviours.contains(&Behaviour::HangIgnoringTerm);
                            inner.processes.procs.get_mut(&child.pid).expect("just started").ignore_term = ignore;
                        }
                    }
                }
                scripted => inner.new_actors.push(ActorSpec::Script {
                    pid: proc.pid,
                    start_ticks: proc.start_ticks,
                    agent_id: agent_id.clone(),
                    task_id: task_id.clone(),
                    behaviour: scripted.clone(),
                }),
            }
        }
    }

    /// `release(go = true)`: a gated process still waiting at its gate starts its behaviours.
    pub fn open_gate(&self, inner: &mut Inner, pid: i64, start_ticks: u64) {
        let table = &mut inner.processes;
        let Some(proc) = table.procs.get_mut(&pid).filter(|proc| proc.start_ticks == start_ticks) else { return };
        if proc.gate.as_ref().is_none_or(|gate| gate.closed) {
            return;
        }
        let gate = proc.gate.take().expect("checked");
        let proc = proc.clone();
        inner.version += 1;
        if inner.recording {
            inner.notes.push(format!("pid {pid} released"));
        }
        self.run_behaviours(inner, &proc, &gate.behaviours);
    }

    /// `release(go = false)`, or the spawner died: the process ends (killed by signal) without
    /// having run anything, a moment later (the seed's choice, as for SIGTERM).
    pub fn close_gate(&self, inner: &mut Inner, pid: i64, start_ticks: u64) {
        let table = &mut inner.processes;
        let Some(proc) = table.procs.get_mut(&pid).filter(|proc| proc.start_ticks == start_ticks) else { return };
        let Some(gate) = proc.gate.as_mut().filter(|gate| !gate.closed) else { return };
        gate.closed = true;
        if inner.recording {
            inner.notes.push(format!("pid {pid}'s gate closed"));
        }
        let delay_ms = [0, 0, 10, 100][(mix(self.seed, &[pid as u64, start_ticks, 7]) % 4) as usize];
        if delay_ms == 0 {
            self.exit_process(inner, pid, ExitKind::Died);
        } else {
            let at_ms = inner.clock.now_ms + delay_ms;
            inner.clock.add_timer(at_ms, Timer::ProcessExit { pid, start_ticks, code: None });
        }
    }

    /// Closes the gates of the processes `actor` spawned and did not release (its pipe's EOF).
    pub fn close_gates_of(&self, inner: &mut Inner, actor: ActorId) {
        let orphans: Vec<Root> = inner
            .processes
            .procs
            .values()
            .filter(|proc| proc.gate.as_ref().is_some_and(|gate| gate.spawner == actor && !gate.closed))
            .map(|proc| (proc.pid, proc.start_ticks))
            .collect();
        for (pid, start_ticks) in orphans {
            self.close_gate(inner, pid, start_ticks);
        }
    }

    /// A process ends: its script actors stop, its pid is free for reuse.
    pub fn exit_process(&self, inner: &mut Inner, pid: i64, kind: ExitKind) {
        let table = &mut inner.processes;
        let Some(proc) = table.remove(pid) else { return };
        inner.version += 1;
        table.exited.insert(pid, (proc.start_ticks, kind));
        for actor in &proc.actors {
            if !inner.actors[*actor].finished {
                inner.actors[*actor].killed = true;
            }
        }
        if let ProcKind::Agent { agent_id, .. } = &proc.kind {
            inner.processes.agent_exits_ms.insert(agent_id.clone(), inner.clock.now_ms);
            self.emit(inner, "exit", agent_id);
        }
        if inner.recording {
            inner.notes.push(format!("pid {pid} exited ({kind:?})"));
        }
    }

    /// A scripted agent's process exits with `code` (its script ran to the end).
    pub fn exit_self(&self, pid: i64, code: i32) {
        let mut inner = self.inner.borrow_mut();
        self.exit_process(&mut inner, pid, ExitKind::Code(code));
    }

    /// A scripted agent's process dies (killed by a signal it sent itself, or crashed).
    pub fn die_self(&self, pid: i64) {
        let mut inner = self.inner.borrow_mut();
        self.exit_process(&mut inner, pid, ExitKind::Died);
    }

    /// Delivers `signal` to the process at `pid` and the tree it belongs to; records each
    /// delivery against the process it was meant for (checked as S2).
    fn deliver(&self, inner: &mut Inner, intended: &ProcessRef, targets: Vec<i64>, signal: Signal) {
        for pid in targets {
            let Some(proc) = inner.processes.procs.get(&pid).cloned() else { continue };
            inner.records.push(Record::Signal(SignalRecord {
                signal,
                intended: intended.clone(),
                pid,
                kind: proc.kind.clone(),
                start_ticks: proc.start_ticks,
                root: proc.root,
            }));
            if let ProcKind::Agent { agent_id, .. } = &proc.kind {
                self.emit(inner, "signal", agent_id);
            }
            if inner.recording {
                inner.notes.push(format!("{signal:?} -> pid {pid}"));
            }
            match signal {
                Signal::Kill => self.exit_process(inner, pid, ExitKind::Died),
                Signal::Term if proc.ignore_term => {}
                Signal::Term => {
                    // A cooperative process takes a moment to exit; which moment is the seed's.
                    let delay_ms = [0, 0, 30, 250][(mix(self.seed, &[pid as u64, proc.start_ticks]) % 4) as usize];
                    let timer = Timer::ProcessExit { pid, start_ticks: proc.start_ticks, code: None };
                    if delay_ms == 0 {
                        self.exit_process(inner, pid, ExitKind::Died);
                    } else {
                        let at_ms = inner.clock.now_ms + delay_ms;
                        inner.clock.add_timer(at_ms, timer);
                    }
                }
            }
        }
    }

    fn signal_now(&self, process: &ProcessRef, signal: Signal) -> SignalOutcome {
        let mut inner = self.inner.borrow_mut();
        if let Err(why) = check_pid(process.pid, None) {
            return SignalOutcome::NotOurs(why.into());
        }
        let table = &inner.processes;
        let leader = table.identity_of(process);
        let root = leader.or_else(|| process.start_ticks.map(|ticks| (process.pid, ticks)));
        // `mut` for the planted bug only, which adds the stranger to the targets.
        #[allow(unused_mut)]
        let mut targets: Vec<i64> =
            table.procs.values().filter(|proc| root.is_some() && proc.root == root).map(|proc| proc.pid).collect();
        if table.procs.contains_key(&process.pid) && leader.is_none() {
            // The pid now belongs to a process started later (or to no agent of ours).
            planted!(self.settings, SignalWithoutIdentity => targets.push(process.pid));
            if targets.is_empty() {
                return SignalOutcome::NotOurs(NotOurs::Replaced(process.pid));
            }
        }
        if targets.is_empty() {
            return SignalOutcome::Gone;
        }
        self.deliver(&mut inner, process, targets, signal);
        SignalOutcome::Delivered
    }

    pub fn liveness_now(&self, process: &ProcessRef) -> Liveness {
        self.inner.borrow().processes.liveness(process)
    }

    fn spawn_now(&self, request: &SpawnRequest) -> Result<Spawned, SpawnError> {
        let mut inner = self.inner.borrow_mut();
        let spawns = &mut inner.processes.spawns_per_task;
        let spawned_before = *spawns.entry(request.task_id.clone()).and_modify(|n| *n += 1).or_insert(1) - 1;
        let spec = self.scenario.tasks.iter().find(|task| task.id == request.task_id);
        let behaviours = match spec {
            Some(spec) if spawned_before > 0 => spec.respawn_exec.clone().unwrap_or_else(|| spec.exec.clone()),
            Some(spec) => spec.exec.clone(),
            None => vec![Behaviour::Hang],
        };
        let spawner = Some(inner.current);
        let proc = self
            .start_agent(&mut inner, &request.agent_id, &request.task_id, &behaviours, spawner)
            .ok_or(SpawnError::NoFreePid)?;
        if inner.recording {
            inner.notes.push(format!("spawned {} as pid {}", request.agent_id, proc.pid));
        }
        Ok(Spawned { pid: proc.pid, start_ticks: Some(proc.start_ticks) })
    }
}

impl Processes for World {
    async fn spawn(&self, request: &SpawnRequest) -> Result<Spawned, SpawnError> {
        self.suspend(Wait::Ready, "spawn").await;
        self.spawn_now(request)
    }

    async fn release(&self, spawned: &Spawned, go: bool) {
        self.suspend(Wait::Ready, if go { "release go" } else { "release close" }).await;
        let Some(start_ticks) = spawned.start_ticks else { return };
        let mut inner = self.inner.borrow_mut();
        if go {
            self.open_gate(&mut inner, spawned.pid, start_ticks);
        } else {
            self.close_gate(&mut inner, spawned.pid, start_ticks);
        }
    }

    async fn liveness(&self, process: &ProcessRef) -> Liveness {
        self.suspend(Wait::Ready, "liveness").await;
        self.liveness_now(process)
    }

    async fn signal(&self, process: &ProcessRef, signal: Signal) -> SignalOutcome {
        self.suspend(Wait::Ready, if signal == Signal::Term { "signal TERM" } else { "signal KILL" }).await;
        self.signal_now(process, signal)
    }

    async fn wait_exit(&self, process: &ProcessRef, deadline_ms: EpochMs) -> ExitWait {
        let root = self.inner.borrow().processes.root_of(process);
        let Some(root) = root else {
            self.suspend(Wait::Ready, "wait_exit").await;
            return ExitWait::Exited;
        };
        self.suspend(Wait::Exit { root, deadline_ms }, "wait_exit").await;
        if self.inner.borrow().processes.tree_alive(root) {
            ExitWait::TimedOut
        } else {
            ExitWait::Exited
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Proc, ProcKind, ProcessTable, Root};

    fn proc(pid: i64, kind: ProcKind, root: Option<Root>) -> Proc {
        Proc::started(pid, pid as u64, 0, kind, root)
    }

    #[test]
    fn a_tree_is_alive_until_its_last_process_ends() {
        let mut table = ProcessTable::new();
        let (tree, other) = ((100, 100), (103, 103));
        let agent = ProcKind::Agent { agent_id: "agent-1".into(), task_id: "t1".into() };
        table.insert(proc(100, agent, Some(tree)));
        table.insert(proc(101, ProcKind::Child, Some(tree)));
        table.insert(proc(102, ProcKind::Foreign, None));
        assert!(table.tree_alive(tree));
        assert!(!table.tree_alive(other), "no process of that tree ever started");
        table.remove(100);
        assert!(table.tree_alive(tree), "its child still runs");
        assert!(table.remove(100).is_none(), "an ended process ends once");
        table.remove(102);
        assert!(table.tree_alive(tree));
        table.remove(101);
        assert!(!table.tree_alive(tree));
        assert_eq!(table.freed_pids, [100, 102, 101]);
    }
}
