//! State hashing (as TLC does): a schedule that reaches a state already explored, with no more
//! budget left than then, is cut there, since everything after it was explored from that state.
//!
//! Soundness rests on the key determining everything that happens next:
//!
//! - The world (`Inner`): clock, process table, timers, store (committed and in flight), lock,
//!   actors to start, violations, counters the ports read. Hashed whole, through its `Debug`
//!   form, but for caches and the timeline (`scratch`, `version`, `notes`, `recording`,
//!   `current`, `poll_fault`, which is empty between steps).
//! - Each actor's position. Its future cannot be hashed, but it is a deterministic function of
//!   its start (its spec and id) and of what it observed at each poll: a poll reads only the
//!   world and the actor's own slot. So each actor carries a *view chain*, a hash folded at each
//!   of its polls over the world's hash then, its slot then and the decision (a store fault).
//!   Two schedules with equal chains fed every actor the same inputs, so its future is the same.
//!   This is conservative: two orders of independent steps that leave the world the same merge
//!   again (partial-order reduction for free); two that let an actor observe different worlds
//!   never do, even if it ignored the difference.
//! - The executor around it: the phase's end (`end_ms`), the fault kinds injected (the
//!   expectations depend on them), and the actor that ran last (the next preemption's cost).
//!
//! Hashes are 64 bits (as TLC's fingerprints): a collision could hide a schedule, with a chance
//! of about n²/2⁶⁴ for n states.

use crate::decision::Decision;
use crate::schedule::StepView;
use crate::world::{ActorId, Inner};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};

/// A fast 64-bit hasher (the multiply-rotate of rustc's FxHash, over 8-byte words): the
/// explorer hashes the world at every new step, and SipHash cost more than the step itself.
/// Not keyed: nothing here is adversarial.
#[derive(Default)]
pub struct FxHasher(u64);

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        let mut last = [0u8; 8];
        last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        // The length keeps "ab" + "" apart from "a" + "b".
        self.add(u64::from_le_bytes(last) ^ ((bytes.len() as u64) << 56));
    }

    fn write_u64(&mut self, value: u64) {
        self.add(value);
    }

    fn finish(&self) -> u64 {
        // One more round spreads the last word's bits.
        self.0.rotate_left(5).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95)
    }
}

/// Feeds `Debug` output to a hasher without building the string.
struct HashWriter<'h>(&'h mut FxHasher);

impl std::fmt::Write for HashWriter<'_> {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        self.0.write(text.as_bytes());
        Ok(())
    }
}

fn hash_debug(hasher: &mut FxHasher, value: &impl std::fmt::Debug) {
    let _ = write!(HashWriter(hasher), "{value:?}");
}

/// The committed store's hash, kept while no commit happens: within one run the store changes
/// only by a commit, which counts itself (`StoreState::commits`). Hashing the whole store at every
/// step would cost more than the step.
#[derive(Default)]
pub struct StoreHash {
    at_commits: Option<(u64, u64)>,
}

impl StoreHash {
    fn of(&mut self, inner: &Inner) -> u64 {
        match self.at_commits {
            Some((commits, hash)) if commits == inner.store.commits => hash,
            _ => {
                let mut hasher = FxHasher::default();
                hash_debug(&mut hasher, &inner.store.committed);
                let hash = hasher.finish();
                self.at_commits = Some((inner.store.commits, hash));
                hash
            }
        }
    }
}

/// The world an actor's poll can read: everything in `Inner` but caches, the timeline and the
/// actors' slots (an actor reads only its own, folded into its chain separately). `store` must
/// be used within one run only.
pub fn world_hash(inner: &Inner, store: &mut StoreHash) -> u64 {
    let mut hasher = FxHasher::default();
    let (clock, processes, store_state) = (&inner.clock, &inner.processes, &inner.store);
    clock.now_ms.hash(&mut hasher);
    store.of(inner).hash(&mut hasher);
    hash_debug(&mut hasher, &processes.procs);
    hash_debug(&mut hasher, &processes.exited);
    hash_debug(&mut hasher, &processes.agent_exits_ms);
    hash_debug(&mut hasher, &processes.freed_pids);
    let counters =
        (processes.next_pid, processes.last_ticks, clock.timer_seq, store_state.graph_lines, store_state.commits);
    counters.hash(&mut hasher);
    hash_debug(&mut hasher, &clock.timers);
    hash_debug(&mut hasher, &store_state.pending_write);
    hash_debug(&mut hasher, &store_state.lock);
    hash_debug(&mut hasher, &inner.new_actors);
    hash_debug(&mut hasher, &inner.violations);
    hash_debug(&mut hasher, &processes.spawns_per_task);
    hash_debug(&mut hasher, &inner.steps_fired);
    (inner.service_generation, inner.service_up).hash(&mut hasher);
    hash_debug(&mut hasher, &inner.retried_agents);
    hash_debug(&mut hasher, &inner.timer_waits);
    hasher.finish()
}

/// Each actor's view chain (see the module comment), by actor id.
#[derive(Clone, Default)]
pub struct Views {
    chains: Vec<u64>,
}

impl Views {
    /// Folds what `decision`'s actor observes now (the world `world`, its own slot) into its chain.
    pub fn observe(&mut self, inner: &Inner, world: u64, decision: &Decision) {
        let actor = match decision {
            Decision::Run { actor, .. } | Decision::Crash { actor, .. } => *actor,
            // Faults on the world change the world hash, which every later observation sees.
            _ => return,
        };
        if self.chains.len() <= actor {
            self.chains.resize(actor + 1, 0);
        }
        let mut hasher = FxHasher::default();
        self.chains[actor].hash(&mut hasher);
        world.hash(&mut hasher);
        hash_debug(&mut hasher, &inner.actors[actor]);
        hash_debug(&mut hasher, decision);
        self.chains[actor] = hasher.finish();
    }

    /// The key of the whole state before a step.
    pub fn state_key(&self, step: &StepView<'_>, world: u64, last: Option<ActorId>) -> u64 {
        let inner = step.world.inner.borrow();
        let mut hasher = FxHasher::default();
        world.hash(&mut hasher);
        for (id, slot) in inner.actors.iter().enumerate() {
            self.chains.get(id).copied().unwrap_or(0).hash(&mut hasher);
            hash_debug(&mut hasher, slot);
        }
        (step.end_ms, last).hash(&mut hasher);
        hash_debug(&mut hasher, step.fault_kinds);
        hasher.finish()
    }
}

/// States explored, each with the budgets (preemptions, faults) already spent when it was: a
/// state reached again having spent at least as much of both has nothing new to offer.
#[derive(Default)]
pub struct Visited {
    spent: HashMap<u64, Vec<(u32, u32)>>,
}

impl Visited {
    /// True if `key` was explored with no more spent; else records it and returns false.
    pub fn seen_or_insert(&mut self, key: u64, preemptions: u32, faults: u32) -> bool {
        let spent = self.spent.entry(key).or_default();
        if spent.iter().any(|&(p, f)| p <= preemptions && f <= faults) {
            return true;
        }
        spent.retain(|&(p, f)| !(preemptions <= p && faults <= f));
        spent.push((preemptions, faults));
        false
    }

    pub fn len(&self) -> usize {
        self.spent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spent.is_empty()
    }
}
