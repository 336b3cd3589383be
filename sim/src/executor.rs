//! The single-threaded executor: one step polls one actor chosen by the scheduler (or applies
//! one fault). Virtual time moves only when no actor can run. The run has a safety phase (faults
//! on) and a liveness phase (faults off) at whose end L1/L2 and the expectations are checked.

use crate::actors::{self, ActorFuture};
use crate::checks::{self, Initial};
use crate::faults;
use crate::quiescence::{quiescent, quiescent_inner};
use crate::scenario::{FaultKind, Scenario, SchedulerKind};
use crate::schedule::random::Seeded;
use crate::schedule::{Chooser, Next, Phase, Source};
use crate::timeline::StepRecord;
use crate::world::boot::{self, settings_for};
use crate::world::clock::EPOCH_START_MS;
use crate::world::state_hash::state_hash;
use crate::world::store::{Landing, StoreFault};
use crate::world::{ActorId, ActorSlot, Inner, TimerWaits, Wait, World};
use std::collections::{BTreeMap, BTreeSet};
use std::task::{Context, Poll, Waker};

/// A run's decisions are part of its report (`RunReport::trace`); the explorer chooses them.
pub use crate::decision::Decision;

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
    /// `crate::quiescence`); only for checking that ending early changes no outcome.
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

pub use crate::scenario::FAULTS_MAX;

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

fn new_world(scenario: &Scenario, options: &RunOptions) -> World {
    #[allow(unused_mut)]
    let mut settings = settings_for(scenario);
    #[cfg(feature = "planted-bugs")]
    {
        settings.planted_bug = options.planted_bug;
    }
    boot::new_world(scenario, settings, options.seed, options.record_timeline)
}

/// Runs one scenario with one seed (or one trace).
pub fn run(scenario: &Scenario, options: &RunOptions) -> RunReport {
    let source = match &options.replay {
        Some(trace) => Source::Replay { trace: trace.clone(), position: 0 },
        None => {
            let seeded = Seeded::new(options.seed, options.scheduler, options.faults.clone(), options.fault_rate);
            Source::Seeded(seeded)
        }
    };
    run_from(scenario, options, source)
}

/// Runs one scenario with the decisions of `chooser` (the seed of `options` still decides exit
/// delays and crash landings not chosen by the schedule).
pub fn run_chosen(scenario: &Scenario, options: &RunOptions, chooser: &mut dyn Chooser) -> RunReport {
    run_from(scenario, options, Source::Chosen(chooser))
}

/// Room for the decisions of a typical run (tens of steps; a quarter as many commits, an
/// eighth as many actors), so the run's vectors do not grow step by step from empty.
const RUN_CAPACITY: usize = 128;

fn run_from(scenario: &Scenario, options: &RunOptions, mut source: Source<'_>) -> RunReport {
    let world = new_world(scenario, options);
    boot::boot(&world);
    // With `options.coverage`: every commit, in order (`crate::coverage`).
    let mut commit_log = options.coverage.then(|| Vec::with_capacity(RUN_CAPACITY / 4));
    let mut futures: Vec<Option<ActorFuture<'_>>> = Vec::with_capacity(RUN_CAPACITY / 8);
    let mut report = RunReport { trace: Vec::with_capacity(RUN_CAPACITY), ..RunReport::default() };
    let safety_end_ms = EPOCH_START_MS + scenario.sim.safety_ms as i64;
    // The liveness phase starts when the safety phase is over (a clock jump may overshoot it)
    // and lasts its bound from there.
    let mut liveness_start_ms: Option<i64> = None;
    let mut end_ms = safety_end_ms;
    let mut checked_version = u64::MAX;
    // Commits counted when S6 last looked at the committed state.
    let mut checked_commits = u64::MAX;
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
        let decision = match source.next(&world, runnable, phase, &report.fault_kinds) {
            Next::Step(decision) => decision,
            Next::Invalid => {
                report.invalid = true;
                break;
            }
            Next::CutShort => {
                report.cut_short = true;
                break;
            }
        };
        report.faults_fired += u32::from(decision.is_fault());
        report.fault_kinds.extend(faults::fault_kind(&world, &decision));

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
            let committed_changed = inner.store.commits != checked_commits;
            checked_commits = inner.store.commits;
            let committed = committed_changed.then_some(&*inner.store.committed);
            let violations = checks::after_step(&inner.processes, committed);
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
            log.push(crate::coverage::transition(&inner.actors[commit.actor], commit));
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

fn apply<'w>(world: &'w World, futures: &mut [Option<ActorFuture<'w>>], decision: &Decision) {
    match decision {
        Decision::Run { actor, fault } => poll_actor(world, futures, *actor, *fault),
        fault => faults::inject(world, fault),
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
        assert!(inner.store.lock != Some(actor), "a finished actor holds no lock");
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
    let record = StepRecord::new(&inner, report.trace.len(), decision, call, notes);
    report.timeline.push(record.line());
    report.steps.push(record);
}

fn end_checks(world: &World, step: usize, injected: &BTreeSet<FaultKind>, end_ms: i64) -> Option<Failure> {
    let inner = world.inner.borrow();
    assert!(inner.clock.now_ms >= end_ms || quiescent_inner(world, &inner), "end checks run at the end");
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
