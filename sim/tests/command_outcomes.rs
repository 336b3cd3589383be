//! What a command reports (the outcome `wg` prints), read from the timeline of fault-free runs of
//! the scenarios: what a scenario's final state cannot show.

mod common;

use common::load;
use wg_sim::executor::{self, RunOptions};

/// The timelines of seeds `0..seeds` of scenario `name`, run without faults.
fn fault_free_timelines(name: &str, seeds: u64) -> Vec<(u64, String)> {
    let scenario = load(name);
    (0..seeds)
        .map(|seed| {
            let options =
                RunOptions { record_timeline: true, faults: Vec::new(), ..RunOptions::for_scenario(&scenario, seed) };
            let report = executor::run(&scenario, &options);
            assert_eq!(report.failure, None, "{name} seed {seed}");
            (seed, report.timeline.join("\n"))
        })
        .collect()
}

#[test]
fn a_second_retry_at_the_same_moment_finds_the_first_in_flight_and_leaves() {
    for (seed, timeline) in fault_free_timelines("two_retries", 20) {
        assert_eq!(timeline.matches("returned Ok(Restarted {").count(), 1, "seed {seed}:\n{timeline}");
        assert_eq!(timeline.matches("returned Ok(InFlight {").count(), 1, "seed {seed}:\n{timeline}");
    }
}

#[test]
fn kill_reports_an_escalation_only_when_sigterm_was_not_enough() {
    for (name, escalated) in [("kill_cooperative", false), ("kill_force", false), ("kill_ignoring_term", true)] {
        for (seed, timeline) in fault_free_timelines(name, 10) {
            let reported = format!("escalated: {escalated} }})");
            let killed = timeline.lines().find(|line| line.contains("returned Ok(Killed {"));
            assert!(killed.is_some_and(|line| line.contains(&reported)), "{name} seed {seed}:\n{timeline}");
        }
    }
}

#[test]
fn retry_says_an_open_task_is_open_and_refuses_a_done_one_or_one_out_of_retries() {
    for (seed, timeline) in fault_free_timelines("retry_refusals", 10) {
        assert_eq!(timeline.matches("returned Ok(AlreadyOpen)").count(), 1, "seed {seed}:\n{timeline}");
        assert!(timeline.contains("returned Err(Refused(\"t1 has used 3 of its 3 retries"), "seed {seed}:\n{timeline}");
        assert!(timeline.contains("returned Err(Refused(\"t3 is done; "), "seed {seed}:\n{timeline}");
    }
}

#[test]
fn kill_of_an_agent_the_registry_does_not_hold_reports_it_unknown() {
    for (seed, timeline) in fault_free_timelines("kill_unknown_agent", 5) {
        assert!(timeline.contains("returned Ok(Unknown)"), "seed {seed}:\n{timeline}");
    }
}
