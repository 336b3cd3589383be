//! Crash at any point (issue 7, suite 1): SIGKILL a writing `wg` at a random moment, then check
//! the files and that a restarted service converges.
//!
//! Each run builds a `.wg/` with a hung task `t1` (a live agent), an open task `t2` with an
//! `exec`, a companion `.evaluate-t1`, a line of an unknown kind, unknown fields and an old log
//! entry on the tasks. It starts one of `wg retry t1`, `wg agents kill agent-1`, `wg done t1`,
//! `wg add`, `wg service run`, and SIGKILLs it 0-20 ms later (seeded). Afterwards: `wg list`
//! succeeds, every task is in a legal state, no unknown field, line or earlier log entry is lost,
//! the attempt counter equals the recovery events logged, leftover temp files break nothing, the
//! next command that takes the locks leaves graph and registry of one commit (no half commit: the
//! store's commit record makes the two renames one), and a restarted service gives `t1` a live
//! agent (or `t1` is done) with at most one live agent per task.
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
use wg_cli::system::store::journal::Fingerprint;
use wg_cli::system::store::{FileStore, WgPaths};
use wg_core::block_on;
use wg_core::model::TaskStatus;
use wg_core::ports::{State, Store};

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

/// A re-queue's log entry: the core's `requeue` marks each with the count it raised.
fn is_recovery_event(message: &str) -> bool {
    wg_core::ops::attempt_marked(message).is_some()
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

/// Runs `read` holding both locks, as a transaction would: a running service renames graph and
/// registry one after the other (the commit is atomic only for lock holders), so an unlocked reader
/// may see one without the other.
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

/// Graph and registry as the next holder of both locks sees them, after it has completed any
/// commit a crashed writer left.
fn state_after_the_next_lock_holder(wg: &Workgraph) -> Result<State, String> {
    let store = FileStore::new(WgPaths::new(&wg.dir), false);
    block_on(store.transact(|state| state.clone())).map_err(|error| error.to_string())
}

/// What shows graph and registry of different commits: the core's agreement rule (a running entry's
/// task is assigned to it and in progress or settled; an in-progress task's entry is for that task),
/// and an in-progress task given to an `agent-N` the registry has no entry for.
fn half_commit_findings(state: &State) -> Vec<String> {
    let mut findings: Vec<String> =
        wg_core::invariants::check_agreement(state).into_iter().map(|violation| violation.detail).collect();
    for task in state.graph.tasks().filter(|task| task.status == TaskStatus::InProgress) {
        let agent = task.assigned.as_deref().filter(|agent| agent.starts_with("agent-"));
        if let Some(agent) = agent.filter(|agent| state.registry.agent(agent).is_none()) {
            findings.push(format!("{} is in-progress for {agent}, which has no registry entry", task.id));
        }
    }
    findings
}

/// How far the commit a crashed writer left got: (files already renamed, files it changes), or
/// `None` when it left no commit record. Read as any program would, from the record's format.
fn commit_progress(wg: &Workgraph) -> Option<(usize, usize)> {
    let record: Value = serde_json::from_slice(&std::fs::read(wg.dir.join("wg-recover-commit.json")).ok()?).ok()?;
    let files = record["files"].as_array()?;
    let landed = files
        .iter()
        .filter(|file| {
            let target = std::fs::read(wg.dir.join(file["target"].as_str().unwrap_or(""))).unwrap_or_default();
            serde_json::to_value(Fingerprint::of(&target)).ok().as_ref() == Some(&file["after"])
        })
        .count();
    Some((landed, files.len()))
}

/// Everything that must hold in the files after the crash; returns what does not.
fn check_files(wg: &Workgraph, companion: &str, unknown_line: &str) -> Vec<String> {
    locked(wg, || check_files_unlocked(wg, companion, unknown_line))
}

fn check_files_unlocked(wg: &Workgraph, companion: &str, unknown_line: &str) -> Vec<String> {
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
        if status == "in-progress" {
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
    let (mut records_left, mut mixes_visible_until_recovery) = (0, 0);
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
        if let Some((landed, total)) = commit_progress(&wg) {
            records_left += 1;
            // A reader that takes no lock (`wg list`, upstream's `wg`) sees these until recovery.
            if landed > 0 && landed < total {
                mixes_visible_until_recovery += 1;
            }
        }
        let temps = temp_files(&wg);
        leftover_temp_files += temps;
        let mut problems = check_files(&wg, &companion, &unknown_line);
        // With a temp file left behind, later commands still work.
        let after = wg.wg(&["--json", "add", "After the crash", "--id", "after"]);
        if !after.status.success() {
            problems.push(format!("wg add after the crash fails: {}", describe(&after)));
        }
        // `wg add` held both locks: any commit the crash interrupted is complete now.
        match state_after_the_next_lock_holder(&wg) {
            Ok(state) => {
                let findings = half_commit_findings(&state);
                if !findings.is_empty() {
                    half_commits += 1;
                    problems.push(format!("graph and registry of different commits: {findings:?}"));
                }
            }
            Err(error) => problems.push(format!("the next transaction fails: {error}")),
        }
        if wg.dir.join("wg-recover-commit.json").exists() {
            problems.push("the commit record is still there after the next command".to_string());
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
         commands finished before their kill, {leftover_temp_files} temp files left behind, {records_left} commit \
         records left ({mixes_visible_until_recovery} with one file renamed and not the other, visible to readers \
         that take no lock until the next command), {half_commits} half commits after the next lock holder \
         recovered, {} corrupt runs",
        started.elapsed(),
        corruptions.len()
    );
    assert!(corruptions.is_empty(), "{}", corruptions.join("\n"));
    assert_eq!(half_commits, 0, "a crash left graph and registry of different commits after recovery");
}

/// The files of `wg` as the dispatcher's reserve of t2 for agent-100 would write them: t2
/// in-progress for agent-100 in the graph, a `starting` entry for it in the registry.
fn reserve_t2_for_agent_100(wg: &Workgraph) -> (String, Value) {
    let mut graph: Vec<Value> = std::fs::read_to_string(wg.graph_path())
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let t2 = graph.iter_mut().find(|line| line["id"] == "t2").unwrap();
    t2["status"] = "in-progress".into();
    t2["assigned"] = "agent-100".into();
    let mut registry = wg.registry();
    registry["agents"]["agent-100"] = json!({
        "id": "agent-100", "pid": 0, "task_id": "t2", "executor": "shell", "started_at": now_rfc3339(),
        "status": "starting"
    });
    registry["next_agent_id"] = 101.into();
    (graph.iter().map(|line| format!("{line}\n")).collect(), registry)
}

/// Leaves what a writer killed after its commit record's rename leaves: both temps and the record;
/// with `registry_renamed`, killed a step later, after the registry's own rename.
fn plant_half_landed_journal(wg: &Workgraph, new_graph: &str, new_registry: &str, registry_renamed: bool) {
    let pid = std::process::id();
    let (graph_temp, registry_temp) = (format!(".graph.jsonl.tmp.{pid}"), format!(".registry.json.tmp.{pid}"));
    let fingerprint = |bytes: &[u8]| serde_json::to_value(Fingerprint::of(bytes)).unwrap();
    let old_graph = std::fs::read(wg.graph_path()).unwrap();
    let old_registry = std::fs::read(wg.registry_path()).unwrap();
    let record = json!({"version": 1, "files": [
        {"target": "service/registry.json", "temp": registry_temp, "before": fingerprint(&old_registry),
         "after": fingerprint(new_registry.as_bytes())},
        {"target": "graph.jsonl", "temp": graph_temp, "before": fingerprint(&old_graph),
         "after": fingerprint(new_graph.as_bytes())},
    ]});
    std::fs::write(wg.dir.join(&graph_temp), new_graph).unwrap();
    let registry_target =
        if registry_renamed { wg.registry_path() } else { wg.dir.join("service").join(&registry_temp) };
    std::fs::write(registry_target, new_registry).unwrap();
    std::fs::write(wg.dir.join("wg-recover-commit.json"), serde_json::to_string_pretty(&record).unwrap()).unwrap();
}

#[test]
fn a_half_landed_commit_left_by_a_crash_is_completed_by_the_next_wg_command() {
    // Before the commit record, a SIGKILL of `wg service run` between the two renames of the
    // dispatcher's reserve left t2 in-progress for an agent the registry never heard of, and the
    // reaper had to make up for it. Now the next command that takes the locks finishes the commit.
    for registry_renamed in [false, true] {
        let (wg, _, _) = build_world();
        let (new_graph, new_registry) = reserve_t2_for_agent_100(&wg);
        let new_registry_text = serde_json::to_string_pretty(&new_registry).unwrap();
        plant_half_landed_journal(&wg, &new_graph, &new_registry_text, registry_renamed);
        // A reader that takes no lock sees each file whole, of either commit, until then.
        assert_eq!(wg.task("t2")["status"], "open", "registry renamed: {registry_renamed}");
        let heartbeat = wg.wg(&["heartbeat", "agent-1"]);
        assert!(heartbeat.status.success(), "{}", describe(&heartbeat));
        assert_eq!(std::fs::read_to_string(wg.graph_path()).unwrap(), new_graph, "the graph is the commit's");
        let registry = wg.registry();
        assert_eq!(registry["agents"]["agent-100"], new_registry["agents"]["agent-100"]);
        assert_eq!(registry["next_agent_id"], 101);
        assert!(!wg.dir.join("wg-recover-commit.json").exists(), "the record is removed");
        assert_eq!(temp_files(&wg), 0, "the temps are renamed or removed");
        let state = FileStore::new(WgPaths::new(&wg.dir), false).read().unwrap();
        assert_eq!(half_commit_findings(&state), Vec::<String>::new());
    }
}
