//! Where a run's decisions come from, one before each step: the seeded generator
//! ([`random`]: a uniform random walk or PCT, with faults), a trace being replayed, or a
//! [`Chooser`] outside the executor (the explorer of `wg-sim check`, `crate::explore`).

pub mod random;

use crate::decision::Decision;
use crate::scenario::FaultKind;
use crate::world::{ActorId, ActorKind, World};
use std::collections::BTreeSet;

/// A decision source outside the executor: the explorer of `wg-sim check` (`crate::explore`).
/// Asked before every step; `None` ends the run there, without end checks
/// (`RunReport::cut_short`).
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
    /// The executor would allow a fault now (safety phase, fewer than `executor::FAULTS_MAX`
    /// fired).
    pub faults_on: bool,
    /// Where the current phase ends (virtual time): part of the state, as it bounds the run.
    pub end_ms: i64,
    /// The kinds of faults injected so far (expectations depend on them).
    pub fault_kinds: &'a BTreeSet<FaultKind>,
}

/// Where decisions come from.
// One per run, never moved around: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Source<'c> {
    Seeded(random::Seeded),
    Replay { trace: Vec<Decision>, position: usize },
    Chosen(&'c mut dyn Chooser),
}

/// Where a run is in its phases, for the decision source.
#[derive(Clone, Copy)]
pub struct Phase {
    pub faults_on: bool,
    pub end_ms: i64,
    pub safety_end_ms: i64,
}

/// What the source says before a step.
pub enum Next {
    Step(Decision),
    /// A replayed or chosen decision could not be applied now (an actor that cannot run, a
    /// pid that is not free): the run ends, invalid.
    Invalid,
    /// The chooser ended the run here.
    CutShort,
}

impl Source<'_> {
    /// The next decision; `runnable` is never empty.
    pub fn next(
        &mut self,
        world: &World,
        runnable: &[ActorId],
        phase: Phase,
        fault_kinds: &BTreeSet<FaultKind>,
    ) -> Next {
        let Phase { faults_on, end_ms, safety_end_ms } = phase;
        match self {
            Source::Chosen(chooser) => {
                let safety = world.now_ms() < safety_end_ms;
                let step = StepView { world, runnable, safety, faults_on, end_ms, fault_kinds };
                match chooser.choose(&step) {
                    Some(decision) if !valid(world, runnable, &decision) => Next::Invalid,
                    Some(decision) => Next::Step(decision),
                    None => Next::CutShort,
                }
            }
            Source::Replay { trace, position } => {
                // Past the trace's end, a fixed default (the oldest runnable actor, no faults)
                // runs the world to its end, so a shortened trace still ends where the run ends.
                let Some(decision) = trace.get(*position).cloned() else {
                    return Next::Step(Decision::Run { actor: runnable[0], fault: None });
                };
                *position += 1;
                if !valid(world, runnable, &decision) {
                    return Next::Invalid;
                }
                Next::Step(decision)
            }
            Source::Seeded(seeded) => Next::Step(seeded.next(world, runnable, faults_on)),
        }
    }
}

/// Whether a replayed or chosen decision can be applied now.
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
