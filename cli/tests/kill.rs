//! `wg agents kill` against real processes.

mod common;

use common::*;
use std::time::{Duration, Instant};

#[test]
fn kill_stops_a_cooperative_agent_and_marks_it_dead() {
    let mut wg = Workgraph::fresh();
    let pid = wg.start_agent("agent-1", "t1", "sleep 60");
    let started = Instant::now();
    let result = wg.wg_json(&["agents", "kill", "agent-1"]);
    assert_eq!(result["outcome"], "killed");
    assert!(started.elapsed() < Duration::from_secs(2), "SIGTERM was enough; no grace wait expected");
    wg.reap_finished();
    assert!(!alive(pid));
    assert_eq!(wg.registry()["agents"]["agent-1"]["status"], "dead");
    assert_eq!(wg.task("t1")["status"], "in-progress", "kill leaves the task to the reaper (none runs here)");
}

#[test]
fn kill_escalates_to_sigkill_after_the_grace_period() {
    let mut wg = Workgraph::fresh();
    let pid = wg.start_agent("agent-1", "t1", "trap '' TERM; while :; do sleep 0.05; done");
    std::thread::sleep(Duration::from_millis(100)); // let the shell install its trap
    let started = Instant::now();
    let result = wg.wg_json(&["agents", "kill", "agent-1", "--grace", "300ms"]);
    let elapsed = started.elapsed();
    assert_eq!(result["outcome"], "killed");
    assert!(elapsed >= Duration::from_millis(300), "waited the grace period first ({elapsed:?})");
    wg.reap_finished();
    assert!(!alive(pid));
}

#[test]
fn kill_reaches_children_and_grandchildren() {
    let mut wg = Workgraph::fresh();
    let pids_file = wg.root.path().join("pids");
    let script = format!(
        "sleep 60 & echo $! >> {pids}; sh -c 'sleep 60 & echo $! >> {pids}; wait' & echo $! >> {pids}; wait",
        pids = pids_file.display()
    );
    let pid = wg.start_agent("agent-1", "t1", &script);
    wait_until("the tree is up", Duration::from_secs(5), || {
        std::fs::read_to_string(&pids_file).map(|text| text.lines().count() >= 3).unwrap_or(false)
    });
    let tree: Vec<i32> =
        std::fs::read_to_string(&pids_file).unwrap().lines().map(|line| line.trim().parse().unwrap()).collect();
    assert!(tree.iter().all(|&member| alive(member)));
    let result = wg.wg_json(&["agents", "kill", "agent-1"]);
    assert_eq!(result["outcome"], "killed");
    wg.reap_finished();
    assert!(!alive(pid));
    for member in tree {
        wait_until(&format!("{member} is gone"), Duration::from_secs(2), || !alive(member));
    }
}

#[test]
fn kill_of_unknown_or_dead_agent_is_a_noop() {
    let mut wg = Workgraph::fresh();
    assert_eq!(wg.wg_json(&["agents", "kill", "agent-42"])["outcome"], "unknown");
    wg.start_agent("agent-1", "t1", "sleep 60");
    assert_eq!(wg.wg_json(&["agents", "kill", "agent-1"])["outcome"], "killed");
    let again = wg.wg(&["agents", "kill", "agent-1"]);
    assert!(again.status.success(), "{}", describe(&again));
    assert!(String::from_utf8_lossy(&again.stdout).contains("already dead"), "{}", describe(&again));
}
