//! `wg retry` against real processes and a real service.

mod common;

use common::*;
use serde_json::json;
use std::process::{Command, Stdio};
use std::time::Duration;

fn hung_task_with_service(wg: &mut Workgraph, exec: &str) -> (String, i64) {
    let added = wg.wg_json(&["add", "Hung work", "--id", "t1", "--exec", exec]);
    assert_eq!(added["id"], "t1");
    wg.start_service();
    wait_until("t1 runs", Duration::from_secs(10), || wg.task("t1")["status"] == "in-progress");
    let agent = wg.task("t1")["assigned"].as_str().unwrap().to_string();
    wait_until("the agent's pid is recorded", Duration::from_secs(10), || {
        wg.registry()["agents"][&agent]["pid"].as_i64().unwrap_or(0) > 0
    });
    let pid = wg.registry()["agents"][&agent]["pid"].as_i64().unwrap();
    (agent, pid)
}

#[test]
fn retry_of_a_hung_task_kills_its_agent_and_the_service_respawns_it() {
    let mut wg = Workgraph::fresh();
    let (old_agent, old_pid) = hung_task_with_service(&mut wg, "sleep 600");
    let result = wg.wg_json(&["retry", "t1", "--reason", "hung"]);
    assert_eq!(result["outcome"], "restarted");
    assert_eq!(result["retry_count"], 1);
    assert!(!alive(old_pid as i32), "the old agent is gone when retry returns");
    wait_until("a new agent runs", Duration::from_secs(5), || {
        let task = wg.task("t1");
        task["status"] == "in-progress" && task["assigned"] != old_agent.as_str()
    });
    let task = wg.task("t1");
    assert_eq!(task["retry_count"], 1);
    assert!(log_messages(&task).iter().any(|message| message.contains("hung")), "{task}");
}

#[test]
fn retry_of_a_failed_task_requeues_it() {
    let wg = Workgraph::fresh();
    wg.wg_json(&["add", "Flaky", "--id", "t1", "--exec", "false", "--max-retries", "1"]);
    wg.wg_json(&["fail", "t1", "--reason", "exit code 1"]);
    let result = wg.wg_json(&["retry", "t1", "--reason", "flaky network"]);
    assert_eq!(result["outcome"], "requeued");
    let task = wg.task("t1");
    assert_eq!(task["status"], "open");
    assert_eq!(task["retry_count"], 1);
    assert!(task.get("failure_reason").is_none());
    assert!(log_messages(&task).iter().any(|message| message.contains("flaky network")));
    wg.wg_json(&["fail", "t1", "--reason", "again"]);
    let refused = wg.wg(&["retry", "t1"]);
    assert_eq!(refused.status.code(), Some(1), "max_retries is honoured: {}", describe(&refused));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("max_retries"), "{}", describe(&refused));
}

#[test]
fn retry_of_an_open_task_says_so_and_succeeds() {
    let wg = Workgraph::fresh();
    wg.wg_json(&["add", "Waiting", "--id", "t1"]);
    assert_eq!(wg.wg_json(&["retry", "t1"])["outcome"], "already-open");
    assert_eq!(wg.task("t1")["retry_count"].as_u64().unwrap_or(0), 0);
}

#[test]
fn two_retries_at_once_count_once() {
    let mut wg = Workgraph::fresh();
    let pid = wg.start_agent("agent-1", "t1", "sleep 60");
    let spawn = || {
        Command::new(wg_binary())
            .arg("--dir")
            .arg(&wg.dir)
            .args(["retry", "t1", "--reason", "hung"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (spawn(), spawn());
    let (first, second) = (first.wait_with_output().unwrap(), second.wait_with_output().unwrap());
    assert!(first.status.success() && second.status.success(), "{}\n{}", describe(&first), describe(&second));
    wg.reap_finished();
    assert!(!alive(pid));
    let task = wg.task("t1");
    assert_eq!(task["retry_count"], 1, "{task}");
    let retry_entries = log_messages(&task).iter().filter(|message| message.contains("hung")).count();
    assert_eq!(retry_entries, 1, "{task}");
}

#[test]
fn an_agent_that_finishes_during_the_kill_keeps_its_task_done() {
    let mut wg = Workgraph::fresh();
    // On SIGTERM the agent reports done, then exits: the retry must not re-open the task.
    let script = format!(
        "trap '{wg} --dir {dir} done t1; exit 0' TERM; while :; do sleep 0.05; done",
        wg = wg_binary(),
        dir = wg.dir.display()
    );
    wg.start_agent("agent-1", "t1", &script);
    std::thread::sleep(Duration::from_millis(100));
    let result = wg.wg_json(&["retry", "t1", "--reason", "hung"]);
    assert_eq!(result["outcome"], "finished-meanwhile", "{result}");
    let task = wg.task("t1");
    assert_eq!(task["status"], "done");
    assert_eq!(task["retry_count"].as_u64().unwrap_or(0), 0);
}

#[test]
fn retry_leaves_companion_tasks_alone() {
    let mut wg = Workgraph::fresh();
    wg.start_agent("agent-1", "t1", "sleep 60");
    wg.append_task(json!({"kind":"task","id":".evaluate-t1","title":"Evaluate t1","status":"open","after":["t1"]}));
    wg.append_task(json!({"kind":"task","id":".flip-t1","title":"Flip t1","status":"blocked","after":["t1"]}));
    let before = std::fs::read_to_string(wg.graph_path()).unwrap();
    wg.wg_json(&["retry", "t1", "--reason", "hung"]);
    let after = std::fs::read_to_string(wg.graph_path()).unwrap();
    for companion in [".evaluate-t1", ".flip-t1"] {
        let line = |text: &str| {
            text.lines().find(|line| line.contains(&format!("\"id\":\"{companion}\""))).unwrap().to_string()
        };
        assert_eq!(line(&before), line(&after), "{companion} is byte-for-byte unchanged");
    }
    let refused = wg.wg(&["retry", ".evaluate-t1"]);
    assert_eq!(refused.status.code(), Some(1));
}

#[test]
fn retry_without_a_running_service_says_nothing_will_start_the_task() {
    let wg = Workgraph::fresh();
    wg.wg_json(&["add", "Flaky", "--id", "t1", "--exec", "false"]);
    wg.wg_json(&["fail", "t1", "--reason", "exit code 1"]);
    let output = wg.wg(&["retry", "t1", "--reason", "flaky network"]);
    assert!(output.status.success(), "{}", describe(&output));
    let lines: Vec<String> = String::from_utf8_lossy(&output.stdout).lines().map(String::from).collect();
    assert!(lines[0].contains("re-queued"), "{lines:?}");
    assert_eq!(lines[1], "no service runs: nothing will start it until the service runs: `wg service start`");
    assert_eq!(wg.wg_json(&["retry", "t1"])["service_running"], false);
}

#[test]
fn retry_with_a_running_service_does_not_mention_starting_it() {
    let mut wg = Workgraph::fresh();
    // t1 waits for t0, which never gets done: the service leaves t1 open.
    wg.wg_json(&["add", "Never done", "--id", "t0"]);
    wg.wg_json(&["add", "Flaky", "--id", "t1", "--exec", "false", "--after", "t0"]);
    wg.wg_json(&["fail", "t1", "--reason", "exit code 1"]);
    wg.start_service();
    let output = wg.wg(&["retry", "t1", "--reason", "flaky network"]);
    assert!(output.status.success(), "{}", describe(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("re-queued") && !text.contains("wg service start"), "{text}");
    assert_eq!(wg.wg_json(&["retry", "t1"])["service_running"], true);
}

/// With the service running, the service (the agent's parent) often sees the exit first and
/// makes the re-queue; the retry then only logs its reason. The user asked for a stop and a
/// re-queue and got both: that is what the retry reports, the rest is in `--json` and the log.
#[test]
fn retry_under_a_service_reports_the_stop_and_the_requeue_whoever_counted_it() {
    let mut wg = Workgraph::fresh();
    let (old_agent, _) = hung_task_with_service(&mut wg, "sleep 600");
    let said = wg.wg(&["retry", "t1", "--reason", "hung"]);
    let stdout = String::from_utf8_lossy(&said.stdout);
    assert!(said.status.success(), "{}", describe(&said));
    assert!(stdout.starts_with(&format!("stopped {old_agent} (pid ")), "{stdout}");
    assert!(stdout.contains("t1 re-queued (attempt 1)"), "{stdout}");
    assert!(!stdout.contains("reaper"), "who counted is bookkeeping, not news: {stdout}");
    let task = wg.task("t1");
    assert_eq!(task["retry_count"], 1, "counted once, whoever counted: {task}");
    assert_eq!(log_messages(&task).iter().filter(|message| message.ends_with("(attempt 1)")).count(), 1, "{task}");
}

#[test]
fn retry_json_says_whether_this_command_made_the_requeue() {
    let wg = Workgraph::fresh();
    wg.wg_json(&["add", "Flaky", "--id", "t1", "--exec", "false"]);
    wg.wg_json(&["fail", "t1", "--reason", "exit code 1"]);
    assert_eq!(wg.wg_json(&["retry", "t1"])["requeued_by_this_retry"], true);
    assert!(wg.wg_json(&["retry", "t1"])["requeued_by_this_retry"].is_null(), "already open: no re-queue at all");
}

#[test]
fn retry_of_a_task_in_a_crash_loop_backoff_lifts_it() {
    let wg = Workgraph::fresh();
    let in_an_hour =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64 + 3_600_000;
    wg.append_task(json!({"kind": "task", "id": "t1", "title": "Crashy", "status": "open", "exec": "true",
        "retry_count": 5, "crash_loop": {"deaths_ms": [], "backoffs_served": 1, "not_before_ms": in_an_hour}}));
    let listed = wg.wg(&["list"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("backing off until"), "{}", describe(&listed));
    let result = wg.wg_json(&["retry", "t1", "--reason", "fixed the config"]);
    assert_eq!(result["outcome"], "backoff-lifted", "{result}");
    let task = wg.task("t1");
    assert_eq!((task["status"].as_str(), task["retry_count"].as_i64()), (Some("open"), Some(5)), "not an attempt");
    assert!(task.get("crash_loop").is_none_or(|throttle| throttle.is_null()), "{task}");
    assert!(log_messages(&task).iter().any(|message| message.contains("fixed the config")), "{task}");
    let listed = wg.wg(&["list"]);
    assert!(!String::from_utf8_lossy(&listed.stdout).contains("backing off"), "{}", describe(&listed));
    let again = wg.wg_json(&["retry", "t1"]);
    assert_eq!(again["outcome"], "already-open", "nothing left to lift: {again}");
}
