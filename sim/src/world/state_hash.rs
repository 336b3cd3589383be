//! A hash of everything a step can change, for the determinism self-check (`hash_steps`: two
//! runs of one seed must hash alike at every step).

use super::Inner;
use std::hash::{Hash, Hasher};

pub fn state_hash(inner: &Inner) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    inner.clock.now_ms.hash(&mut hasher);
    inner.store.commits.hash(&mut hasher);
    inner.store.committed.graph.render().hash(&mut hasher);
    inner.store.committed.registry.render().hash(&mut hasher);
    for proc in inner.processes.procs.values() {
        (proc.pid, proc.start_ticks, proc.ignore_term).hash(&mut hasher);
    }
    for slot in &inner.actors {
        (slot.finished, slot.killed, slot.call, format!("{:?}", slot.wait)).hash(&mut hasher);
    }
    hasher.finish()
}
