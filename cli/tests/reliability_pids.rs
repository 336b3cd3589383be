//! Never the wrong process (issue 7, suite 4), through the `wg` binary end to end.
//!
//! Each test plants a registry entry whose pid must not be signalled and runs a kill path
//! (`wg agents kill`, `wg retry`, the service's reaper). Where a wrong signal could land, it
//! would land on a *canary* the test started itself (its own process group, or the `wg` process
//! itself), so a bug shows as a dead canary, never as harm to anything else. Pid 1 and pid -1
//! have no safe canary: `kill_refuses_pids_that_are_never_an_agent` below sends them through
//! `wg agents kill`, and `check_pid`'s unit tests cover the rule; every kill path calls that one
//! guard first. This file is the one home of "never the wrong process" through the binary: the
//! pid guard, and the identity check against a process that took over a recorded pid.

mod common;

use common::*;
use serde_json::{json, Value};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A `sleep 30` of ours in its own process group, ended (group-wide) when dropped.
struct Canary {
    child: Child,
}

impl Canary {
    fn start(program: &[&str]) -> Canary {
        let child = Command::new(program[0])
            .args(&program[1..])
            .process_group(0)
            .stdin(Stdio::null())
            .spawn()
            .expect("start the canary");
        let canary = Canary { child };
        wait_until("the canary runs", Duration::from_secs(5), || alive(canary.pid()));
        canary
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn is_alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Canary {
    fn drop(&mut self) {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(self.pid()), nix::sys::signal::SIGKILL);
        let _ = self.child.wait();
    }
}

fn in_progress_task_with_agent(wg: &Workgraph, agent: Value) {
    let (agent_id, task_id) = (agent["id"].as_str().unwrap(), agent["task_id"].as_str().unwrap());
    wg.append_task(
        json!({"kind":"task","id":task_id,"title":task_id,"status":"in-progress","assigned":agent_id,"exec":"sleep 60"}),
    );
    wg.put_agent(agent);
}

fn entry(agent_id: &str, task_id: &str, pid: i64) -> Value {
    json!({"id": agent_id, "pid": pid, "task_id": task_id, "executor": "shell",
           "started_at": now_rfc3339(), "status": "working"})
}

#[test]
fn retry_never_signals_a_negative_pid_and_requeues_the_task() {
    // pid -P would address the canary's process group.
    let wg = Workgraph::fresh();
    let mut canary = Canary::start(&["sleep", "30"]);
    in_progress_task_with_agent(&wg, entry("agent-1", "t1", -i64::from(canary.pid())));
    let result = wg.wg_json(&["retry", "t1", "--reason", "negative pid"]);
    assert_eq!(result["outcome"], "restarted", "{result}");
    assert!(canary.is_alive(), "the group of the negated pid was not signalled");
    assert_eq!(wg.task("t1")["status"], "open");
    assert_eq!(wg.task("t1")["retry_count"], 1);
}

#[test]
fn pid_zero_never_reaches_the_callers_own_group() {
    // kill(0) would hit wg's own group; wg runs in a group of its own, with a canary beside it.
    let wg = Workgraph::fresh();
    in_progress_task_with_agent(&wg, entry("agent-1", "t1", 0));
    for args in [&["agents", "kill", "agent-1", "--force"][..], &["retry", "t1"]] {
        let output = Command::new("sh")
            .arg("-c")
            .arg(r#"sleep 30 & canary=$!; "$@"; code=$?; kill -0 $canary && echo canary-alive; kill $canary; exit $code"#)
            .arg("sh")
            .arg(wg_binary())
            .arg("--dir")
            .arg(&wg.dir)
            .args(args)
            .process_group(0)
            .output()
            .unwrap();
        assert!(output.status.success(), "{args:?}: {}", describe(&output));
        assert!(String::from_utf8_lossy(&output.stdout).contains("canary-alive"), "{args:?}: {}", describe(&output));
    }
    assert_eq!(wg.task("t1")["status"], "open");
}

#[test]
fn the_callers_own_pid_is_never_signalled() {
    // The shell writes its own pid ($$) into the registry, then execs wg: the entry names wg
    // itself (no start ticks; a started_at in the future, so only the pid guard stands).
    let wg = Workgraph::fresh();
    wg.append_task(json!({"kind":"task","id":"t1","title":"t1","status":"in-progress","assigned":"agent-1"}));
    for args in ["agents kill agent-1 --force", "agents kill agent-1 --grace 100ms", "retry t1"] {
        let script = format!(
            r#"printf '{{"agents":{{"agent-1":{{"id":"agent-1","pid":%s,"task_id":"t1","started_at":"2099-01-01T00:00:00+00:00","status":"working"}}}},"next_agent_id":2}}' $$ > "$1/service/registry.json"; exec "$0" --dir "$1" --json {args}"#
        );
        let output =
            Command::new("sh").arg("-c").arg(script).arg(wg_binary()).arg(&wg.dir).process_group(0).output().unwrap();
        assert!(output.status.success(), "wg {args} survived and exited 0: {}", describe(&output));
        let stdout = String::from_utf8_lossy(&output.stdout);
        let expected = if args.starts_with("retry") { "\"restarted\"" } else { "\"not-ours\"" };
        assert!(stdout.contains(expected), "wg {args}: {}", describe(&output));
    }
    assert_eq!(wg.task("t1")["status"], "open", "the retry re-queued the task without signalling anything");
}

#[test]
fn the_callers_own_process_group_is_never_signalled() {
    // wg runs as a child of a shell that leads wg's group; the entry names the shell's pid,
    // which is wg's process-group id.
    let wg = Workgraph::fresh();
    wg.append_task(json!({"kind":"task","id":"t1","title":"t1","status":"in-progress","assigned":"agent-1"}));
    let script = r#"printf '{"agents":{"agent-1":{"id":"agent-1","pid":%s,"task_id":"t1","started_at":"2099-01-01T00:00:00+00:00","status":"working"}},"next_agent_id":2}' $$ > "$1/service/registry.json"; "$0" --dir "$1" --json agents kill agent-1 --force; echo "wg-exit=$?""#;
    let output =
        Command::new("sh").arg("-c").arg(script).arg(wg_binary()).arg(&wg.dir).process_group(0).output().unwrap();
    assert!(output.status.success(), "the shell leading the group survived: {}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("wg-exit=0") && stdout.contains("\"not-ours\""), "{}", describe(&output));
    assert!(stdout.contains("process group") || stdout.contains("\"pid\""), "{stdout}");
}

#[test]
fn a_zombie_agent_is_reported_dead_and_not_signalled() {
    let wg = Workgraph::fresh();
    // A child of this test that exits at once and is not reaped: a zombie at its pid.
    let mut zombie = Command::new("sh").arg("-c").arg("exit 3").process_group(0).spawn().unwrap();
    let pid = zombie.id() as i32;
    let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|stat| {
        let fields: Vec<String> = stat[stat.rfind(')')? + 2..].split_whitespace().map(String::from).collect();
        fields.get(19)?.parse::<u64>().ok()
    });
    wait_until("it is a zombie", Duration::from_secs(5), || !alive(pid));
    let mut agent = entry("agent-1", "t1", i64::from(pid));
    agent["process_start_ticks"] = ticks.into();
    in_progress_task_with_agent(&wg, agent);
    let result = wg.wg_json(&["agents", "kill", "agent-1", "--force"]);
    assert_eq!(result["outcome"], "already-dead", "{result}");
    assert_eq!(wg.registry()["agents"]["agent-1"]["status"], "dead");
    let status = zombie.wait().unwrap();
    assert_eq!(status.code(), Some(3), "the zombie ended by its own exit, not by a signal");
}

#[test]
fn the_reaper_never_signals_a_process_that_took_over_an_agents_pid() {
    // The entry was written by another tool an hour ago; the process at its pid started now.
    let mut wg = Workgraph::fresh();
    let mut squatter = Canary::start(&["sleep", "30"]);
    let mut agent = entry("agent-1", "t1", i64::from(squatter.pid()));
    agent["started_at"] = wg_core::time::format_rfc3339(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64 - 3_600_000,
    )
    .into();
    in_progress_task_with_agent(&wg, agent);
    for args in [&["agents", "kill", "agent-1", "--force"][..], &["retry", "t1", "--reason", "pid reused"]] {
        let output = wg.wg(args);
        assert!(output.status.success(), "{args:?}: {}", describe(&output));
        assert!(squatter.is_alive(), "{args:?} left the squatter alone");
    }
    // Once more with the service's reaper, after putting the entry back.
    let mut registry = wg.registry();
    registry["agents"]["agent-1"]["status"] = "working".into();
    registry["agents"]["agent-1"].as_object_mut().unwrap().remove("stop_requested");
    std::fs::write(wg.registry_path(), registry.to_string()).unwrap();
    let mut graph: Vec<Value> = std::fs::read_to_string(wg.graph_path())
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    graph[0]["status"] = "in-progress".into();
    graph[0]["assigned"] = "agent-1".into();
    graph[0]["exec"] = "exit 0".into();
    let text: String = graph.iter().map(|task| format!("{task}\n")).collect();
    std::fs::write(wg.graph_path(), text).unwrap();
    wg.start_service();
    wait_until("the reaper re-queues and a new agent finishes t1", Duration::from_secs(10), || {
        wg.task("t1")["status"] == "done"
    });
    assert!(squatter.is_alive(), "the reaper left the squatter alone");
    assert!(log_messages(&wg.task("t1")).iter().any(|message| message.contains("agent-1 ended")), "{}", wg.task("t1"));
}

#[test]
fn a_process_of_another_user_that_refuses_the_signal_is_reported_not_ours_never_escalated() {
    // As root wg may signal anyone, so wg itself runs as uid 65533 here and the agent as 65534
    // (nobody): the kernel answers EPERM, which must be reported, not worked around.
    if Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("skipped: setpriv is not installed");
        return;
    }
    let wg = Workgraph::fresh();
    let mut other = Canary::start(&["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sleep", "30"]);
    let ticks = std::fs::read_to_string(format!("/proc/{}/stat", other.pid())).ok().and_then(|stat| {
        let fields: Vec<String> = stat[stat.rfind(')')? + 2..].split_whitespace().map(String::from).collect();
        fields.get(19)?.parse::<u64>().ok()
    });
    let mut agent = entry("agent-1", "t1", i64::from(other.pid()));
    agent["process_start_ticks"] = ticks.into();
    in_progress_task_with_agent(&wg, agent);
    // Let uid 65533 read and write the folder.
    for path in [wg.root.path(), &wg.dir, &wg.dir.join("service")] {
        Command::new("chmod").arg("0777").arg(path).status().unwrap();
    }
    for file in [wg.graph_path(), wg.registry_path()] {
        Command::new("chmod").arg("0666").arg(file).status().unwrap();
    }
    let output = Command::new("setpriv")
        .args(["--reuid=65533", "--regid=65533", "--clear-groups"])
        .arg(wg_binary())
        .arg("--dir")
        .arg(&wg.dir)
        .args(["--json", "agents", "kill", "agent-1", "--force"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("another user's agent, wg as uid 65533: {}", stdout.split_whitespace().collect::<Vec<_>>().join(" "));
    assert!(output.status.success(), "{}", describe(&output));
    assert!(stdout.contains("\"not-ours\""), "EPERM is reported as not ours: {}", describe(&output));
    assert!(other.is_alive(), "no escalation: the other user's process still runs");
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
