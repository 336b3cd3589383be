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

/// `wg --json service status` when no service runs: exit 3 (as `systemctl is-active`), and the
/// JSON says so.
fn status_not_running(wg: &Workgraph) {
    let output = wg.wg(&["--json", "service", "status"]);
    assert_eq!(output.status.code(), Some(3), "{}", describe(&output));
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON output");
    assert_eq!(status["running"], false);
}

#[test]
fn start_status_stop() {
    let wg = Workgraph::fresh();
    status_not_running(&wg);
    let started = wg.wg_json(&["service", "start"]);
    let pid = started["pid"].as_i64().unwrap() as i32;
    assert!(alive(pid));
    let status = wg.wg_json(&["service", "status"]);
    assert_eq!(status["running"], true);
    assert_eq!(status["pid"], pid);
    assert_eq!(wg.wg_json(&["service", "start"])["started"], false, "a second start finds the first");
    assert_eq!(wg.wg_json(&["service", "stop"])["stopped"], true);
    wait_until("the service is gone", Duration::from_secs(5), || !alive(pid));
    status_not_running(&wg);
    assert_eq!(wg.wg_json(&["service", "stop"])["stopped"], false, "stopping twice is a no-op");
}

#[test]
fn status_exits_3_when_no_service_runs_and_0_when_one_does() {
    let mut wg = Workgraph::fresh();
    let stopped = wg.wg(&["service", "status"]);
    assert_eq!(stopped.status.code(), Some(3), "{}", describe(&stopped));
    assert!(String::from_utf8_lossy(&stopped.stdout).contains("not running; start it with `wg service start`"));
    assert!(stopped.stderr.is_empty(), "not running is an answer, not an error: {}", describe(&stopped));
    wg.start_service();
    let running = wg.wg(&["service", "status"]);
    assert_eq!(running.status.code(), Some(0), "{}", describe(&running));
}

#[test]
fn status_help_documents_exit_3() {
    let output = std::process::Command::new(wg_binary()).args(["service", "status", "--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&output.stdout).contains("3 if not"), "{}", describe(&output));
}
