//! Crash at any point (issue 7, suite 1): SIGKILL a writing `wg` at a random moment, then check
//! the files and that a restarted service converges.
//!
//! Each run builds a `.wg/` with a hung task `t1` (a live agent), an open task `t2` with an
//! `exec`, a companion `.evaluate-t1`, a line of an unknown kind, unknown fields and an old log
//! entry on the tasks. It starts one of `wg retry t1`, `wg agents kill agent-1`, `wg done t1`,
//! `wg add`, `wg service run`, and SIGKILLs it 0-20 ms later (seeded). Afterwards: `wg list`
//! succeeds, every task is in a legal state, no unknown field, line or earlier log entry is lost,
//! the attempt counter equals the recovery events logged, leftover temp files break nothing, and a
//! restarted service gives `t1` a live agent (or `t1` is done) with at most one live agent per task.
//!
//!     WG_RELIABILITY_RUNS=1000 WG_RELIABILITY_SEED=7 \
//!       cargo test -p wg-cli --test reliability_crash -- --nocapture

mod common;

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const VICTIMS: [&[&str]; 5] = [
    &["retry", "t1", "--reason", "crash test"],
    &["agents", "kill", "agent-1"],
    &["done", "t1"],
    &["add", "Added during a crash", "--id", "added"],
    &["service", "run"],
];

const UNKNOWN_KIND_LINE: &str = r#"{"kind":"resource","id":"gpu","weird":  [1, 2],"note":"kept byte for byte"}"#;
const OLD_ENTRY: &str = "written by another tool before the crash";

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|text| text.parse().ok()).unwrap_or(default)
}

/// The world of one run: t1 hung with agent-1, t2 open, a companion, an unknown line.
fn build_world() -> (Workgraph, String, String) {
    let mut wg = Workgraph::fresh();
    wg.write_config("[recovery]\ngrace_ms = 300\nkill_wait_ms = 1000\npoll_interval_ms = 100\n");
    wg.start_agent("agent-1", "t1", "sleep 60");
    let mut lines: Vec<Value> = std::fs::read_to_string(wg.graph_path())
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let old_log =
        json!([{"timestamp": "2024-01-01T00:00:00+00:00", "user": "upstream", "message": OLD_ENTRY, "actor": "x"}]);
    lines[0]["priority"] = 7.into();
    lines[0]["vendor"] = json!({"nested": [1, {"k": null}]});
    lines[0]["log"] = old_log.clone();
    let companion =
        r#"{"kind":"task","id":".evaluate-t1","title":"Evaluate t1","status":"open","after":["t1"],"agency":{"x":1}}"#;
    let mut text = String::new();
    text.push_str(&lines[0].to_string());
    text.push('\n');
    text.push_str(UNKNOWN_KIND_LINE);
    text.push('\n');
    text.push_str(companion);
    text.push('\n');
    text.push_str(
        &json!({"kind":"task","id":"t2","title":"Other work","status":"open","exec":"sleep 60","paused":false,"log":old_log})
            .to_string(),
    );
    text.push('\n');
    std::fs::write(wg.graph_path(), text).unwrap();
    (wg, companion.to_string(), UNKNOWN_KIND_LINE.to_string())
}

/// Messages of the requeue rule (`core/src/ops/mod.rs` `requeue`, and retry's own count).
fn is_recovery_event(message: &str) -> bool {
    message.starts_with("Retried")
        || message.ends_with("; re-queued")
        || message.contains("crash loop, re-queued after")
        || message == "Recovered by wg recover"
}

fn tasks_by_id(listed: &Value) -> std::collections::BTreeMap<String, Value> {
    listed["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|task| (task["id"].as_str().unwrap().to_string(), task.clone()))
        .collect()
}

/// Live registry agents (pid and start ticks verified) per task.
fn live_agents(wg: &Workgraph, task_id: &str) -> Vec<String> {
    let registry = wg.registry();
    let Some(agents) = registry["agents"].as_object() else { return Vec::new() };
    agents
        .values()
        .filter(|agent| agent["task_id"] == task_id)
        .filter(|agent| {
            let (pid, ticks) = (agent["pid"].as_i64().unwrap_or(0), agent["process_start_ticks"].as_u64());
            pid > 1 && ticks.is_some() && start_ticks(pid as i32) == ticks
        })
        .map(|agent| agent["id"].as_str().unwrap().to_string())
        .collect()
}

/// Runs `read` holding both locks, as a transaction would: a running service commits graph and
/// registry one after the other, so an unlocked reader may see one without the other.
fn locked<R>(wg: &Workgraph, read: impl FnOnce() -> R) -> R {
    use nix::fcntl::{Flock, FlockArg};
    let open = |path: std::path::PathBuf| {
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path).unwrap();
        Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| errno).unwrap()
    };
    let _graph = open(wg.dir.join("graph.lock"));
    let _registry = open(wg.dir.join("service/.registry.lock"));
    read()
}

/// The state a crash between the graph's and the registry's rename left while the graph was
/// written first (fixed: the registry now goes first; see the test below): an in-progress task whose assigned agent has no registry entry at all.
fn half_committed_spawns(wg: &Workgraph) -> Vec<String> {
    let registry = wg.registry();
    let graph = std::fs::read_to_string(wg.graph_path()).unwrap();
    graph
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|task| task["status"] == "in-progress")
        .filter(|task| task["assigned"].as_str().is_some_and(|agent| registry["agents"].get(agent).is_none()))
        .map(|task| format!("{} in-progress for {} which has no registry entry", task["id"], task["assigned"]))
        .collect()
}

/// Everything that must hold in the files after the crash; returns what does not.
fn check_files(wg: &Workgraph, companion: &str, unknown_line: &str) -> Vec<String> {
    locked(wg, || check_files_unlocked(wg, companion, unknown_line))
}

fn check_files_unlocked(wg: &Workgraph, companion: &str, unknown_line: &str) -> Vec<String> {
    let known_bug = half_committed_spawns(wg);
    let mut problems = Vec::new();
    let listed = wg.wg(&["--json", "list"]);
    if !listed.status.success() {
        return vec![format!("wg list fails: {}", describe(&listed))];
    }
    let graph = std::fs::read_to_string(wg.graph_path()).unwrap();
    for (what, line) in [("companion", companion), ("unknown-kind line", unknown_line)] {
        if !graph.lines().any(|candidate| candidate == line) {
            problems.push(format!("{what} changed or lost"));
        }
    }
    if let Err(error) = serde_json::from_slice::<Value>(&std::fs::read(wg.registry_path()).unwrap()) {
        problems.push(format!("registry does not parse: {error}"));
    }
    let tasks = tasks_by_id(&serde_json::from_slice(&listed.stdout).unwrap());
    let registry = wg.registry();
    for (id, task) in &tasks {
        let status = task["status"].as_str().unwrap_or("");
        if !["open", "in-progress", "done", "failed"].contains(&status) {
            problems.push(format!("{id} is {status}"));
        }
        if status == "in-progress" && !known_bug.iter().any(|bug| bug.contains(&format!("\"{id}\""))) {
            let agent = task["assigned"].as_str().map(|agent| &registry["agents"][agent]);
            if agent.is_none_or(|agent| agent["task_id"] != id.as_str()) {
                problems.push(format!("{id} is in-progress without a registry entry working on it: {task}"));
            }
        }
        if id.starts_with('t') {
            let messages = log_messages(task);
            if messages.first().map(String::as_str) != Some(OLD_ENTRY) {
                problems.push(format!("{id} lost its old log entry: {task}"));
            }
            let events = messages.iter().filter(|message| is_recovery_event(message)).count() as u64;
            if task["retry_count"].as_u64().unwrap_or(0) != events {
                problems.push(format!("{id}: retry_count != {events} recovery events: {task}"));
            }
        }
    }
    let t1 = &tasks["t1"];
    if t1["priority"] != 7 || t1["vendor"]["nested"][1]["k"] != Value::Null || t1["log"][0]["actor"] != "x" {
        problems.push(format!("t1 lost an unknown field: {t1}"));
    }
    problems
}

/// A restarted service gives t1 a live agent again or t1 is done; at most one live agent a task.
fn check_convergence(wg: &mut Workgraph) -> Vec<String> {
    wg.start_service();
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let task = wg.task("t1");
        let live = live_agents(wg, "t1");
        let converged = task["status"] == "done"
            || (task["status"] == "in-progress"
                && task["assigned"].as_str().is_some_and(|id| live.iter().any(|l| l == id)));
        if converged {
            break;
        }
        if Instant::now() > deadline {
            return vec![format!("t1 did not converge: {task}; live agents {live:?}")];
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    locked(wg, || {
        ["t1", "t2"]
            .iter()
            .filter_map(|task| {
                let live = live_agents(wg, task);
                (live.len() > 1).then(|| format!("{task} has {} live agents: {live:?}", live.len()))
            })
            .collect()
    })
}

fn temp_files(wg: &Workgraph) -> usize {
    [wg.dir.clone(), wg.dir.join("service")]
        .iter()
        .flat_map(|dir| std::fs::read_dir(dir).unwrap())
        .filter(|entry| entry.as_ref().unwrap().file_name().to_string_lossy().contains(".tmp."))
        .count()
}

#[test]
fn a_wg_command_sigkilled_at_a_random_moment_leaves_parsable_lossless_files_and_the_service_converges() {
    let runs = env_number("WG_RELIABILITY_RUNS", 40);
    let seed = env_number("WG_RELIABILITY_SEED", 20_240_607);
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut crashes, mut finished_first, mut leftover_temp_files, mut half_commits) = (0, 0, 0, 0);
    let mut corruptions = Vec::new();
    let started = Instant::now();
    for run in 0..runs {
        let victim = VICTIMS[rng.gen_range(0..VICTIMS.len())];
        let delay = Duration::from_micros(rng.gen_range(0..20_000));
        let (mut wg, companion, unknown_line) = build_world();
        let mut child = Command::new(wg_binary())
            .arg("--dir")
            .arg(&wg.dir)
            .args(victim)
            .env_remove("WG_AGENT_ID")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
            crashes += 1;
        } else {
            finished_first += 1;
        }
        child.wait().unwrap();
        if !half_committed_spawns(&wg).is_empty() {
            half_commits += 1;
        }
        let temps = temp_files(&wg);
        leftover_temp_files += temps;
        let mut problems = check_files(&wg, &companion, &unknown_line);
        // With a temp file left behind, later commands still work.
        let after = wg.wg(&["--json", "add", "After the crash", "--id", "after"]);
        if !after.status.success() {
            problems.push(format!("wg add after the crash fails: {}", describe(&after)));
        }
        problems.extend(check_convergence(&mut wg));
        // The next transaction removes what a killed writer of the graph or registry left, and
        // the restarted service what a service killed while starting left of its record.
        if temp_files(&wg) > 0 {
            let names: Vec<String> = [wg.dir.clone(), wg.dir.join("service")]
                .iter()
                .flat_map(|dir| std::fs::read_dir(dir).unwrap().flatten())
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .filter(|name| name.contains(".tmp."))
                .collect();
            problems.push(format!("temp files still there after the next command and a restart: {names:?}"));
        }
        problems.extend(check_files(&wg, &companion, &unknown_line));
        if !problems.is_empty() {
            corruptions.push(format!("run {run} (wg {victim:?} killed after {delay:?}): {problems:?}"));
        }
    }
    eprintln!(
        "crash suite: seed {seed}, {runs} runs in {:.1?}, {crashes} SIGKILLs injected mid-command, {finished_first} \
         commands finished before their kill, {leftover_temp_files} temp files left behind, {} corrupt runs; half \
         commits (must be 0 since the registry is written first): {half_commits} runs left a task in-progress for an agent missing from the registry",
        started.elapsed(),
        corruptions.len()
    );
    assert!(corruptions.is_empty(), "{}", corruptions.join("\n"));
    assert_eq!(half_commits, 0, "a crash left a task in progress for an agent the registry never recorded");
}

#[test]
fn a_task_left_in_progress_for_an_agent_missing_from_the_registry_is_dispatched_again() {
    // Exactly what a SIGKILL of `wg service run` between `graph.jsonl`'s rename and
    // `service/registry.json`'s leaves (FileStore commits the two files one after the other):
    // the dispatcher's reserve wrote t2 in-progress for agent-100, the registry never heard of it.
    let (mut wg, _, _) = build_world();
    let mut graph: Vec<Value> = std::fs::read_to_string(wg.graph_path())
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let t2 = graph.iter_mut().find(|line| line["id"] == "t2").unwrap();
    t2["status"] = "in-progress".into();
    t2["assigned"] = "agent-100".into();
    let text: String = graph.iter().map(|line| format!("{line}\n")).collect();
    std::fs::write(wg.graph_path(), text).unwrap();
    assert_eq!(half_committed_spawns(&wg).len(), 1);
    wg.start_service();
    wait_until("t2 gets a live agent again", Duration::from_secs(5), || {
        let task = wg.task("t2");
        task["status"] == "in-progress" && live_agents(&wg, "t2").iter().any(|agent| task["assigned"] == agent.as_str())
    });
}
