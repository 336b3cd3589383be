//! `wg service`: wake-ups instead of ticks, exit codes settle tasks, start/stop/status.

mod common;

use common::*;
use std::time::Duration;

#[test]
fn a_command_wakes_the_service_without_waiting_for_a_tick() {
    let mut wg = Workgraph::fresh();
    // A minute between ticks: only the wake-up from `wg add`'s commit can start the agent soon.
    wg.write_config("[recovery]\npoll_interval_ms = 60000\n");
    wg.start_service();
    wg.wg_json(&["add", "Quick", "--id", "t1", "--exec", "sleep 600"]);
    wait_until("t1 is dispatched", Duration::from_secs(5), || wg.task("t1")["status"] == "in-progress");
}

#[test]
fn exit_codes_settle_tasks_and_a_killed_agent_is_requeued() {
    let mut wg = Workgraph::fresh();
    wg.write_config("[recovery]\npoll_interval_ms = 60000\n");
    wg.wg_json(&["add", "Passes", "--id", "ok", "--exec", "exit 0"]);
    wg.wg_json(&["add", "Fails", "--id", "bad", "--exec", "exit 3"]);
    wg.wg_json(&["add", "Hangs", "--id", "hang", "--exec", "sleep 600"]);
    wg.start_service();
    wait_until("ok is done", Duration::from_secs(5), || wg.task("ok")["status"] == "done");
    wait_until("bad failed", Duration::from_secs(5), || wg.task("bad")["status"] == "failed");
    assert_eq!(wg.task("bad")["failure_reason"], "exit code 3");
    wait_until("hang runs", Duration::from_secs(5), || wg.task("hang")["status"] == "in-progress");
    let first = wg.task("hang")["assigned"].as_str().unwrap().to_string();
    wait_until("its pid is recorded", Duration::from_secs(5), || {
        wg.registry()["agents"][&first]["pid"].as_i64().unwrap_or(0) > 0
    });
    assert_eq!(wg.wg_json(&["agents", "kill", &first])["outcome"], "killed");
    // The kill leaves the task to the reaper, which the kill's commit woke.
    wait_until("a new agent runs hang", Duration::from_secs(5), || {
        let task = wg.task("hang");
        task["status"] == "in-progress" && task["assigned"] != first.as_str()
    });
    assert_eq!(wg.task("hang")["retry_count"], 1);
}

#[test]
fn start_status_stop() {
    let wg = Workgraph::fresh();
    assert_eq!(wg.wg_json(&["service", "status"])["running"], false);
    let started = wg.wg_json(&["service", "start"]);
    let pid = started["pid"].as_i64().unwrap() as i32;
    assert!(alive(pid));
    let status = wg.wg_json(&["service", "status"]);
    assert_eq!(status["running"], true);
    assert_eq!(status["pid"], pid);
    assert_eq!(wg.wg_json(&["service", "start"])["started"], false, "a second start finds the first");
    assert_eq!(wg.wg_json(&["service", "stop"])["stopped"], true);
    wait_until("the service is gone", Duration::from_secs(5), || !alive(pid));
    assert_eq!(wg.wg_json(&["service", "status"])["running"], false);
    assert_eq!(wg.wg_json(&["service", "stop"])["stopped"], false, "stopping twice is a no-op");
}
