//! `wg-sim check`'s explorer: its state hashing prunes without losing a final state, and it
//! completes a scenario within small bounds with no violation.
//! Run: cargo test -p wg-sim --test explore

mod common;

use common::load;
use wg_sim::executor::RunOptions;
use wg_sim::explore::{self, Bounds, Exploration};

fn explore(name: &str, preemptions: u32, faults: u32, prune: bool) -> Exploration {
    let scenario = load(name);
    let bounds = Bounds { preemptions, faults, deadline: None, prune };
    explore::explore(&scenario, &bounds, &RunOptions::for_scenario(&scenario, 0), true)
}

#[test]
fn pruning_reaches_the_same_final_states_with_fewer_schedules() {
    for (name, preemptions, faults) in [("retry_while_done", 1, 0), ("two_retries", 1, 0), ("retry_while_done", 0, 1)] {
        let full = explore(name, preemptions, faults, false);
        let pruned = explore(name, preemptions, faults, true);
        assert!(full.failure.is_none() && pruned.failure.is_none(), "{name}: no violation either way");
        assert_eq!(full.pruned, 0, "{name}: nothing is cut with pruning off");
        assert!(pruned.pruned > 0, "{name}: pruning cut some schedule");
        assert!(
            pruned.explored + pruned.pruned < full.explored,
            "{name}: pruning runs fewer schedules ({} + {} cut vs {})",
            pruned.explored,
            pruned.pruned,
            full.explored
        );
        assert!(full.finals.len() > 1, "{name}: the schedules end in more than one state");
        assert_eq!(full.finals, pruned.finals, "{name}: pruning reaches the same final states");
        println!(
            "{name} ({preemptions} preemptions, {faults} faults): {} schedules without pruning, {} run + {} cut with it, {} final states",
            full.explored,
            pruned.explored,
            pruned.pruned,
            full.finals.len()
        );
    }
}

#[test]
fn more_preemptions_explore_more_schedules() {
    let none = explore("two_retries", 0, 0, true);
    let one = explore("two_retries", 1, 0, true);
    assert!(none.explored >= 1 && one.explored > none.explored, "{} vs {}", none.explored, one.explored);
    assert!(!one.incomplete && one.failure.is_none());
    assert!(one.states > none.states);
}
