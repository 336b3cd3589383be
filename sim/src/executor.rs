//! The single-threaded executor: one step polls one actor chosen by the scheduler (or applies
//! one fault). Virtual time moves only when no actor can run. The run has a safety phase (faults
//! on) and a liveness phase (faults off) at whose end L1/L2 and the expectations are checked.

use crate::actors::{self, ActorFuture};
use crate::checks::{self, Initial};
use crate::scenario::{FaultKind, Scenario, SchedulerKind};
use crate::world::clock::EPOCH_START_MS;
use crate::world::processes::{ProcKind, PID_SLOTS};
use crate::world::state_hash::state_hash;
use crate::world::store::{Landing, StoreFault};
use crate::world::{boot, ActorId, ActorKind, ActorSlot, Inner, TimerWaits, Wait, World};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use wg_core::ports::State;
use wg_core::settings::Settings;

/// One entry of a trace: a scheduling decision or an injected fault.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "kebab-case")]
pub enum Decision {
    Run {
        actor: ActorId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fault: Option<StoreFault>,
    },
    /// The actor (a command, or the whole service) dies at its port call; a write it had in
    /// flight lands as `landing` says.
    Crash {
        actor: ActorId,
        landing: Landing,
    },
    ReusePid {
        pid: i64,
    },
    ClockJump {
        by_ms: u64,
    },
    Stall {
        pid: i64,
        for_ms: u64,
    },
    IgnoreTerm {
        pid: i64,
    },
}

impl Decision {
    pub fn is_fault(&self) -> bool {
        !matches!(self, Decision::Run { fault: None, .. })
    }
}

#[derive(Clone, Debug)]
pub struct RunOptions {
    pub seed: u64,
    pub scheduler: SchedulerKind,
    /// Fault kinds that may be injected in the safety phase.
    pub faults: Vec<FaultKind>,
    pub fault_rate: f64,
    /// Replays these decisions instead of choosing; the run ends where the trace ends.
    pub replay: Option<Vec<Decision>>,
    pub record_timeline: bool,
    pub hash_steps: bool,
    pub steps_max: u64,
    /// Runs the liveness phase to its bound even once the world is quiescent (see
    /// [`quiescent`]); only for checking that ending early changes no outcome.
    pub run_to_end: bool,
    /// Records the orderings of conflicting commits ([`RunReport::orderings`]).
    pub coverage: bool,
    #[cfg(feature = "planted-bugs")]
    pub planted_bug: Option<wg_core::settings::PlantedBug>,
}

impl RunOptions {
    pub fn for_scenario(scenario: &Scenario, seed: u64) -> RunOptions {
        RunOptions {
            seed,
            scheduler: scenario.sim.scheduler,
            faults: scenario.sim.faults.clone(),
            fault_rate: scenario.sim.fault_rate,
            replay: None,
            record_timeline: false,
            hash_steps: false,
            steps_max: scenario.sim.steps_max,
            run_to_end: false,
            coverage: false,
            #[cfg(feature = "planted-bugs")]
            planted_bug: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub checker: String,
    pub detail: String,
    /// Index of the trace entry after which it was seen (the end of the run for L1/L2/expect).
    pub step: usize,
    /// Virtual time since the start of the run.
    pub tick_ms: i64,
}

#[derive(Clone, Debug, Default)]
pub struct RunReport {
    pub failure: Option<Failure>,
    pub trace: Vec<Decision>,
    pub timeline: Vec<String>,
    /// With `record_timeline`: the same steps as data (for `wg-sim replay --html`).
    pub steps: Vec<StepRecord>,
    pub step_hashes: Vec<u64>,
    /// A replayed decision named an actor that could not run, or a pid that was not free.
    pub invalid: bool,
    /// A [`Chooser`] ended the run before its end (the explorer prunes a state it has seen):
    /// no end checks ran.
    pub cut_short: bool,
    pub faults_fired: u32,
    /// The kinds of the faults injected (expectations may say they do not survive some).
    pub fault_kinds: BTreeSet<FaultKind>,
    /// With `hash_steps`: the final graph and registry files (to compare runs).
    pub final_files: Option<(String, String)>,
    /// With `coverage`: the orderings of conflicting commits this run showed.
    pub orderings: BTreeSet<String>,
}

/// The most faults one run injects: enough to combine a few, few enough that runs progress.
pub const FAULTS_MAX: u32 = 6;
/// PCT's estimate of a run's length in steps, over which its priority change points spread.
const PCT_STEPS_ESTIMATE: u64 = 400;

fn settings_for(scenario: &Scenario) -> Settings {
    let service = &scenario.service;
    Settings {
        grace_ms: service.grace_ms,
        kill_wait_ms: service.kill_wait_ms,
        heartbeat_timeout_ms: service.heartbeat_timeout_ms,
        max_agents: service.max_agents,
        poll_interval_ms: service.poll_interval_ms,
        ..Settings::default()
    }
}

/// How long the liveness phase lasts unless the scenario says: time for a sweep to notice a death
/// (poll), stop a hung agent (heartbeat timeout, grace, kill wait), a service restart, and
/// another sweep to dispatch.
///
/// Two outcomes wait for a timer because whoever knew crashed (`waits`): a `starting` entry left
/// by a service crash or a failed store write (the agent never ran: its gate closed) waits for the
/// starting timeout; a stop request left by a crashed command waits for its expiry, after which
/// the reaper escalates. When such a fault fired in the safety phase, the bound includes the wait.
/// Faults fire only in the safety phase, so this is known when the liveness phase starts, and a
/// replayed trace gets the same bound as the run it came from.
pub fn liveness_ms(scenario: &Scenario, waits: TimerWaits) -> u64 {
    let service = &scenario.service;
    let settings = settings_for(scenario);
    let starting_ms = if waits.starting_timeout { settings.starting_timeout_ms + 1_000 } else { 0 };
    let stop_expiry_ms =
        if waits.stop_request_expiry { settings.stop_request_expiry_ms() + service.poll_interval_ms } else { 0 };
    scenario.sim.liveness_ms.unwrap_or(
        3 * service.poll_interval_ms
            + service.heartbeat_timeout_ms.unwrap_or(0)
            + service.grace_ms
            + service.kill_wait_ms
            + starting_ms.max(stop_expiry_ms)
            + 2_000,
    )
}

/// What every run of one scenario starts from: the scenario, its initial files and the line
/// count of the initial graph file (S8).
#[derive(Clone)]
struct Prepared {
    scenario: Rc<Scenario>,
    initial: Rc<State>,
    initial_graph_lines: usize,
}

thread_local! {
    /// The last scenario run on this thread, and its initial files: consecutive runs of one
    /// scenario (seeds) share them instead of cloning and building them each time.
    static PREPARED: RefCell<Option<Prepared>> = const { RefCell::new(None) };
}

fn prepared(scenario: &Scenario) -> Prepared {
    PREPARED.with(|cell| {
        let mut cell = cell.borrow_mut();
        if let Some(prepared) = cell.as_ref().filter(|prepared| *prepared.scenario == *scenario) {
            return prepared.clone();
        }
        let initial = boot::initial_state(scenario);
        let initial_graph_lines = initial.graph.render().lines().count();
        let prepared = Prepared { scenario: Rc::new(scenario.clone()), initial: Rc::new(initial), initial_graph_lines };
        *cell = Some(prepared.clone());
        prepared
    })
}

fn new_world(scenario: &Scenario, options: &RunOptions) -> World {
    #[allow(unused_mut)]
    let mut settings = settings_for(scenario);
    #[cfg(feature = "planted-bugs")]
    {
        settings.planted_bug = options.planted_bug;
    }
    let Prepared { scenario, initial, initial_graph_lines } = prepared(scenario);
    let inner = Inner::new(Rc::clone(&initial), initial_graph_lines, options.record_timeline);
    World { inner: RefCell::new(inner), settings, scenario, seed: options.seed, initial_graph_lines, initial }
}

/// Where decisions come from: the seeded generator (random walk or PCT), a trace, or a
/// [`Chooser`] outside the executor.
// One per run, never moved around: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
enum Source<'c> {
    Seeded { rng: ChaCha8Rng, pct: Option<Pct>, faults: Vec<FaultKind>, fault_rate: f64 },
    Replay { trace: Vec<Decision>, position: usize },
    Chosen(&'c mut dyn Chooser),
}

/// A decision source outside the executor: the explorer of `wg-sim check` (`crate::explore`).
/// Asked before every step; `None` ends the run there, without end checks
/// ([`RunReport::cut_short`]).
pub trait Chooser {
    fn choose(&mut self, step: &StepView<'_>) -> Option<Decision>;
}

/// What a [`Chooser`] sees before a step.
pub struct StepView<'a> {
    pub world: &'a World,
    /// Actors that can run now, in id order (never empty).
    pub runnable: &'a [ActorId],
    /// The safety phase (faults allowed) is on; else the liveness phase runs.
    pub safety: bool,
    /// The executor would allow a fault now (safety phase, fewer than [`FAULTS_MAX`] fired).
    pub faults_on: bool,
    /// Where the current phase ends (virtual time): part of the state, as it bounds the run.
    pub end_ms: i64,
    /// The kinds of faults injected so far (expectations depend on them).
    pub fault_kinds: &'a BTreeSet<FaultKind>,
}

/// Probabilistic concurrency testing: the runnable actor with the highest priority runs; at
/// `depth - 1` random steps the running actor drops below every other.
struct Pct {
    priorities: BTreeMap<ActorId, u64>,
    change_points: Vec<u64>,
    steps: u64,
}

/// Where a run is in its phases, for the decision source.
#[derive(Clone, Copy)]
struct Phase {
    faults_on: bool,
    end_ms: i64,
    safety_end_ms: i64,
}

/// Runs one scenario with one seed (or one trace).
pub fn run(scenario: &Scenario, options: &RunOptions) -> RunReport {
    run_from(scenario, options, source_for(options))
}

/// Runs one scenario with the decisions of `chooser` (the seed of `options` still decides exit
/// delays and crash landings not chosen by the schedule).
pub fn run_chosen(scenario: &Scenario, options: &RunOptions, chooser: &mut dyn Chooser) -> RunReport {
    run_from(scenario, options, Source::Chosen(chooser))
}

fn run_from(scenario: &Scenario, options: &RunOptions, mut source: Source<'_>) -> RunReport {
    let world = new_world(scenario, options);
    boot::boot(&world);
    // With `options.coverage`: every commit, in order (`crate::coverage`).
    let mut commit_log = options.coverage.then(Vec::new);
    let mut futures: Vec<Option<ActorFuture<'_>>> = Vec::new();
    let mut report = RunReport::default();
    let safety_end_ms = EPOCH_START_MS + scenario.sim.safety_ms as i64;
    // The liveness phase starts when the safety phase is over (a clock jump may overshoot it)
    // and lasts its bound from there.
    let mut liveness_start_ms: Option<i64> = None;
    let mut end_ms = safety_end_ms;
    let mut checked_version = u64::MAX;
    // Refilled every step, allocated once per run.
    let mut runnable_buffer = Vec::new();
    loop {
        if liveness_start_ms.is_none() && world.now_ms() >= safety_end_ms {
            liveness_start_ms = Some(world.now_ms());
            end_ms = world.now_ms() + liveness_ms(scenario, world.inner.borrow().timer_waits) as i64;
        }
        world.fire_due_timers();
        start_new_actors(&world, &mut futures);
        drop_dead_actors(&world, &mut futures);
        check_records(&world, &mut commit_log);
        if let Some(failure) = first_violation(&world, report.trace.len()) {
            report.failure = Some(failure);
            break;
        }
        collect_runnable(&world.inner.borrow(), &mut runnable_buffer);
        let runnable = runnable_buffer.as_slice();
        if runnable.is_empty() {
            // Nothing can happen any more but idle sweeps: the end checks would see this state.
            if liveness_start_ms.is_some() && !options.run_to_end && quiescent(&world) {
                break;
            }
            if !advance_time(&world, end_ms) && liveness_start_ms.is_some() {
                break;
            }
            continue;
        }
        if report.trace.len() as u64 >= options.steps_max {
            report.failure = Some(failure_at(
                &world,
                report.trace.len(),
                "steps",
                format!("no end after {} steps", options.steps_max),
            ));
            break;
        }
        let faults_on = world.now_ms() < safety_end_ms && report.faults_fired < FAULTS_MAX;
        let phase = Phase { faults_on, end_ms, safety_end_ms };
        let Some(decision) = next_decision(&mut source, &world, runnable, phase, &mut report) else {
            break;
        };
        report.faults_fired += u32::from(decision.is_fault());
        report.fault_kinds.extend(fault_kind(&world, &decision));

        let call = match &decision {
            Decision::Run { actor, .. } => world.inner.borrow().actors[*actor].call,
            _ => "",
        };
        apply(&world, &mut futures, &decision);
        check_records(&world, &mut commit_log);
        after_step(&world, &decision, call, options, &mut report);
        report.trace.push(decision);
        // S1 and S6 look only at the committed state and the process table.
        let version = world.inner.borrow().version;
        if version != checked_version {
            checked_version = version;
            let inner = world.inner.borrow();
            let violations = checks::after_step(&inner.processes, &inner.store.committed);
            drop(inner);
            world.inner.borrow_mut().violations.extend(violations);
        }
    }
    if report.failure.is_none() && !report.invalid && !report.cut_short {
        report.failure = end_checks(&world, report.trace.len(), &report.fault_kinds, end_ms);
    }
    if let Some(log) = &commit_log {
        report.orderings = crate::coverage::orderings(log);
    }
    if options.hash_steps {
        let inner = world.inner.borrow();
        report.final_files = Some((inner.store.committed.graph.render(), inner.store.committed.registry.render()));
    }
    report
}

fn source_for(options: &RunOptions) -> Source<'static> {
    if let Some(trace) = &options.replay {
        return Source::Replay { trace: trace.clone(), position: 0 };
    }
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let pct = match options.scheduler {
        SchedulerKind::Random => None,
        SchedulerKind::Pct { depth } => {
            let change_points = (1..depth).map(|_| rng.gen_range(0..PCT_STEPS_ESTIMATE)).collect();
            Some(Pct { priorities: BTreeMap::new(), change_points, steps: 0 })
        }
    };
    Source::Seeded { rng, pct, faults: options.faults.clone(), fault_rate: options.fault_rate }
}

fn failure_at(world: &World, step: usize, checker: &str, detail: String) -> Failure {
    Failure { checker: checker.to_string(), detail, step, tick_ms: world.now_ms() - EPOCH_START_MS }
}

fn first_violation(world: &World, step: usize) -> Option<Failure> {
    let violation = world.inner.borrow().violations.first()?.clone();
    Some(failure_at(world, step.saturating_sub(1), violation.invariant, violation.detail))
}

/// Hands what the world recorded since the last call to the checks, in order; keeps the
/// commits for coverage.
fn check_records(world: &World, commit_log: &mut Option<Vec<crate::coverage::Transition>>) {
    let mut inner = world.inner.borrow_mut();
    if inner.records.is_empty() {
        return;
    }
    let initial = Initial { state: &world.initial, graph_lines: world.initial_graph_lines };
    let records = std::mem::take(&mut inner.records);
    for record in &records {
        let mut found = checks::on_record(record, initial, &mut inner.actors);
        inner.violations.append(&mut found);
        if let (Some(log), crate::world::record::Record::Commit(commit)) = (commit_log.as_mut(), record) {
            log.push(crate::coverage::transition(&inner.actors[commit.actor], &commit.before, &commit.after));
        }
    }
}

/// Actors whose wait is over, in id order, into `runnable`.
fn collect_runnable(inner: &Inner, runnable: &mut Vec<ActorId>) {
    let lock_free = inner.store.lock.is_none();
    runnable.clear();
    runnable.extend((0..inner.actors.len()).filter(|&id| {
        let slot = &inner.actors[id];
        !slot.finished
            && !slot.killed
            && match &slot.wait {
                Wait::Ready => true,
                Wait::Until(at_ms) => inner.clock.now_ms >= *at_ms,
                Wait::Exit { root, deadline_ms } => {
                    inner.clock.now_ms >= *deadline_ms || !inner.processes.tree_alive(*root)
                }
                Wait::Lock => lock_free,
            }
    }));
}

/// Whether the world is settled for good: from here on the service's sweeps would find nothing
/// to do at any later time, so the liveness phase may end now (its end checks would see this
/// very state at its bound). Conservative: anything that could still change, or change with
/// time, keeps the run going to its bound.
/// - no timer (process exits, steps, service restart) and no actor but the service's two loops,
///   both asleep between sweeps, holding no lock;
/// - no process held at its gate;
/// - every running entry is `working`-like with its own live, released process (the reaper's
///   liveness check says alive), no stop request pending, and no heartbeat timeout applies (it
///   would fire with time);
/// - every in-progress task's entry is running (else the orphan sweep has work);
/// - no open task the dispatcher could start now or later (a backoff expiring) while there is
///   room under `max_agents`.
pub fn quiescent(world: &World) -> bool {
    quiescent_inner(world, &world.inner.borrow())
}

fn quiescent_inner(world: &World, inner: &Inner) -> bool {
    if !inner.clock.timers.is_empty() || inner.store.lock.is_some() || !inner.new_actors.is_empty() {
        return false;
    }
    if world.scenario.service.running && !inner.service_up {
        return false;
    }
    let idle = inner
        .actors
        .iter()
        .filter(|slot| !slot.finished && !slot.killed)
        .all(|slot| slot.kind == ActorKind::Service && slot.call == "sleep" && matches!(slot.wait, Wait::Until(_)));
    if !idle || inner.processes.procs.values().any(|proc| proc.gate.is_some()) {
        return false;
    }
    let state = &inner.store.committed;
    let mut running = 0;
    for agent in state.registry.agents().filter(|agent| agent.status.is_running()) {
        running += 1;
        // A stop request is acted on when its stop ends or when it expires: time still matters.
        let alive = agent.pid > 1
            && agent.stop_requested.is_none()
            && agent.status != wg_core::model::AgentStatus::Starting
            && world.settings.heartbeat_timeout_ms.is_none()
            && inner.processes.procs.get(&agent.pid).is_some_and(|proc| proc.gate.is_none())
            && inner.processes.liveness(&agent.process()) == wg_core::ports::Liveness::Alive;
        if !alive {
            return false;
        }
    }
    let room = running < world.settings.max_agents;
    state.graph.tasks().all(|task| match task.status {
        wg_core::model::TaskStatus::InProgress => task
            .assigned
            .as_deref()
            .and_then(|id| state.registry.agent(id))
            .is_some_and(|agent| agent.status.is_running() && agent.task_id == task.id),
        wg_core::model::TaskStatus::Open => !(room && checks::could_be_ready(state, task)),
        _ => true,
    })
}

/// Jumps to the earliest wake-up (timer, sleep, exit deadline). False when the run is over.
fn advance_time(world: &World, end_ms: i64) -> bool {
    let mut inner = world.inner.borrow_mut();
    let timers = inner.clock.next_due_ms();
    let waits = inner.actors.iter().filter(|slot| !slot.finished && !slot.killed).filter_map(|slot| match &slot.wait {
        Wait::Until(at_ms) => Some(*at_ms),
        Wait::Exit { deadline_ms, .. } => Some(*deadline_ms),
        Wait::Ready | Wait::Lock => None,
    });
    let next_ms = waits.chain(timers).min();
    match next_ms {
        Some(next_ms) if next_ms <= end_ms => {
            inner.clock.now_ms = inner.clock.now_ms.max(next_ms);
            true
        }
        _ => {
            inner.clock.now_ms = inner.clock.now_ms.max(end_ms);
            false
        }
    }
}

fn start_new_actors<'w>(world: &'w World, futures: &mut Vec<Option<ActorFuture<'w>>>) {
    loop {
        let spec = {
            let mut inner = world.inner.borrow_mut();
            if inner.new_actors.is_empty() {
                return;
            }
            inner.new_actors.remove(0)
        };
        let id = futures.len();
        let name = actors::name_of(&spec, id);
        let kind = actors::kind_of(&spec);
        {
            let mut inner = world.inner.borrow_mut();
            let slot = ActorSlot {
                name: name.clone(),
                kind,
                wait: Wait::Ready,
                call: "start",
                killed: false,
                finished: false,
                raised: BTreeMap::new(),
            };
            inner.actors.push(slot);
            if let crate::world::ActorSpec::Script { pid, start_ticks, .. } = &spec {
                // The process may have exited (and its pid been taken) before its script starts.
                match inner.processes.procs.get_mut(pid).filter(|proc| proc.start_ticks == *start_ticks) {
                    Some(proc) => proc.actors.push(id),
                    None => inner.actors[id].killed = true,
                }
            }
        }
        futures.push(Some(actors::make(world, name, spec)));
    }
}

/// Drops the futures of actors that crashed or whose process exited.
fn drop_dead_actors(world: &World, futures: &mut [Option<ActorFuture<'_>>]) {
    for (id, future) in futures.iter_mut().enumerate() {
        if future.is_some() && world.inner.borrow().actors[id].killed {
            let mixed = crate::world::mix(world.seed, &[id as u64, world.inner.borrow().store.commits]);
            let landing = Landing::from_hash(mixed);
            world.release_actor(&mut world.inner.borrow_mut(), id, landing);
            *future = None;
        }
    }
}

fn next_decision(
    source: &mut Source<'_>,
    world: &World,
    runnable: &[ActorId],
    phase: Phase,
    report: &mut RunReport,
) -> Option<Decision> {
    let Phase { faults_on, end_ms, safety_end_ms } = phase;
    match source {
        Source::Chosen(chooser) => {
            let safety = world.now_ms() < safety_end_ms;
            let step = StepView { world, runnable, safety, faults_on, end_ms, fault_kinds: &report.fault_kinds };
            let decision = chooser.choose(&step);
            match &decision {
                Some(decision) if !valid(world, runnable, decision) => {
                    report.invalid = true;
                    None
                }
                Some(_) => decision,
                None => {
                    report.cut_short = true;
                    None
                }
            }
        }
        Source::Replay { trace, position } => {
            // Past the trace's end, a fixed default (the oldest runnable actor, no faults) runs
            // the world to its end, so a shortened trace still ends where the run ends.
            let Some(decision) = trace.get(*position).cloned() else {
                return Some(Decision::Run { actor: runnable[0], fault: None });
            };
            *position += 1;
            if !valid(world, runnable, &decision) {
                report.invalid = true;
                return None;
            }
            Some(decision)
        }
        Source::Seeded { rng, pct, faults, fault_rate } => {
            let actor = match pct {
                None => runnable[rng.gen_range(0..runnable.len())],
                Some(pct) => pct.choose(rng, runnable),
            };
            if faults_on && !faults.is_empty() && rng.gen_bool(*fault_rate) {
                let kind = faults[rng.gen_range(0..faults.len())];
                if let Some(fault) = make_fault(world, rng, kind, actor) {
                    return Some(fault);
                }
            }
            Some(Decision::Run { actor, fault: None })
        }
    }
}

impl Pct {
    fn choose(&mut self, rng: &mut ChaCha8Rng, runnable: &[ActorId]) -> ActorId {
        let depth = self.change_points.len() as u64 + 1;
        for &actor in runnable {
            self.priorities.entry(actor).or_insert_with(|| depth + rng.gen_range(0..1_000_000));
        }
        let chosen =
            *runnable.iter().max_by_key(|actor| (self.priorities[actor], **actor)).expect("runnable is not empty");
        if let Some(index) = self.change_points.iter().position(|&at| at == self.steps) {
            // Lower than every initial priority, and lower than earlier drops.
            self.priorities.insert(chosen, depth - 1 - index as u64);
        }
        self.steps += 1;
        chosen
    }
}

fn make_fault(world: &World, rng: &mut ChaCha8Rng, kind: FaultKind, actor: ActorId) -> Option<Decision> {
    let mut choices = fault_choices(world, kind, actor);
    // These kinds have always drawn from the generator, even from one choice; the others never
    // did. Keeping that keeps every seed's schedule what it was.
    let draws = matches!(
        kind,
        FaultKind::CrashCli
            | FaultKind::CrashService
            | FaultKind::ClockJump
            | FaultKind::HeartbeatStall
            | FaultKind::SigtermIgnored
    );
    match choices.len() {
        0 => None,
        count if draws => Some(choices.swap_remove(rng.gen_range(0..count))),
        _ => Some(choices.swap_remove(0)),
    }
}

/// Every fault of `kind` that can be injected now, `actor` being the actor scheduled, in a fixed
/// order: the seeded source draws one of them, the explorer (`wg-sim check`) tries each.
pub fn fault_choices(world: &World, kind: FaultKind, actor: ActorId) -> Vec<Decision> {
    let inner = world.inner.borrow();
    let slot = &inner.actors[actor];
    let live_agents = || inner.processes.procs.values().filter(|p| matches!(p.kind, ProcKind::Agent { .. })).map(|p| p.pid);
    let crashes = || [Landing::Nothing, Landing::Whole].map(|landing| Decision::Crash { actor, landing }).to_vec();
    match kind {
        FaultKind::CrashCli if slot.kind == ActorKind::Cli => crashes(),
        FaultKind::CrashService if slot.kind == ActorKind::Service => crashes(),
        FaultKind::StoreSlow if slot.call == "transact" => vec![Decision::Run { actor, fault: Some(StoreFault::Slow) }],
        FaultKind::StoreFail if slot.call == "transact" => vec![Decision::Run { actor, fault: Some(StoreFault::Fail) }],
        FaultKind::PidReuse => {
            let table = &inner.processes;
            let foreign = table.procs.values().filter(|p| p.kind == ProcKind::Foreign).count() as i64;
            let reusable =
                table.freed_pids.last().filter(|pid| foreign < PID_SLOTS / 3 && !table.procs.contains_key(pid));
            reusable.map(|&pid| Decision::ReusePid { pid }).into_iter().collect()
        }
        FaultKind::ClockJump => (1..30).map(|seconds| Decision::ClockJump { by_ms: seconds * 1_000 }).collect(),
        FaultKind::HeartbeatStall => {
            let for_ms = world.settings.heartbeat_timeout_ms.unwrap_or(10_000) * 2;
            live_agents().map(|pid| Decision::Stall { pid, for_ms }).collect()
        }
        FaultKind::SigtermIgnored => live_agents().map(|pid| Decision::IgnoreTerm { pid }).collect(),
        _ => Vec::new(),
    }
}

/// Whether a replayed decision can be applied now.
fn valid(world: &World, runnable: &[ActorId], decision: &Decision) -> bool {
    let inner = world.inner.borrow();
    match decision {
        Decision::Run { actor, .. } => runnable.contains(actor),
        Decision::Crash { actor, .. } => runnable.contains(actor) && inner.actors[*actor].kind != ActorKind::Agent,
        Decision::ReusePid { pid } => !inner.processes.procs.contains_key(pid),
        Decision::Stall { pid, .. } | Decision::IgnoreTerm { pid } => inner.processes.procs.contains_key(pid),
        Decision::ClockJump { .. } => true,
    }
}

fn apply<'w>(world: &'w World, futures: &mut [Option<ActorFuture<'w>>], decision: &Decision) {
    match decision {
        Decision::Run { actor, fault } => poll_actor(world, futures, *actor, *fault),
        Decision::Crash { actor, landing } => {
            let mut inner = world.inner.borrow_mut();
            if inner.actors[*actor].kind == ActorKind::Service {
                world.crash_service(&mut inner, *landing);
            } else {
                inner.actors[*actor].killed = true;
                inner.timer_waits.stop_request_expiry = true;
                world.release_actor(&mut inner, *actor, *landing);
            }
        }
        Decision::ReusePid { pid } => {
            world.start_process(&mut world.inner.borrow_mut(), Some(*pid), ProcKind::Foreign, None);
        }
        Decision::ClockJump { by_ms } => world.inner.borrow_mut().clock.now_ms += *by_ms as i64,
        Decision::Stall { pid, for_ms } => {
            let mut inner = world.inner.borrow_mut();
            let until = inner.clock.now_ms + *for_ms as i64;
            inner.processes.procs.get_mut(pid).expect("validated").stalled_until_ms = until;
        }
        Decision::IgnoreTerm { pid } => {
            world.inner.borrow_mut().processes.procs.get_mut(pid).expect("validated").ignore_term = true
        }
    }
}

fn poll_actor<'w>(
    world: &'w World,
    futures: &mut [Option<ActorFuture<'w>>],
    actor: ActorId,
    fault: Option<StoreFault>,
) {
    {
        let mut inner = world.inner.borrow_mut();
        inner.current = actor;
        inner.store.poll_fault = fault;
    }
    let future = futures[actor].as_mut().expect("runnable actors have a future");
    let mut context = Context::from_waker(Waker::noop());
    let done = matches!(future.as_mut().poll(&mut context), Poll::Ready(()));
    let mut inner = world.inner.borrow_mut();
    inner.store.poll_fault = None;
    if done {
        inner.actors[actor].finished = true;
        futures[actor] = None;
        debug_assert!(inner.store.lock != Some(actor), "a finished actor holds no lock");
    }
}

fn after_step(world: &World, decision: &Decision, call: &str, options: &RunOptions, report: &mut RunReport) {
    let mut inner = world.inner.borrow_mut();
    if options.hash_steps {
        report.step_hashes.push(state_hash(&inner));
    }
    if !options.record_timeline {
        return;
    }
    let notes = std::mem::take(&mut inner.notes);
    let (actor, kind, call, fault) = match decision {
        Decision::Run { actor, fault } => {
            let slot = &inner.actors[*actor];
            (Some(slot.name.clone()), Some(slot.kind), call.to_string(), fault.map(|f| format!("store fault: {f:?}")))
        }
        Decision::Crash { actor, landing } => {
            let slot = &inner.actors[*actor];
            (
                Some(slot.name.clone()),
                Some(slot.kind),
                "CRASH".into(),
                Some(format!("crash (write in flight: {landing:?})")),
            )
        }
        other => (None, None, format!("{other:?}"), Some(format!("{other:?}"))),
    };
    let record = StepRecord {
        step: report.trace.len(),
        tick_ms: inner.clock.now_ms - EPOCH_START_MS,
        actor,
        kind,
        call,
        fault,
        notes,
    };
    report.timeline.push(record.line());
    report.steps.push(record);
}

/// One step of a run recorded with a timeline: who ran, at which port call, with which fault,
/// and what it changed (`notes`: commits, events, results).
#[derive(Clone, Debug)]
pub struct StepRecord {
    pub step: usize,
    pub tick_ms: i64,
    /// The actor that ran or crashed; `None` for a fault on the world (pid reuse, clock jump,
    /// stall, TERM ignored).
    pub actor: Option<String>,
    pub kind: Option<ActorKind>,
    /// The port call it ran (`CRASH`, or the fault, when it did not run one).
    pub call: String,
    pub fault: Option<String>,
    pub notes: Vec<String>,
}

impl StepRecord {
    /// The timeline line: `#<step> <tick>  <actor> <call> [fault]  <notes>`.
    pub fn line(&self) -> String {
        let (step, tick, notes) = (self.step, format_tick(self.tick_ms), self.notes.join("; "));
        match (&self.actor, self.call.as_str(), &self.fault) {
            (Some(name), "CRASH", Some(fault)) => {
                let landing = fault.trim_start_matches("crash ");
                format!("#{step:<4} {tick:>8}  {name:<36} CRASH {landing}  {notes}")
            }
            (Some(name), call, fault) => {
                let fault = fault.as_ref().map(|f| format!(" [{f}]")).unwrap_or_default();
                format!("#{step:<4} {tick:>8}  {name:<36} {call}{fault}  {notes}")
            }
            (None, call, _) => format!("#{step:<4} {tick:>8}  {:<36} {call}  {notes}", "FAULT"),
        }
    }
}

pub fn format_tick(tick_ms: i64) -> String {
    format!("{}.{:03}s", tick_ms / 1000, tick_ms % 1000)
}

/// The kind of fault a decision injects, if it injects one.
fn fault_kind(world: &World, decision: &Decision) -> Option<FaultKind> {
    match decision {
        Decision::Run { fault: None, .. } => None,
        Decision::Run { fault: Some(StoreFault::Slow), .. } => Some(FaultKind::StoreSlow),
        Decision::Run { fault: Some(StoreFault::Fail), .. } => Some(FaultKind::StoreFail),
        Decision::Crash { actor, .. } => Some(match world.inner.borrow().actors[*actor].kind {
            ActorKind::Service => FaultKind::CrashService,
            _ => FaultKind::CrashCli,
        }),
        Decision::ReusePid { .. } => Some(FaultKind::PidReuse),
        Decision::ClockJump { .. } => Some(FaultKind::ClockJump),
        Decision::Stall { .. } => Some(FaultKind::HeartbeatStall),
        Decision::IgnoreTerm { .. } => Some(FaultKind::SigtermIgnored),
    }
}

fn end_checks(world: &World, step: usize, injected: &BTreeSet<FaultKind>, end_ms: i64) -> Option<Failure> {
    let inner = world.inner.borrow();
    debug_assert!(inner.clock.now_ms >= end_ms || quiescent_inner(world, &inner), "end checks run at the end");
    let committed = &inner.store.committed;
    let end = checks::EndView {
        processes: &inner.processes,
        committed,
        now_ms: inner.clock.now_ms,
        retried_agents: &inner.retried_agents,
        initial: &world.initial,
        settings: &world.settings,
        service_runs: world.scenario.service.running,
    };
    let mut found = checks::at_end(&end);
    found.extend(checks::steps_never_fired(&inner.clock, &inner.steps_fired, &world.scenario.steps, injected));
    let always = world.scenario.expect_always.iter().filter(|expectation| expectation.applies(injected));
    found.extend(checks::expectations(committed, always));
    if injected.is_empty() {
        found.extend(checks::expectations(committed, &world.scenario.expect_if_no_faults));
    }
    let violation = found.into_iter().next()?;
    drop(inner);
    Some(failure_at(world, step.saturating_sub(1), violation.invariant, violation.detail))
}
