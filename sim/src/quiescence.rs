//! When a run may end early: the world is settled for good, so the liveness phase's end checks
//! would see this very state at its bound.

use crate::checks;
use crate::world::{ActorKind, Inner, Wait, World};

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

pub fn quiescent_inner(world: &World, inner: &Inner) -> bool {
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
