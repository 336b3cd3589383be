//! `wg retry` with a real `wg service run`: the time from starting `wg retry t1` to the new
//! agent's process running (a new registry entry for t1 with a pid > 0 whose `/proc` entry
//! exists). The service polls only once a minute (`poll_interval_ms = 60000`), so a fast
//! respawn can only come from its wake-ups (the retry's datagram, the old agent's SIGCHLD).
//!
//! Goal: <= 100 ms.

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use wg_benches::procs::{become_subreaper, kill_group_checked, reap, reap_orphans, start_ticks, stat, wait_for};
use wg_benches::{Samples, TempWg};

const TASK_ID: &str = "t1";
const GOAL: Duration = Duration::from_millis(100);

/// A `.wg/` with its service running and task t1 dispatched to an agent running `sleep 600`.
struct Fixture {
    workgraph: TempWg,
    service: Child,
    service_ticks: u64,
}

/// A running agent of `task_id` not named in `known`: (id, pid).
fn running_agent(registry: &Value, task_id: &str, known: &BTreeSet<String>) -> Option<(String, i32)> {
    let agents = registry.get("agents")?.as_object()?;
    agents.values().find_map(|agent| {
        let id = agent["id"].as_str()?;
        let pid = agent["pid"].as_i64().filter(|pid| *pid > 0)? as i32;
        let running = matches!(agent["status"].as_str(), Some("starting" | "working"));
        let recorded_ticks = agent["process_start_ticks"].as_u64();
        let alive = start_ticks(pid).is_some_and(|ticks| recorded_ticks.is_none_or(|recorded| recorded == ticks));
        (agent["task_id"] == task_id && running && alive && !known.contains(id)).then(|| (id.to_string(), pid))
    })
}

fn agent_ids(registry: &Value) -> BTreeSet<String> {
    registry.get("agents").and_then(Value::as_object).map(|agents| agents.keys().cloned().collect()).unwrap_or_default()
}

impl Fixture {
    fn start() -> Fixture {
        let workgraph = TempWg::init();
        workgraph.write_config("[recovery]\npoll_interval_ms = 60000\n");
        let log = std::fs::File::create(workgraph.root.path().join("service.log")).expect("service log");
        let mut command = workgraph.command(&["service", "run"]);
        command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
        let service = command.spawn().expect("start wg service run");
        let service_ticks = stat(service.id() as i32).expect("the service runs").start_ticks;
        let fixture = Fixture { workgraph, service, service_ticks };
        let pid_file = fixture.workgraph.dir.join("service/wg-recover-service.json");
        let up = wait_for(Duration::from_secs(10), Duration::from_millis(5), || pid_file.exists());
        assert!(up, "the service did not start within 10 s: {}", fixture.service_log());
        fixture.workgraph.run(&["add", TASK_ID, "--id", TASK_ID, "--exec", "sleep 600"]).assert_success("wg add");
        fixture.current_agent();
        fixture
    }

    fn service_log(&self) -> String {
        std::fs::read_to_string(self.workgraph.root.path().join("service.log")).unwrap_or_default()
    }

    /// The agent running t1 now, waiting up to 10 s for the service to start one.
    fn current_agent(&self) -> (String, i32) {
        let mut found = None;
        let ok = wait_for(Duration::from_secs(10), Duration::from_millis(1), || {
            found = running_agent(&self.workgraph.registry(), TASK_ID, &BTreeSet::new());
            found.is_some()
        });
        assert!(ok, "no agent runs {TASK_ID} 10 s on; service log:\n{}", self.service_log());
        found.expect("checked above")
    }

    /// One retry, timed from spawning `wg retry t1` until a new agent of t1 runs.
    fn one_retry(&self) -> Duration {
        self.current_agent();
        let known = agent_ids(&self.workgraph.registry());
        let mut command = self.workgraph.command(&["retry", TASK_ID, "--reason", "bench"]);
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let started = Instant::now();
        let retry = command.spawn().expect("spawn wg retry");
        let respawned = wait_for(Duration::from_secs(10), Duration::from_micros(500), || {
            running_agent(&self.workgraph.registry(), TASK_ID, &known).is_some()
        });
        let elapsed = started.elapsed();
        let output = retry.wait_with_output().expect("wait for wg retry");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "wg retry failed: {stdout}{}", String::from_utf8_lossy(&output.stderr));
        assert!(respawned, "no new agent for {TASK_ID} 10 s after `wg retry` ({stdout}); log:\n{}", self.service_log());
        elapsed
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let pid = self.service.id() as i32;
        if pid > 1 && start_ticks(pid) == Some(self.service_ticks) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGTERM);
            wait_for(Duration::from_secs(5), Duration::from_millis(5), || start_ticks(pid) != Some(self.service_ticks));
            let _ = self.service.kill();
        }
        let _ = self.service.wait();
        // Agents outlive the service by design; they are orphans of ours now (subreaper).
        let registry = self.workgraph.registry();
        for agent in registry.get("agents").and_then(Value::as_object).into_iter().flat_map(|agents| agents.values()) {
            let (Some(pid), Some(ticks)) = (agent["pid"].as_i64(), agent["process_start_ticks"].as_u64()) else {
                continue;
            };
            let pid = pid as i32;
            kill_group_checked(pid, ticks);
            wait_for(Duration::from_secs(2), Duration::from_millis(1), || start_ticks(pid) != Some(ticks));
            reap(pid);
        }
        reap_orphans();
    }
}

fn retry_to_respawn(c: &mut Criterion) {
    become_subreaper();
    let mut group = c.benchmark_group("retry_to_respawn");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sampling_mode(SamplingMode::Flat);
    let samples = Samples::new();
    let mut fixture = None;
    group.bench_function("cooperative_agent", |bencher| {
        let fixture = fixture.get_or_insert_with(Fixture::start);
        bencher.iter_custom(|iterations| {
            (0..iterations)
                .map(|_| {
                    let elapsed = fixture.one_retry();
                    samples.push(elapsed);
                    elapsed
                })
                .sum()
        })
    });
    group.finish();
    drop(fixture);
    if samples.count() > 0 {
        eprintln!("{}", samples.summary("retry_to_respawn/cooperative_agent", Some(GOAL)));
    }
}

criterion_group!(benches, retry_to_respawn);
criterion_main!(benches);
