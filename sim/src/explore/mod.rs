//! `wg-sim check`: every schedule of a scenario within bounds, on the real core (stateless model
//! checking with preemption bounding, as CHESS does; docs/simulation.md, Exhaustive checking).
//!
//! A schedule is the list of choices made at each step, as indices into that step's
//! [`choices::alternatives`]. Each schedule runs from the start in the ordinary executor, with
//! [`Guided`] as its decision source: it replays a prefix of choices, then takes the default
//! (index 0) at every later step, recording each step's alternatives. The next schedule changes
//! the deepest choice that has an untried alternative within the bounds (depth-first). Runs are
//! deterministic, so a prefix always leads to the same steps.
//!
//! The safety phase branches; the liveness phase runs the default schedule without faults (as
//! random mode runs it without faults), then L1/L2 and the expectations are checked. S1-S8 are
//! checked after every step by the executor, as in `run`.
//!
//! Reduction: state hashing ([`state`]), which the module comment there argues is sound.

pub mod choices;
pub mod report;
pub mod state;

use crate::decision::Decision;
use crate::executor::{self, RunOptions, RunReport};
use crate::runner::{self, Found};
use crate::scenario::{FaultKind, Scenario};
use crate::schedule::{Chooser, StepView};
use crate::world::ActorId;
use choices::Cost;
use state::{StoreHash, Views, Visited};
use std::time::{Duration, Instant};

/// The bounds of one exploration.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// Switches away from an actor that could have gone on, per schedule.
    pub preemptions: u32,
    /// Injected faults per schedule (the scenario's `[sim] faults` kinds).
    pub faults: u32,
    /// Stop after this long; the exploration is then incomplete.
    pub deadline: Option<Instant>,
    /// Cut schedules at states already explored (off only to test that it changes nothing).
    pub prune: bool,
}

/// What an exploration did.
#[derive(Debug, Default)]
pub struct Exploration {
    /// Schedules run to their end.
    pub explored: u64,
    /// Schedules cut at a state already explored.
    pub pruned: u64,
    /// States met (with pruning on).
    pub states: usize,
    /// The longest schedule, in steps.
    pub max_depth: usize,
    pub elapsed: Duration,
    /// The deadline stopped it before every schedule was tried.
    pub incomplete: bool,
    /// The first failing schedule, shrunk.
    pub failure: Option<Found>,
    /// With `hash_finals`: a hash of each schedule's final files and verdict.
    pub finals: std::collections::BTreeSet<u64>,
}

/// One step of the current schedule: its alternatives, the one taken, and what was spent and
/// seen before it (so the next schedule can replay up to here without hashing anything).
struct Point {
    alternatives: Vec<(Decision, Cost)>,
    chosen: usize,
    preemptions: u32,
    faults: u32,
    last: Option<ActorId>,
    views: Views,
}

/// The explorer's decision source for one schedule: replays the steps of `stack` (the last
/// schedule, its last step's choice changed), then takes defaults, pushing new steps.
struct Guided<'a> {
    stack: &'a mut Vec<Point>,
    /// Steps below this are replayed; the state before any later step is new.
    replayed: usize,
    depth: usize,
    last: Option<ActorId>,
    preemptions: u32,
    faults: u32,
    views: Views,
    store: StoreHash,
    /// The liveness phase began (its steps are not recorded: they have no alternatives).
    in_liveness: bool,
    bounds: &'a Bounds,
    kinds: &'a [FaultKind],
    visited: &'a mut Visited,
}

impl Guided<'_> {
    fn take(&mut self, decision: &Decision, cost: Cost) {
        self.preemptions += u32::from(cost.preempts);
        self.faults += u32::from(cost.is_fault);
        // A crash is an event, not a switch: the actor that ran last goes on if it still can.
        if let Decision::Run { actor, .. } = decision {
            self.last = Some(*actor);
        }
    }

    /// The step at `depth` of the last schedule, again; its views only if it is the changed one
    /// (the states before it were explored, and their views are saved).
    fn replay(&mut self, step: &StepView<'_>, depth: usize) -> Decision {
        let point = &self.stack[depth];
        let (decision, cost) = point.alternatives[point.chosen].clone();
        (self.last, self.preemptions, self.faults) = (point.last, point.preemptions, point.faults);
        if depth + 1 == self.replayed {
            self.views = point.views.clone();
            let world = state::world_hash(&step.world.inner.borrow(), &mut self.store);
            self.views.observe(&step.world.inner.borrow(), world, &decision);
        }
        self.take(&decision, cost);
        decision
    }
}

impl Chooser for Guided<'_> {
    fn choose(&mut self, step: &StepView<'_>) -> Option<Decision> {
        let depth = self.depth;
        self.depth += 1;
        if depth < self.replayed {
            return Some(self.replay(step, depth));
        }
        if self.in_liveness {
            // Past the first step of the liveness phase the run is the default schedule: its
            // states were checked for pruning once, at that first step.
            let (decision, cost) = choices::alternatives(step, self.last, &[]).swap_remove(0);
            self.take(&decision, cost);
            return Some(decision);
        }
        self.in_liveness = !step.safety;
        let world = state::world_hash(&step.world.inner.borrow(), &mut self.store);
        if self.bounds.prune {
            let key = self.views.state_key(step, world, self.last);
            if self.visited.seen_or_insert(key, self.preemptions, self.faults) {
                return None;
            }
        }
        let faults_left = step.safety && step.faults_on && self.faults < self.bounds.faults;
        let kinds = if faults_left { self.kinds } else { &[] };
        let mut alternatives = choices::alternatives(step, self.last, kinds);
        if !step.safety {
            // The liveness phase runs the default schedule.
            alternatives.truncate(1);
        }
        let (decision, cost) = alternatives[0].clone();
        self.stack.push(Point {
            alternatives,
            chosen: 0,
            preemptions: self.preemptions,
            faults: self.faults,
            last: self.last,
            views: self.views.clone(),
        });
        self.views.observe(&step.world.inner.borrow(), world, &decision);
        self.take(&decision, cost);
        Some(decision)
    }
}

/// Moves `stack` to the next schedule in depth-first order: the deepest step with an untried
/// alternative that fits the bounds takes it, the steps after it go. False when every schedule
/// was tried.
fn advance(stack: &mut Vec<Point>, bounds: &Bounds) -> bool {
    while let Some(point) = stack.last_mut() {
        let fits = |cost: &Cost| {
            point.preemptions + u32::from(cost.preempts) <= bounds.preemptions
                && point.faults + u32::from(cost.is_fault) <= bounds.faults
        };
        let untried = point.chosen + 1..point.alternatives.len();
        if let Some(next) = untried.into_iter().find(|&index| fits(&point.alternatives[index].1)) {
            point.chosen = next;
            return true;
        }
        stack.pop();
    }
    false
}

/// Explores every schedule of `scenario` within `bounds`; `options` gives the seed (which
/// still decides exit delays) and, in tests, a planted bug. Stops at the first failure, which it
/// shrinks as `fuzz` does. With `hash_finals`, collects the final states (for the soundness test).
pub fn explore(scenario: &Scenario, bounds: &Bounds, options: &RunOptions, hash_finals: bool) -> Exploration {
    let started = Instant::now();
    let options = RunOptions { hash_steps: hash_finals, replay: None, record_timeline: false, ..options.clone() };
    let mut visited = Visited::default();
    let mut outcome = Exploration::default();
    let mut stack: Vec<Point> = Vec::new();
    loop {
        if bounds.deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            outcome.incomplete = true;
            break;
        }
        let replayed = stack.len();
        let mut guided = Guided {
            stack: &mut stack,
            replayed,
            depth: 0,
            last: None,
            preemptions: 0,
            faults: 0,
            views: Views::default(),
            store: StoreHash::default(),
            in_liveness: false,
            bounds,
            kinds: &options.faults,
            visited: &mut visited,
        };
        let report = executor::run_chosen(scenario, &options, &mut guided);
        assert!(!report.invalid, "the explorer offers only decisions the executor can apply");
        outcome.max_depth = outcome.max_depth.max(report.trace.len());
        if report.cut_short {
            outcome.pruned += 1;
        } else {
            outcome.explored += 1;
            if hash_finals {
                outcome.finals.insert(final_hash(&report));
            }
        }
        if report.failure.is_some() {
            outcome.failure = Some(runner::shrink_failure(scenario, &options, report));
            break;
        }
        if !advance(&mut stack, bounds) {
            break;
        }
    }
    outcome.states = visited.len();
    outcome.elapsed = started.elapsed();
    outcome
}

/// A schedule's end: the executor's hash of the state after its last step (clock, store,
/// processes, actors), and its verdict.
fn final_hash(report: &RunReport) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    report.step_hashes.last().hash(&mut hasher);
    report.final_files.hash(&mut hasher);
    report.failure.as_ref().map(|failure| &failure.checker).hash(&mut hasher);
    hasher.finish()
}
