//! The seeded decision source: which runnable actor runs next, drawn uniformly (a random
//! walk) or by PCT, and now and then a fault instead (`crate::faults`). A seed gives the same
//! decisions every time.

use crate::decision::Decision;
use crate::faults;
use crate::scenario::{FaultKind, SchedulerKind};
use crate::world::{ActorId, World};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// PCT's estimate of a run's length in steps, over which its priority change points spread.
const PCT_STEPS_ESTIMATE: u64 = 400;

pub struct Seeded {
    rng: ChaCha8Rng,
    pct: Option<Pct>,
    /// Fault kinds that may be injected in the safety phase, and how often.
    faults: Vec<FaultKind>,
    fault_rate: f64,
}

impl Seeded {
    pub fn new(seed: u64, scheduler: SchedulerKind, faults: Vec<FaultKind>, fault_rate: f64) -> Seeded {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let pct = match scheduler {
            SchedulerKind::Random => None,
            SchedulerKind::Pct { depth } => {
                let change_points = (1..depth).map(|_| rng.gen_range(0..PCT_STEPS_ESTIMATE)).collect();
                Some(Pct { priorities: BTreeMap::new(), change_points, steps: 0 })
            }
        };
        Seeded { rng, pct, faults, fault_rate }
    }

    /// The next decision; `faults_on`: a fault may be injected now.
    pub fn next(&mut self, world: &World, runnable: &[ActorId], faults_on: bool) -> Decision {
        let rng = &mut self.rng;
        let actor = match &mut self.pct {
            None => runnable[rng.gen_range(0..runnable.len())],
            Some(pct) => pct.choose(rng, runnable),
        };
        if faults_on && !self.faults.is_empty() && rng.gen_bool(self.fault_rate) {
            let kind = self.faults[rng.gen_range(0..self.faults.len())];
            if let Some(fault) = faults::make_fault(world, rng, kind, actor) {
                return fault;
            }
        }
        Decision::Run { actor, fault: None }
    }
}

/// Probabilistic concurrency testing: the runnable actor with the highest priority runs; at
/// `depth - 1` random steps the running actor drops below every other.
struct Pct {
    priorities: BTreeMap<ActorId, u64>,
    change_points: Vec<u64>,
    steps: u64,
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
