//! The alternatives at one step of a schedule, in a fixed order, with what each one costs
//! against the bounds.
//!
//! The default (index 0) is non-preemptive: the actor that ran last goes on if it can, else the
//! lowest runnable id. A switch away from an actor that could have gone on is a preemption
//! (bounded by `--preemptions`); a switch when it cannot (it waits, finished or died) is free, as
//! in CHESS. A fault (bounded by `--faults`) is any decision `faults::fault_choices` offers,
//! less those that cannot differ from another one offered (see [`distinct`]). A crash is an
//! event, not a switch: it costs a fault, never a preemption.

use crate::decision::Decision;
use crate::faults::fault_choices;
use crate::scenario::FaultKind;
use crate::schedule::StepView;
use crate::world::store::Landing;
use crate::world::{ActorId, ActorKind};

/// What choosing an alternative spends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cost {
    pub preempts: bool,
    pub is_fault: bool,
}

/// Fault kinds tied to the actor about to run; the others act on the world (a pid, the clock).
fn acts_on_actor(kind: FaultKind) -> bool {
    matches!(kind, FaultKind::CrashCli | FaultKind::CrashService | FaultKind::StoreSlow | FaultKind::StoreFail)
}

/// The clock jumps tried: the smallest and the largest the seeded source can draw. Trying all
/// 29 at every step would multiply the schedules by 29 for one fault parameter; the two ends
/// are the ones that do or do not pass a timer's deadline. A sampling, stated in the docs.
fn sampled(decision: &Decision) -> bool {
    match decision {
        Decision::ClockJump { by_ms } => *by_ms == 1_000 || *by_ms == 29_000,
        _ => true,
    }
}

/// Whether a fault offered for `actor` can lead anywhere the ones already kept do not:
/// - a crash's landing matters only when a write is in flight (`World::release_actor`);
/// - a service crash kills every service actor (`World::crash_service`), whichever of them it
///   is offered for: one is enough.
fn distinct(step: &StepView<'_>, decision: &Decision, kept: &[(Decision, Cost)]) -> bool {
    let inner = step.world.inner.borrow();
    let Decision::Crash { actor, landing } = decision else { return true };
    if *landing == Landing::Whole && inner.store.pending_write.is_none() {
        return false;
    }
    let is_service = |actor: ActorId| inner.actors[actor].kind == ActorKind::Service;
    !(is_service(*actor)
        && kept.iter().any(|(other, _)| {
            matches!(other, Decision::Crash { actor: other, landing: same } if is_service(*other) && same == landing)
        }))
}

/// Every alternative at this step; the first is the default. `faults` are the kinds allowed,
/// already empty when the fault budget is spent or the phase allows none.
pub fn alternatives(step: &StepView<'_>, last: Option<ActorId>, faults: &[FaultKind]) -> Vec<(Decision, Cost)> {
    let runnable = step.runnable;
    let can_go_on = last.filter(|actor| runnable.contains(actor));
    let first = can_go_on.unwrap_or(runnable[0]);
    let order = std::iter::once(first).chain(runnable.iter().copied().filter(|&actor| actor != first));
    let preempts = |actor: ActorId| can_go_on.is_some_and(|last| last != actor);
    let mut found: Vec<(Decision, Cost)> = Vec::new();
    for actor in order.clone() {
        found.push((Decision::Run { actor, fault: None }, Cost { preempts: preempts(actor), is_fault: false }));
    }
    for actor in order {
        for &kind in faults.iter().filter(|&&kind| acts_on_actor(kind)) {
            for decision in fault_choices(step.world, kind, actor) {
                if distinct(step, &decision, &found) {
                    let preempts = !matches!(decision, Decision::Crash { .. }) && preempts(actor);
                    found.push((decision, Cost { preempts, is_fault: true }));
                }
            }
        }
    }
    for &kind in faults.iter().filter(|&&kind| !acts_on_actor(kind)) {
        for decision in fault_choices(step.world, kind, first).into_iter().filter(sampled) {
            found.push((decision, Cost { preempts: false, is_fault: true }));
        }
    }
    found
}
