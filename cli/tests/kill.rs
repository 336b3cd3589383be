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
fn kill_does_not_signal_a_process_that_took_over_the_pid() {
    let mut wg = Workgraph::fresh();
    let pid = wg.start_agent("agent-1", "t1", "sleep 60");
    // Pretend the entry was recorded for an earlier process at this pid: same pid, other start.
    let mut registry = wg.registry();
    let ticks = registry["agents"]["agent-1"]["process_start_ticks"].as_u64().unwrap();
    registry["agents"]["agent-1"]["process_start_ticks"] = (ticks.saturating_sub(1)).into();
    std::fs::write(wg.registry_path(), serde_json::to_string(&registry).unwrap()).unwrap();
    let result = wg.wg_json(&["agents", "kill", "agent-1", "--force"]);
    assert_eq!(result["outcome"], "not-ours");
    assert!(alive(pid), "the other process was not signalled");
    assert_eq!(wg.registry()["agents"]["agent-1"]["status"], "dead");
}

#[test]
fn kill_of_an_entry_written_by_another_tool_checks_started_at() {
    let mut wg = Workgraph::fresh();
    let pid = wg.start_agent("agent-1", "t1", "sleep 60");
    // Another tool wrote no start ticks, and a started_at long before this process began.
    let mut registry = wg.registry();
    let agent = &mut registry["agents"]["agent-1"];
    agent.as_object_mut().unwrap().remove("process_start_ticks");
    agent["started_at"] = "2020-01-01T00:00:00+00:00".into();
    std::fs::write(wg.registry_path(), serde_json::to_string(&registry).unwrap()).unwrap();
    assert_eq!(wg.wg_json(&["agents", "kill", "agent-1"])["outcome"], "not-ours");
    assert!(alive(pid));
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

#[test]
fn kill_refuses_pids_that_are_never_an_agent() {
    let wg = Workgraph::fresh();
    // (wg's own pid and group are refused too; the guard's unit tests cover those, since a test
    // cannot know the pid of the `wg` it is about to start.)
    for (number, pid) in [0i64, 1, -1, i64::from(i32::MAX) + 1].into_iter().enumerate() {
        let id = format!("agent-{}", number + 1);
        wg.put_agent(serde_json::json!({
            "id": id, "pid": pid, "task_id": "t1", "executor": "shell",
            "started_at": now_rfc3339(), "status": "working"
        }));
        let result = wg.wg_json(&["agents", "kill", &id, "--force"]);
        assert_eq!(result["outcome"], "not-ours", "pid {pid}: {result}");
    }
}
