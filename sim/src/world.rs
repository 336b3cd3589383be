//! The simulated world behind the core's ports: a virtual clock, a process table that reuses
//! pids, and an in-memory store with the file store's transaction semantics.
//!
//! `World` implements `Clock`, `Processes` and `Store` itself, so a core operation runs with
//! `Ctx { clock: &world, processes: &world, store: &world, .. }`. Every async port call first
//! suspends once with what it waits for ([`Wait`]); the executor polls it again only when that
//! wait is over, and may instead drop the actor there (a crash at a port call).

use crate::checks::{self, CommitCheck};
use crate::scenario::{Behaviour, Scenario};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use wg_core::graph::Graph;
use wg_core::identity::{check_identity, check_pid, Observed};
use wg_core::invariants::check_signal_delivery;
use wg_core::model::ProcessRef;
use wg_core::ports::{
    Clock, ExitKind, ExitWait, Liveness, NotOurs, Processes, Signal, SignalOutcome, SpawnError, SpawnRequest, Spawned,
    State, Store, StoreError,
};
use wg_core::registry::Registry;
use wg_core::settings::Settings;
use wg_core::time::EpochMs;

pub type ActorId = usize;

/// The pids agents and foreign programs share: small, so that pids are reused.
pub const PID_FIRST: i64 = 100;
pub const PID_SLOTS: i64 = 12;
/// Virtual time of the run's start: 2026-01-01T00:00:00Z.
pub const EPOCH_START_MS: EpochMs = 1_767_225_600_000;
/// How long a slow store write holds the lock.
pub const SLOW_WRITE_MS: u64 = 400;

/// What a suspended actor waits for before it may be polled again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Nothing: only a switch point.
    Ready,
    Until(EpochMs),
    /// Every process of the tree rooted at this identity has exited, or the deadline passed.
    Exit {
        root: Root,
        deadline_ms: EpochMs,
    },
    /// The store lock is free.
    Lock,
}

/// Identity of an agent process tree: leader pid and its start ticks.
pub type Root = (i64, u64);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActorKind {
    Service,
    Cli,
    Agent,
}

#[derive(Clone, Debug)]
pub struct ActorSlot {
    pub name: String,
    pub kind: ActorKind,
    pub wait: Wait,
    /// The port call it is suspended at (what runs when it is next polled).
    pub call: &'static str,
    /// Set when its process exited or it crashed: the executor drops the future.
    pub killed: bool,
    pub finished: bool,
    /// Recovery counts its commits raised, per task (S3: one invocation counts once).
    pub raised: BTreeMap<String, u32>,
}

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
    /// An agent process that runs its command: released from its gate (or never gated).
    pub fn runs_agent(&self) -> bool {
        matches!(self.kind, ProcKind::Agent { .. }) && self.gate.is_none()
    }
}

/// What the executor should start next (ports cannot build futures that borrow the world).
#[derive(Clone, Debug)]
pub enum ActorSpec {
    Dispatcher { generation: u32 },
    Reaper { generation: u32 },
    Cli { command: crate::scenario::CommandLine, text: String },
    Script { pid: i64, start_ticks: u64, agent_id: String, task_id: String, behaviour: Behaviour },
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    ProcessExit { pid: i64, start_ticks: u64, code: Option<i32> },
    Step { index: usize },
    ServiceRestart,
}

/// How much of a write in flight a crash lets land. The file store commits graph and registry
/// together (a commit record the next lock holder completes), so a crash leaves the whole
/// transaction or none of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Landing {
    Nothing,
    Whole,
}

impl Landing {
    pub fn pick(rng: &mut impl rand::Rng) -> Landing {
        [Landing::Nothing, Landing::Whole][rng.gen_range(0..2)]
    }

    /// A choice derived from a number (a hash), for crashes that are not the scheduler's.
    pub fn from_hash(hash: u64) -> Landing {
        [Landing::Nothing, Landing::Whole][(hash % 2) as usize]
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoreFault {
    Slow,
    Fail,
}

/// A check that failed during a run: an invariant of `wg_core::invariants` (whose `Violation`
/// it wraps, `checker` = "S1".."L2"), an expectation, or a step that never fired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckFailed {
    pub checker: String,
    pub detail: String,
}

/// Everything that changes during a run.
pub struct Inner {
    pub now_ms: EpochMs,
    pub current: ActorId,
    pub actors: Vec<ActorSlot>,
    pub procs: BTreeMap<i64, Proc>,
    /// The last exit seen at each pid: (start ticks, how).
    pub exited: BTreeMap<i64, (u64, ExitKind)>,
    /// When each agent's process ended (L1 gives the reaper a sweep from then).
    pub agent_exits_ms: BTreeMap<String, EpochMs>,
    /// Pids freed by an exit, most recent last (candidates for reuse).
    pub freed_pids: Vec<i64>,
    pub next_pid: i64,
    pub last_ticks: u64,
    pub timers: BTreeMap<(EpochMs, u64), Timer>,
    pub timer_seq: u64,
    pub committed: State,
    /// A copy of `committed` that a transaction left unchanged, for the next one to start from
    /// (a read-only transaction then costs no clone). `None` after each commit.
    pub scratch: Option<State>,
    /// Bumped by every change the after-step checks (S1, S6) look at: a commit, a process
    /// started, ended or released. The executor skips those checks when it did not move.
    pub version: u64,
    /// Lines of the graph file as last written (S8: lines are never lost).
    pub graph_lines: usize,
    pub commits: u64,
    pub lock: Option<ActorId>,
    pub pending_write: Option<State>,
    pub poll_fault: Option<StoreFault>,
    pub new_actors: Vec<ActorSpec>,
    pub violations: Vec<CheckFailed>,
    /// Notes for the timeline of the current step (only when recording).
    pub notes: Vec<String>,
    pub recording: bool,
    pub spawns_per_task: BTreeMap<String, u32>,
    pub steps_fired: BTreeSet<usize>,
    pub service_generation: u32,
    pub service_up: bool,
    /// Completed retries of in-progress tasks: (old agent) for L2.
    pub retried_agents: Vec<String>,
    /// What a fault in the safety phase may have left for a timer to settle; the liveness phase
    /// allows for it.
    pub timer_waits: TimerWaits,
    /// With coverage on (`RunOptions::coverage`): every commit, in order (`crate::coverage`).
    pub commit_log: Option<Vec<crate::coverage::Transition>>,
}

/// Outcomes that only a timer settles, because whoever knew crashed (docs/invariants.md, L1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimerWaits {
    /// The service crashed, or one of its store writes failed, between reserving a task and
    /// recording its agent's pid: the `starting` entry waits for the reaper's starting timeout.
    pub starting_timeout: bool,
    /// A command crashed after asking an agent to stop: the stop request waits until it is old
    /// enough for the reaper (or another command) to take it over.
    pub stop_request_expiry: bool,
}

pub struct World {
    pub inner: RefCell<Inner>,
    pub settings: Settings,
    /// Shared by the runs of one thread (see `executor::new_world`).
    pub scenario: std::rc::Rc<Scenario>,
    pub seed: u64,
    /// Unknown fields of the initial files, which must survive every write (S8). Shared by the
    /// runs of one thread, like `scenario`.
    pub initial: std::rc::Rc<State>,
    pub initial_graph_lines: usize,
    pub signal_without_identity_check: bool,
}

/// A port call's switch point: suspends once with `wait`, completes when polled again.
pub struct Suspend<'w> {
    world: &'w World,
    wait: Option<(Wait, &'static str)>,
}

impl Future for Suspend<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        match self.wait.take() {
            Some((wait, call)) => {
                let mut inner = self.world.inner.borrow_mut();
                let me = inner.current;
                inner.actors[me].wait = wait;
                inner.actors[me].call = call;
                Poll::Pending
            }
            // The executor polls a suspended actor only once its wait is over.
            None => Poll::Ready(()),
        }
    }
}

/// Parsed files by their exact text: many runs (seeds) write the same files, and a parse is the
/// dearest part of a commit. Exact, so a hit is what parsing would give; bounded per thread.
struct ParseCache {
    graphs: HashMap<String, Graph, FastHash>,
    registries: HashMap<String, Registry, FastHash>,
}

/// FNV-1a, 8 bytes at a time: the cache's keys are our own files, no adversary, and SipHash was
/// a visible part of a commit's cost.
#[derive(Clone, Copy, Default)]
struct FastHash;

#[derive(Default)]
struct FastHasher(u64);

impl std::hash::BuildHasher for FastHash {
    type Hasher = FastHasher;

    fn build_hasher(&self) -> FastHasher {
        FastHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
            self.0 = (self.0 ^ word).wrapping_mul(0x0000_0100_0000_01B3).rotate_left(23);
        }
        for byte in chunks.remainder() {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01B3);
        }
    }

    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29)
    }
}

const PARSE_CACHE_MAX: usize = 8_192;

thread_local! {
    static PARSE_CACHE: RefCell<ParseCache> =
        RefCell::new(ParseCache { graphs: HashMap::default(), registries: HashMap::default() });
}

/// One memo table of the cache: text as written → what it parses to. Bounded by
/// [`PARSE_CACHE_MAX`]; cleared whole when full.
fn memoised<T: Clone, E>(
    text: &str,
    table: fn(&mut ParseCache) -> &mut HashMap<String, T, FastHash>,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, E> {
    PARSE_CACHE.with(|cache| {
        if let Some(parsed) = table(&mut cache.borrow_mut()).get(text) {
            return Ok(parsed.clone());
        }
        let parsed = parse(text)?;
        let mut cache = cache.borrow_mut();
        let entries = table(&mut cache);
        if entries.len() >= PARSE_CACHE_MAX {
            entries.clear();
        }
        entries.insert(text.to_string(), parsed.clone());
        Ok(parsed)
    })
}

/// `Graph::parse`, memoised (S8's re-read of every write).
pub fn parse_graph(text: &str) -> Result<Graph, wg_core::graph::GraphParseError> {
    memoised(text, |cache| &mut cache.graphs, |text| Graph::parse(text.as_bytes()))
}

/// `Registry::parse`, memoised.
pub fn parse_registry(text: &str) -> Result<Registry, wg_core::registry::RegistryParseError> {
    memoised(text, |cache| &mut cache.registries, |text| Registry::parse(text.as_bytes()))
}

/// What the next reader of the registry file sees after `registry` is written.
///
/// The registry is serde's own rendering of a plain value, so reading it back gives the value
/// (`wg_core::registry` tests that): a release build takes the value as saved, and skips the
/// pretty-printing and parsing that were a third of a commit's cost. A debug build (every `cargo
/// test`) still writes the text and reads it back, and reports any difference as S8.
fn saved_registry(registry: Registry) -> Result<Registry, String> {
    let saved = registry.into_saved();
    if cfg!(debug_assertions) {
        let read_back = parse_registry(&saved.render()).map_err(|error| format!("service/registry.json: {error}"))?;
        if read_back != saved {
            return Err("service/registry.json: reading it back does not give what was written".into());
        }
    }
    Ok(saved)
}

/// A cheap deterministic mix of the seed with some numbers (for per-process choices that must
/// not depend on the order of scheduling decisions, so shrinking keeps them).
pub fn mix(seed: u64, values: &[u64]) -> u64 {
    let mut hash = seed ^ 0x9E37_79B9_7F4A_7C15;
    for value in values {
        hash = (hash ^ value).wrapping_mul(0x100_0000_01B3).rotate_left(29);
    }
    hash ^ (hash >> 31)
}

impl World {
    pub fn suspend(&self, wait: Wait, call: &'static str) -> Suspend<'_> {
        Suspend { world: self, wait: Some((wait, call)) }
    }

    pub fn now_ms(&self) -> EpochMs {
        self.inner.borrow().now_ms
    }

    pub fn note(&self, text: impl FnOnce() -> String) {
        let mut inner = self.inner.borrow_mut();
        if inner.recording {
            inner.notes.push(text());
        }
    }

    pub fn violate(&self, checker: &str, detail: String) {
        self.inner.borrow_mut().violations.push(CheckFailed { checker: checker.to_string(), detail });
    }

    pub fn add_timer(inner: &mut Inner, at_ms: EpochMs, timer: Timer) {
        inner.timer_seq += 1;
        let seq = inner.timer_seq;
        inner.timers.insert((at_ms, seq), timer);
    }

    /// Fires the steps waiting for the event `<verb> <agent_id>` (`spawn agent-2`, `signal
    /// agent-1`, `exit agent-1`). Compared in parts: most events wait for no step, and building
    /// their text each time was a visible cost.
    pub fn emit(&self, inner: &mut Inner, verb: &str, agent_id: &str) {
        for (index, step) in self.scenario.steps.iter().enumerate() {
            let crate::scenario::Trigger::On { event: wanted, delay_ms } = &step.trigger else { continue };
            let matches = wanted.strip_prefix(verb).and_then(|rest| rest.strip_prefix(' ')) == Some(agent_id);
            if matches && inner.steps_fired.insert(index) {
                let at_ms = inner.now_ms + *delay_ms as i64;
                World::add_timer(inner, at_ms, Timer::Step { index });
            }
        }
        if inner.recording {
            inner.notes.push(format!("event: {verb} {agent_id}"));
        }
    }

    /// Allocates a pid the way a kernel does: the next one in a small range, skipping live ones.
    fn allocate_pid(inner: &mut Inner) -> Option<i64> {
        for _ in 0..PID_SLOTS {
            let pid = inner.next_pid;
            inner.next_pid = PID_FIRST + (inner.next_pid - PID_FIRST + 1) % PID_SLOTS;
            if !inner.procs.contains_key(&pid) {
                return Some(pid);
            }
        }
        None
    }

    fn next_ticks(inner: &mut Inner) -> u64 {
        // Kernel start ticks are 10 ms; two processes on one pid never share them here.
        inner.last_ticks = (inner.now_ms as u64 / 10).max(inner.last_ticks + 1);
        inner.last_ticks
    }

    /// Starts a process at `pid` (or a fresh pid). Returns its identity.
    pub fn start_process(
        &self,
        inner: &mut Inner,
        pid: Option<i64>,
        kind: ProcKind,
        root: Option<Root>,
    ) -> Option<Proc> {
        let pid = match pid {
            Some(pid) => pid,
            None => World::allocate_pid(inner)?,
        };
        assert!(!inner.procs.contains_key(&pid), "pid {pid} is taken");
        let start_ticks = World::next_ticks(inner);
        let root = match kind {
            ProcKind::Agent { .. } => Some((pid, start_ticks)),
            ProcKind::Child => root,
            ProcKind::Foreign => None,
        };
        let proc = Proc {
            pid,
            start_ticks,
            start_ms: inner.now_ms,
            kind,
            root,
            ignore_term: false,
            stalled_until_ms: 0,
            actors: Vec::new(),
            gate: None,
        };
        inner.freed_pids.retain(|freed| *freed != pid);
        inner.procs.insert(pid, proc.clone());
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
                inner.procs.get_mut(&proc.pid).expect("just started").gate = Some(gate);
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
                Behaviour::HangIgnoringTerm => inner.procs.get_mut(&proc.pid).expect("running").ignore_term = true,
                Behaviour::SpawnChildren { count } => {
                    for _ in 0..*count {
                        let child = self.start_process(inner, None, ProcKind::Child, root);
                        if let Some(child) = child {
                            let ignore = behaviours.contains(&Behaviour::HangIgnoringTerm);
                            inner.procs.get_mut(&child.pid).expect("just started").ignore_term = ignore;
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
        let Some(proc) = inner.procs.get_mut(&pid).filter(|proc| proc.start_ticks == start_ticks) else { return };
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
        let Some(proc) = inner.procs.get_mut(&pid).filter(|proc| proc.start_ticks == start_ticks) else { return };
        let Some(gate) = proc.gate.as_mut().filter(|gate| !gate.closed) else { return };
        gate.closed = true;
        if inner.recording {
            inner.notes.push(format!("pid {pid}'s gate closed"));
        }
        let delay_ms = [0, 0, 10, 100][(mix(self.seed, &[pid as u64, start_ticks, 7]) % 4) as usize];
        if delay_ms == 0 {
            self.exit_process(inner, pid, ExitKind::Died);
        } else {
            let at_ms = inner.now_ms + delay_ms;
            World::add_timer(inner, at_ms, Timer::ProcessExit { pid, start_ticks, code: None });
        }
    }

    /// A process ends: its script actors stop, its pid is free for reuse.
    pub fn exit_process(&self, inner: &mut Inner, pid: i64, kind: ExitKind) {
        let Some(proc) = inner.procs.remove(&pid) else { return };
        inner.version += 1;
        inner.exited.insert(pid, (proc.start_ticks, kind));
        inner.freed_pids.push(pid);
        for actor in &proc.actors {
            if !inner.actors[*actor].finished {
                inner.actors[*actor].killed = true;
            }
        }
        if let ProcKind::Agent { agent_id, .. } = &proc.kind {
            inner.agent_exits_ms.insert(agent_id.clone(), inner.now_ms);
            self.emit(inner, "exit", agent_id);
        }
        if inner.recording {
            inner.notes.push(format!("pid {pid} exited ({kind:?})"));
        }
    }

    /// Which live process `process` means, if it is still that process: the identity rule of
    /// `wg_core::identity`, with the simulated clock's exact start times (no slack).
    fn identity_of(inner: &Inner, process: &ProcessRef) -> Option<Root> {
        let proc = inner.procs.get(&process.pid)?;
        let observed = Observed { start_ticks: proc.start_ticks, start_ms: Some(proc.start_ms) };
        check_identity(process, observed, 0).is_ok().then_some((proc.pid, proc.start_ticks))
    }

    /// The root a wait or a tree signal means: the live leader, or the recorded identity.
    fn root_of(inner: &Inner, process: &ProcessRef) -> Option<Root> {
        World::identity_of(inner, process).or_else(|| process.start_ticks.map(|ticks| (process.pid, ticks)))
    }

    pub fn tree_alive(inner: &Inner, root: Root) -> bool {
        inner.procs.values().any(|proc| proc.root == Some(root))
    }

    /// Delivers `signal` to the process at `pid` and the tree it belongs to; records each
    /// delivery against the process it was meant for (S2).
    fn deliver(&self, inner: &mut Inner, intended: &ProcessRef, targets: Vec<i64>, signal: Signal) {
        for pid in targets {
            let Some(proc) = inner.procs.get(&pid).cloned() else { continue };
            let target = format!("pid {pid} ({:?}, start ticks {})", proc.kind, proc.start_ticks);
            let signal_name = format!("{signal:?}");
            if let Some(broken) = check_signal_delivery(&signal_name, intended, &target, proc.root) {
                inner.violations.push(broken.into());
            }
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
                        let at_ms = inner.now_ms + delay_ms;
                        World::add_timer(inner, at_ms, timer);
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
        let leader = World::identity_of(&inner, process);
        let root = leader.or_else(|| process.start_ticks.map(|ticks| (process.pid, ticks)));
        let mut targets: Vec<i64> =
            inner.procs.values().filter(|proc| root.is_some() && proc.root == root).map(|proc| proc.pid).collect();
        let stranger = inner.procs.contains_key(&process.pid) && leader.is_none();
        if stranger && self.signal_without_identity_check {
            // Planted bug 5: the pid is signalled without asking whose it is now.
            targets.push(process.pid);
        } else if stranger && targets.is_empty() {
            return SignalOutcome::NotOurs(NotOurs::Replaced(process.pid));
        }
        if targets.is_empty() {
            return SignalOutcome::Gone;
        }
        self.deliver(&mut inner, process, targets, signal);
        SignalOutcome::Delivered
    }

    pub fn liveness_now(&self, process: &ProcessRef) -> Liveness {
        let inner = self.inner.borrow();
        if let Err(why) = check_pid(process.pid, None) {
            return Liveness::Refused(why);
        }
        if World::identity_of(&inner, process).is_some() {
            return Liveness::Alive;
        }
        if inner.procs.contains_key(&process.pid) {
            return Liveness::Replaced;
        }
        let exit = inner.exited.get(&process.pid).filter(|(ticks, _)| process.start_ticks.is_none_or(|t| t == *ticks));
        Liveness::Gone(exit.map_or(ExitKind::Died, |(_, kind)| *kind))
    }

    fn spawn_now(&self, request: &SpawnRequest) -> Result<Spawned, SpawnError> {
        let mut inner = self.inner.borrow_mut();
        let spawned_before =
            *inner.spawns_per_task.entry(request.task_id.clone()).and_modify(|n| *n += 1).or_insert(1) - 1;
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

    /// Commits `state` (already changed): the write, the re-read (S8) and the per-commit checks.
    pub fn commit(&self, inner: &mut Inner, actor: ActorId, state: State) {
        // A file the transaction did not change is the committed one, already read back when it
        // was written: only a changed file is written and read again here.
        let State { graph, registry } = state;
        let graph = if graph.is_changed() {
            let text = graph.render();
            match parse_graph(&text) {
                Ok(fresh) => {
                    inner.graph_lines = text.lines().count();
                    fresh
                }
                Err(e) => {
                    inner.violations.push(CheckFailed { checker: "S8".into(), detail: format!("graph.jsonl: {e}") });
                    return;
                }
            }
        } else {
            graph
        };
        let registry = if registry.is_changed() {
            match saved_registry(registry) {
                Ok(fresh) => fresh,
                Err(message) => {
                    inner.violations.push(CheckFailed { checker: "S8".into(), detail: message });
                    return;
                }
            }
        } else {
            registry
        };
        let fresh = State { graph, registry };
        debug_assert!(!fresh.is_changed(), "a fresh read is unchanged");
        let check = CommitCheck {
            before: &inner.committed,
            after: &fresh,
            initial: &self.initial,
            graph_lines: inner.graph_lines,
            initial_graph_lines: self.initial_graph_lines,
        };
        let kind = inner.actors[actor].kind;
        let mut found = checks::on_commit(&check, kind, &mut inner.actors[actor].raised);
        if inner.recording {
            let diff = checks::describe_diff(&inner.committed, &fresh);
            inner.notes.push(format!("commit: {diff}"));
        }
        inner.violations.append(&mut found);
        if inner.commit_log.is_some() {
            let transition = crate::coverage::transition(&inner.actors[actor], &inner.committed, &fresh);
            inner.commit_log.get_or_insert_with(Vec::new).push(transition);
        }
        inner.committed = fresh;
        inner.scratch = None;
        inner.version += 1;
        inner.commits += 1;
    }

    /// Drops what a dead actor held: the lock, and a write in flight lands as `landing` says;
    /// the gates of processes it spawned and did not release close (pipe EOF).
    pub fn release_actor(&self, inner: &mut Inner, actor: ActorId, landing: Landing) {
        let orphans: Vec<Root> = inner
            .procs
            .values()
            .filter(|proc| proc.gate.as_ref().is_some_and(|gate| gate.spawner == actor && !gate.closed))
            .map(|proc| (proc.pid, proc.start_ticks))
            .collect();
        for (pid, start_ticks) in orphans {
            self.close_gate(inner, pid, start_ticks);
        }
        if inner.lock == Some(actor) {
            inner.lock = None;
            if let Some(state) = inner.pending_write.take() {
                match landing {
                    Landing::Nothing => {}
                    Landing::Whole => self.commit(inner, actor, state),
                }
            }
        }
    }
}

impl Clock for World {
    fn now_ms(&self) -> EpochMs {
        self.inner.borrow().now_ms
    }

    async fn sleep_ms(&self, duration_ms: u64) {
        let until = self.now_ms() + duration_ms as i64;
        self.suspend(Wait::Until(until), "sleep").await;
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
        let root = World::root_of(&self.inner.borrow(), process);
        let Some(root) = root else {
            self.suspend(Wait::Ready, "wait_exit").await;
            return ExitWait::Exited;
        };
        self.suspend(Wait::Exit { root, deadline_ms }, "wait_exit").await;
        if World::tree_alive(&self.inner.borrow(), root) {
            ExitWait::TimedOut
        } else {
            ExitWait::Exited
        }
    }
}

impl Store for World {
    async fn transact<R>(&self, change: impl FnOnce(&mut State) -> R) -> Result<R, StoreError> {
        self.suspend(Wait::Lock, "transact").await;
        let (mut state, fault, me) = {
            let mut inner = self.inner.borrow_mut();
            debug_assert!(inner.lock.is_none(), "polled only when the lock is free");
            let state = inner.scratch.take().unwrap_or_else(|| inner.committed.clone());
            (state, inner.poll_fault.take(), inner.current)
        };
        assert!(!state.is_changed(), "each transaction starts from a fresh, unchanged read");
        debug_assert!(state == self.inner.borrow().committed, "the scratch copy is the committed state");
        if fault == Some(StoreFault::Fail) {
            let mut inner = self.inner.borrow_mut();
            inner.timer_waits.starting_timeout |= inner.actors[me].kind == ActorKind::Service;
            inner.scratch = Some(state);
            drop(inner);
            self.note(|| "store: write failed (fault)".into());
            return Err(StoreError::Io("simulated store failure: nothing was written".into()));
        }
        let result = change(&mut state);
        state.assert_changes_agree();
        if !state.is_changed() {
            // Nothing changed (every change goes through a method that marks it): still a
            // faithful copy of the committed state.
            self.inner.borrow_mut().scratch = Some(state);
            return Ok(result);
        }
        if fault == Some(StoreFault::Slow) {
            {
                let mut inner = self.inner.borrow_mut();
                inner.lock = Some(me);
                inner.pending_write = Some(state);
            }
            let until = self.now_ms() + SLOW_WRITE_MS as i64;
            self.suspend(Wait::Until(until), "write (slow)").await;
            let mut inner = self.inner.borrow_mut();
            state = inner.pending_write.take().expect("the writer holds its pending write");
            inner.lock = None;
        }
        let mut inner = self.inner.borrow_mut();
        self.commit(&mut inner, me, state);
        Ok(result)
    }
}
