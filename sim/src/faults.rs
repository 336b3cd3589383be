//! Faults: which ones can be injected at a step ([`fault_choices`], offered to the seeded source
//! and to the explorer), which kind a decision injects ([`fault_kind`]), and what injecting one
//! does to the world ([`inject`]).

use crate::decision::Decision;
use crate::scenario::FaultKind;
use crate::world::processes::{ProcKind, PID_SLOTS};
use crate::world::store::{Landing, StoreFault};
use crate::world::{ActorId, ActorKind, World};
use rand::Rng;

/// One fault of `kind` for the seeded source, or none if none can be injected now.
pub fn make_fault(world: &World, rng: &mut impl Rng, kind: FaultKind, actor: ActorId) -> Option<Decision> {
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
    let live_agents =
        || inner.processes.procs.values().filter(|p| matches!(p.kind, ProcKind::Agent { .. })).map(|p| p.pid);
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

/// The kind of fault a decision injects, if it injects one.
pub fn fault_kind(world: &World, decision: &Decision) -> Option<FaultKind> {
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

/// Applies a fault on the world or an actor; a `Run` decision (even with a store fault, which
/// acts at the actor's poll) is the executor's.
pub fn inject(world: &World, decision: &Decision) {
    match decision {
        Decision::Run { .. } => unreachable!("a run is polled, not injected"),
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
