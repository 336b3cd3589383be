//! Concurrent writers (issue 7, suite 2): K processes run `wg` commands on one `.wg/` while
//! `wg service run` dispatches and reaps real agents. No update that a command reported is lost,
//! and every task's attempt counter equals the recovery events in its log (S3).
//!
//!     WG_RELIABILITY_RUNS=200 WG_RELIABILITY_WRITERS=8 WG_RELIABILITY_SEED=3 \
//!       cargo test -p wg-cli --test reliability_concurrent -- --nocapture
//!
//! (`WG_RELIABILITY_RUNS` is the number of commands per writer; default 40, 6 writers.)

mod common;

use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const EXECS: [&str; 5] = ["sleep 0.1", "exit 0", "exit 1", "sleep 0.3", "sleep 5"];

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|text| text.parse().ok()).unwrap_or(default)
}

/// What a command that succeeded promised; checked against the final files.
#[derive(Debug)]
enum Promise {
    /// `wg add --id`: the task exists.
    Added(String),
    /// `wg done` that changed the task: done, with the command's log entry.
    Done { task: String, pid: u32 },
    /// `wg fail`, `wg retry` that acted: its log entry is on the task.
    Logged { task: String, actor: String },
}

struct Shared {
    dir: std::path::PathBuf,
    ids: Mutex<Vec<String>>,
}

fn run_wg(dir: &std::path::Path, args: &[String]) -> (u32, Option<i32>, Value) {
    let child = Command::new(wg_binary())
        .arg("--dir")
        .arg(dir)
        .arg("--json")
        .args(args)
        .env_remove("WG_AGENT_ID")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let output = child.wait_with_output().unwrap();
    (pid, output.status.code(), serde_json::from_slice(&output.stdout).unwrap_or(Value::Null))
}

fn writer(shared: &Shared, number: usize, seed: u64, commands: usize) -> (usize, Vec<Promise>, Vec<String>) {
    let mut rng = StdRng::seed_from_u64(seed ^ (number as u64).wrapping_mul(0x9E37_79B9));
    let mut promises = Vec::new();
    let mut odd_exits = Vec::new();
    for n in 0..commands {
        let task = {
            let ids = shared.ids.lock().unwrap();
            ids[rng.gen_range(0..ids.len())].clone()
        };
        let registry: Value =
            serde_json::from_slice(&std::fs::read(shared.dir.join("service/registry.json")).unwrap_or_default())
                .unwrap_or(Value::Null);
        let agent = registry["agents"]
            .as_object()
            .and_then(|agents| agents.keys().nth(rng.gen_range(0..agents.len().max(1))).cloned())
            .unwrap_or_else(|| "agent-1".to_string());
        let args: Vec<String> = match rng.gen_range(0..6) {
            0 => {
                let id = format!("c{number}-{n}");
                let exec = EXECS[rng.gen_range(0..EXECS.len())];
                vec!["add".into(), format!("Writer {number} #{n}"), "--id".into(), id, "--exec".into(), exec.into()]
            }
            1 => vec!["retry".into(), task, "--reason".into(), format!("writer {number} #{n}")],
            2 => vec!["done".into(), task],
            3 => vec!["fail".into(), task, "--reason".into(), format!("writer {number} #{n}")],
            4 => vec!["heartbeat".into(), agent],
            _ => vec!["agents".into(), "kill".into(), agent, "--grace".into(), "200ms".into()],
        };
        let (pid, code, json) = run_wg(&shared.dir, &args);
        match code {
            Some(0) => match args[0].as_str() {
                "add" => {
                    shared.ids.lock().unwrap().push(args[3].clone());
                    promises.push(Promise::Added(args[3].clone()));
                }
                "done" if json["changed"] == true => promises.push(Promise::Done { task: args[1].clone(), pid }),
                "fail" => {
                    promises.push(Promise::Logged { task: args[1].clone(), actor: format!("wg fail (pid {pid})") })
                }
                "retry" if matches!(json["outcome"].as_str(), Some("requeued" | "restarted")) => {
                    promises.push(Promise::Logged { task: args[1].clone(), actor: format!("wg retry (pid {pid})") })
                }
                _ => {}
            },
            Some(1) => {}
            other => odd_exits.push(format!("wg {args:?} exited {other:?}")),
        }
    }
    (commands, promises, odd_exits)
}

/// A re-queue's log entry: the core's `requeue` marks each with the count it raised.
fn is_recovery_event(message: &str) -> bool {
    wg_core::ops::attempt_marked(message).is_some()
}

#[test]
fn concurrent_writers_beside_a_live_service_lose_no_update_and_count_each_recovery_once() {
    let writers = env_number("WG_RELIABILITY_WRITERS", 6) as usize;
    let commands = env_number("WG_RELIABILITY_RUNS", 40) as usize;
    let seed = env_number("WG_RELIABILITY_SEED", 42);
    let mut wg = Workgraph::fresh();
    wg.write_config("[recovery]\ngrace_ms = 300\nkill_wait_ms = 1000\npoll_interval_ms = 100\nmax_agents = 4\n");
    let mut ids = Vec::new();
    for (number, exec) in EXECS.iter().enumerate() {
        let id = format!("w{number}");
        wg.wg_json(&["add", "Initial work", "--id", &id, "--exec", exec]);
        ids.push(id);
    }
    wg.start_service();
    let shared = Arc::new(Shared { dir: wg.dir.clone(), ids: Mutex::new(ids) });
    let started = Instant::now();
    let handles: Vec<_> = (0..writers)
        .map(|number| {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || writer(&shared, number, seed, commands))
        })
        .collect();
    let (mut total, mut promises, mut odd_exits) = (0, Vec::new(), Vec::new());
    for handle in handles {
        let (count, made, odd) = handle.join().unwrap();
        total += count;
        promises.extend(made);
        odd_exits.extend(odd);
    }
    let elapsed = started.elapsed();
    // Let the service settle what the writers left (short agents finish, kills get reaped).
    std::thread::sleep(Duration::from_millis(500));
    let listed = wg.wg_json(&["list"]);
    let tasks: std::collections::BTreeMap<String, Value> = listed["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|task| (task["id"].as_str().unwrap().to_string(), task.clone()))
        .collect();
    let logged_by =
        |task: &Value, actor: &str| task["log"].as_array().is_some_and(|log| log.iter().any(|e| e["user"] == actor));
    let mut lost = Vec::new();
    for promise in &promises {
        let kept = match promise {
            Promise::Added(id) => tasks.contains_key(id),
            Promise::Done { task, pid } => {
                tasks[task]["status"] == "done" && logged_by(&tasks[task], &format!("wg done (pid {pid})"))
            }
            Promise::Logged { task, actor } => logged_by(&tasks[task], actor),
        };
        if !kept {
            lost.push(format!("{promise:?}: {}", tasks.get(promise_task(promise)).cloned().unwrap_or_default()));
        }
    }
    let mut miscounted = Vec::new();
    for (id, task) in &tasks {
        let events = log_messages(task).iter().filter(|message| is_recovery_event(message)).count() as u64;
        if task["retry_count"].as_u64().unwrap_or(0) != events {
            miscounted.push(format!("{id}: retry_count {} != {events} recovery events: {task}", task["retry_count"]));
        }
    }
    eprintln!(
        "concurrent writers: seed {seed}, {writers} writers, {total} commands in {elapsed:.1?} beside a live service, \
         {} promises checked, {} tasks, {} lost updates, {} miscounted tasks, {} abnormal exits",
        promises.len(),
        tasks.len(),
        lost.len(),
        miscounted.len(),
        odd_exits.len()
    );
    assert!(lost.is_empty(), "lost updates:\n{}", lost.join("\n"));
    assert!(miscounted.is_empty(), "S3:\n{}", miscounted.join("\n"));
    assert!(odd_exits.is_empty(), "every wg exits 0 or 1:\n{}", odd_exits.join("\n"));
}

fn promise_task(promise: &Promise) -> &str {
    match promise {
        Promise::Added(id) => id,
        Promise::Done { task, .. } | Promise::Logged { task, .. } => task,
    }
}
