//! `wg-sim check`: every schedule of a scenario within bounds, on the real core (stateless model
//! checking with preemption bounding, as CHESS does; docs/simulation-check.md).
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

use crate::executor::{self, Chooser, Decision, RunOptions, RunReport, StepView};
use crate::runner::{self, Found};
use crate::scenario::{FaultKind, Scenario};
use crate::world::ActorId;
use choices::Cost;
use state::{Views, Visited};
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

/// One step of a schedule as it ran: the cost of each alternative, the one taken, and what was
/// spent before it.
struct Point {
    costs: Vec<Cost>,
    chosen: usize,
    preemptions: u32,
    faults: u32,
}

/// The explorer's decision source for one schedule.
struct Guided<'a> {
    prefix: &'a [usize],
    points: Vec<Point>,
    last: Option<ActorId>,
    preemptions: u32,
    faults: u32,
    bounds: &'a Bounds,
    kinds: &'a [FaultKind],
    visited: &'a mut Visited,
    views: Views,
}

impl Chooser for Guided<'_> {
    fn choose(&mut self, step: &StepView<'_>) -> Option<Decision> {
        let world = state::world_hash(&step.world.inner.borrow());
        let depth = self.points.len();
        // Steps of the prefix reached states the earlier schedules already recorded.
        if self.bounds.prune && depth >= self.prefix.len() {
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
        let chosen = self.prefix.get(depth).copied().unwrap_or(0);
        assert!(chosen < alternatives.len(), "a replayed prefix leads to the same steps (the executor is deterministic)");
        let costs = alternatives.iter().map(|(_, cost)| *cost).collect();
        self.points.push(Point { costs, chosen, preemptions: self.preemptions, faults: self.faults });
        let (decision, cost) = alternatives.swap_remove(chosen);
        self.preemptions += u32::from(cost.preempts);
        self.faults += u32::from(cost.is_fault);
        if let Decision::Run { actor, .. } | Decision::Crash { actor, .. } = &decision {
            self.last = Some(*actor);
        }
        self.views.observe(&step.world.inner.borrow(), world, &decision);
        Some(decision)
    }
}

/// The next schedule in depth-first order: the deepest step with an untried alternative that
/// fits the bounds, taken; `None` when every schedule was tried.
fn next_prefix(points: &[Point], bounds: &Bounds) -> Option<Vec<usize>> {
    for depth in (0..points.len()).rev() {
        let point = &points[depth];
        let fits = |cost: &Cost| {
            point.preemptions + u32::from(cost.preempts) <= bounds.preemptions
                && point.faults + u32::from(cost.is_fault) <= bounds.faults
        };
        if let Some(next) = (point.chosen + 1..point.costs.len()).find(|&index| fits(&point.costs[index])) {
            let mut prefix: Vec<usize> = points[..depth].iter().map(|point| point.chosen).collect();
            prefix.push(next);
            return Some(prefix);
        }
    }
    None
}

/// Explores every schedule of `scenario` within `bounds`; `options` gives the seed (which
/// still decides exit delays) and, in tests, a planted bug. Stops at the first failure, which it
/// shrinks as `fuzz` does. With `hash_finals`, collects the final states (for the soundness test).
pub fn explore(scenario: &Scenario, bounds: &Bounds, options: &RunOptions, hash_finals: bool) -> Exploration {
    let started = Instant::now();
    let options = RunOptions { hash_steps: hash_finals, replay: None, record_timeline: false, ..options.clone() };
    let mut visited = Visited::default();
    let mut outcome = Exploration::default();
    let mut prefix: Vec<usize> = Vec::new();
    loop {
        if bounds.deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            outcome.incomplete = true;
            break;
        }
        let mut guided = Guided {
            prefix: &prefix,
            points: Vec::new(),
            last: None,
            preemptions: 0,
            faults: 0,
            bounds,
            kinds: &options.faults,
            visited: &mut visited,
            views: Views::default(),
        };
        let report = executor::run_chosen(scenario, &options, &mut guided);
        let points = guided.points;
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
        match next_prefix(&points, bounds) {
            Some(next) => prefix = next,
            None => break,
        }
    }
    outcome.states = visited.len();
    outcome.elapsed = started.elapsed();
    outcome
}

/// A schedule's end: its files and its verdict.
fn final_hash(report: &RunReport) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    report.final_files.hash(&mut hasher);
    report.failure.as_ref().map(|failure| &failure.checker).hash(&mut hasher);
    hasher.finish()
}
