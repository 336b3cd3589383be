//! The simulated world behind the core's ports. Each port is its own module with its own state:
//! [`clock`] (virtual time, timers), [`processes`] (the process table, pid reuse, gates,
//! signals), [`store`] (the in-memory store with the file store's semantics). This module wires
//! them: the actor slots and the scheduling state, the scenario's events and scripted faults,
//! and the service's lifecycle. [`boot`] builds the initial world; [`record`] is what the world
//! records for the checkers (it never runs them); [`state_hash`] hashes it for the determinism
//! self-check.
//!
//! `World` implements `Clock`, `Processes` and `Store` (each in its port's module), so a core
//! operation runs with `Ctx { clock: &world, processes: &world, store: &world, .. }`. Every async
//! port call first suspends once with what it waits for ([`Wait`]); the executor polls it again
//! only when that wait is over, and may instead drop the actor there (a crash at a port call).

pub mod boot;
pub mod clock;
pub mod processes;
pub mod record;
pub mod state_hash;
pub mod store;

use self::clock::{ClockState, Timer};
use self::processes::{ProcKind, ProcessTable, Root};
use self::record::Record;
use self::store::{Landing, StoreState};
use crate::scenario::{Action, Scenario, ScriptedFault, Trigger};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use wg_core::invariants::Violation;
use wg_core::ports::State;
use wg_core::settings::Settings;
use wg_core::time::EpochMs;

pub type ActorId = usize;

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

/// What the executor should start next (ports cannot build futures that borrow the world).
#[derive(Clone, Debug)]
pub enum ActorSpec {
    Dispatcher { generation: u32 },
    Reaper { generation: u32 },
    Cli { command: crate::scenario::CommandLine, text: String },
    Script { pid: i64, start_ticks: u64, agent_id: String, task_id: String, behaviour: crate::scenario::Behaviour },
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

/// Everything that changes during a run: each port's state, and the wiring's.
pub struct Inner {
    pub clock: ClockState,
    pub processes: ProcessTable,
    pub store: StoreState,
    /// The actor being polled.
    pub current: ActorId,
    pub actors: Vec<ActorSlot>,
    /// Bumped by every change the after-step checks (S1, S6) look at: a commit, a process
    /// started, ended or released. The executor skips those checks when it did not move.
    pub version: u64,
    pub new_actors: Vec<ActorSpec>,
    /// What the checkers must see, in order; the executor takes them after each step.
    pub records: Vec<Record>,
    /// What the checkers found in this world, put here by the executor (the run ends at the
    /// first).
    pub violations: Vec<Violation>,
    /// Notes for the timeline of the current step (only when recording).
    pub notes: Vec<String>,
    pub recording: bool,
    pub steps_fired: BTreeSet<usize>,
    pub service_generation: u32,
    pub service_up: bool,
    /// Completed retries of in-progress tasks: (old agent) for L2.
    pub retried_agents: Vec<String>,
    /// What a fault in the safety phase may have left for a timer to settle; the liveness phase
    /// allows for it.
    pub timer_waits: TimerWaits,
}

impl Inner {
    /// The world before boot: `initial` committed, nothing running.
    pub fn new(initial: Rc<State>, initial_graph_lines: usize, recording: bool) -> Inner {
        Inner {
            clock: ClockState::new(),
            processes: ProcessTable::new(),
            store: StoreState::new(initial, initial_graph_lines),
            current: 0,
            actors: Vec::new(),
            version: 0,
            new_actors: Vec::new(),
            records: Vec::new(),
            violations: Vec::new(),
            notes: Vec::new(),
            recording,
            steps_fired: BTreeSet::new(),
            service_generation: 0,
            service_up: false,
            retried_agents: Vec::new(),
            timer_waits: TimerWaits::default(),
        }
    }
}

pub struct World {
    pub inner: RefCell<Inner>,
    pub settings: Settings,
    /// Shared by the runs of one thread (see `boot::new_world`).
    pub scenario: Rc<Scenario>,
    pub seed: u64,
    /// Unknown fields of the initial files, which must survive every write (S8). Shared by the
    /// runs of one thread, like `scenario`.
    pub initial: Rc<State>,
    pub initial_graph_lines: usize,
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

    pub fn note(&self, text: impl FnOnce() -> String) {
        let mut inner = self.inner.borrow_mut();
        if inner.recording {
            inner.notes.push(text());
        }
    }

    /// Fires the steps waiting for the event `<verb> <agent_id>` (`spawn agent-2`, `signal
    /// agent-1`, `exit agent-1`). Compared in parts: most events wait for no step, and building
    /// their text each time was a visible cost.
    pub fn emit(&self, inner: &mut Inner, verb: &str, agent_id: &str) {
        for (index, step) in self.scenario.steps.iter().enumerate() {
            let Trigger::On { event: wanted, delay_ms } = &step.trigger else { continue };
            let matches = wanted.strip_prefix(verb).and_then(|rest| rest.strip_prefix(' ')) == Some(agent_id);
            if matches && inner.steps_fired.insert(index) {
                let at_ms = inner.clock.now_ms + *delay_ms as i64;
                inner.clock.add_timer(at_ms, Timer::Step { index });
            }
        }
        if inner.recording {
            inner.notes.push(format!("event: {verb} {agent_id}"));
        }
    }

    /// Fires the timers due at the current time, in time order.
    pub fn fire_due_timers(&self) {
        loop {
            let mut inner = self.inner.borrow_mut();
            let Some(timer) = inner.clock.take_due() else { return };
            self.fire(&mut inner, timer);
        }
    }

    fn fire(&self, inner: &mut Inner, timer: Timer) {
        match timer {
            Timer::ProcessExit { pid, start_ticks, code } => {
                if inner.processes.procs.get(&pid).is_some_and(|proc| proc.start_ticks == start_ticks) {
                    self.exit_process(
                        inner,
                        pid,
                        code.map_or(wg_core::ports::ExitKind::Died, wg_core::ports::ExitKind::Code),
                    );
                }
            }
            Timer::ServiceRestart => self.start_service(inner),
            Timer::Step { index } => {
                let step = &self.scenario.steps[index];
                if inner.recording {
                    inner.notes.push(format!("step: {}", step.text));
                }
                match &step.action {
                    Action::Run(command) => {
                        inner.new_actors.push(ActorSpec::Cli { command: command.clone(), text: step.text.clone() })
                    }
                    Action::Fault(fault) => self.scripted_fault(inner, fault),
                }
            }
        }
    }

    fn scripted_fault(&self, inner: &mut Inner, fault: &ScriptedFault) {
        match fault {
            ScriptedFault::CrashService => self.crash_service(inner, Landing::Nothing),
            ScriptedFault::ClockJump { by_ms } => inner.clock.now_ms += *by_ms as i64,
            ScriptedFault::ReusePid { agent } => {
                let pid = inner.store.committed.registry.agent(agent).map(|agent| agent.pid);
                if let Some(pid) = pid.filter(|pid| *pid > 1 && !inner.processes.procs.contains_key(pid)) {
                    self.start_process(inner, Some(pid), ProcKind::Foreign, None);
                }
            }
            ScriptedFault::StallHeartbeat { agent, for_ms } => {
                let until = inner.clock.now_ms + *for_ms as i64;
                for proc in inner.processes.procs.values_mut() {
                    if matches!(&proc.kind, ProcKind::Agent { agent_id, .. } if agent_id == agent) {
                        proc.stalled_until_ms = until;
                    }
                }
            }
        }
    }

    pub fn start_service(&self, inner: &mut Inner) {
        inner.service_generation += 1;
        inner.service_up = true;
        let generation = inner.service_generation;
        inner.new_actors.push(ActorSpec::Dispatcher { generation });
        inner.new_actors.push(ActorSpec::Reaper { generation });
    }

    /// The service process dies (both loops) and is restarted a second later.
    pub fn crash_service(&self, inner: &mut Inner, landing: Landing) {
        if !inner.service_up {
            return;
        }
        inner.service_up = false;
        inner.timer_waits.starting_timeout = true;
        for id in 0..inner.actors.len() {
            let slot = &inner.actors[id];
            if slot.kind == ActorKind::Service && !slot.finished && !slot.killed {
                inner.actors[id].killed = true;
                self.release_actor(inner, id, landing);
            }
        }
        let at_ms = inner.clock.now_ms + 1_000;
        inner.clock.add_timer(at_ms, Timer::ServiceRestart);
        if inner.recording {
            inner.notes.push("service crashed; restarts in 1s".into());
        }
    }
}
