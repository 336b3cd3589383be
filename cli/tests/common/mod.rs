//! Shared set-up of the CLI tests: a temp `.wg/`, the real `wg` binary, real agent processes.
//! Every process a test starts is ended by pid when the test's guard drops.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn wg_binary() -> &'static str {
    env!("CARGO_BIN_EXE_wg")
}

pub struct Workgraph {
    pub root: tempfile::TempDir,
    pub dir: PathBuf,
    children: Vec<Child>,
}

impl Workgraph {
    /// An initialised `.wg/` with fast settings for tests.
    pub fn fresh() -> Self {
        let root = tempfile::tempdir().expect("temp dir");
        let dir = root.path().join(".wg");
        let workgraph = Workgraph { root, dir, children: Vec::new() };
        let output = workgraph.wg(&["init"]);
        assert!(output.status.success(), "wg init: {}", describe(&output));
        workgraph.write_config("[recovery]\ngrace_ms = 2000\npoll_interval_ms = 200\n");
        workgraph
    }

    /// An empty temp folder, with no `.wg/` yet: the test runs `wg init` itself. Whatever service
    /// and agents the test starts in `<root>/.wg` are ended when the guard drops.
    pub fn uninitialised() -> Self {
        let root = tempfile::tempdir().expect("temp dir");
        let dir = root.path().join(".wg");
        Workgraph { root, dir, children: Vec::new() }
    }

    pub fn write_config(&self, text: &str) {
        std::fs::write(self.dir.join("config.toml"), text).unwrap();
    }

    pub fn graph_path(&self) -> PathBuf {
        self.dir.join("graph.jsonl")
    }

    pub fn registry_path(&self) -> PathBuf {
        self.dir.join("service/registry.json")
    }

    pub fn wg(&self, args: &[&str]) -> Output {
        Command::new(wg_binary())
            .arg("--dir")
            .arg(&self.dir)
            .args(args)
            .env_remove("WG_AGENT_ID")
            .output()
            .expect("run wg")
    }

    /// `wg --json ...`, asserting success, returning the JSON.
    pub fn wg_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let output = self.wg(&all);
        assert!(output.status.success(), "wg {args:?} failed: {}", describe(&output));
        serde_json::from_slice(&output.stdout).expect("JSON output")
    }

    pub fn task(&self, id: &str) -> Value {
        self.wg_json(&["show", id])["task"].clone()
    }

    pub fn registry(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.registry_path()).unwrap_or_else(|_| b"{}".to_vec())).unwrap()
    }

    /// Starts `sh -c command` as an agent of `task_id` the way another tool would have: in its own
    /// process group, with a registry entry naming its pid and start time. Returns the pid.
    pub fn start_agent(&mut self, agent_id: &str, task_id: &str, command: &str) -> i32 {
        let mut child = Command::new("sh");
        child.arg("-c").arg(command).process_group(0).stdin(Stdio::null());
        let child = child.spawn().expect("spawn agent");
        let pid = child.id() as i32;
        self.children.push(child);
        let start_ticks = start_ticks(pid).expect("the agent runs");
        self.append_task(json!({"kind":"task","id":task_id,"title":task_id,"status":"in-progress","assigned":agent_id,"exec":command}));
        self.put_agent(json!({
            "id": agent_id, "pid": pid, "task_id": task_id, "executor": "shell",
            "started_at": now_rfc3339(), "last_heartbeat": now_rfc3339(), "status": "working",
            "output_file": format!(".wg/agents/{agent_id}/output.log"), "process_start_ticks": start_ticks
        }));
        pid
    }

    pub fn append_task(&self, task: Value) {
        let mut text = std::fs::read_to_string(self.graph_path()).unwrap();
        text.push_str(&serde_json::to_string(&task).unwrap());
        text.push('\n');
        std::fs::write(self.graph_path(), text).unwrap();
    }

    pub fn put_agent(&self, agent: Value) {
        let mut registry = self.registry();
        if registry.get("agents").is_none() {
            registry = json!({"agents": {}, "next_agent_id": 100});
        }
        let id = agent["id"].as_str().unwrap().to_string();
        registry["agents"][id] = agent;
        std::fs::write(self.registry_path(), serde_json::to_string_pretty(&registry).unwrap()).unwrap();
    }

    /// Starts `wg service run` in the background; it is stopped when the test ends.
    pub fn start_service(&mut self) {
        let mut command = Command::new(wg_binary());
        command.arg("--dir").arg(&self.dir).args(["service", "run"]).stdin(Stdio::null()).stderr(Stdio::null());
        let service = command.spawn().expect("start the service");
        let pid = u64::from(service.id());
        self.children.push(service);
        // Up when its own record is written: a stale record of a killed service may be there first.
        let record = self.dir.join("service/wg-recover-service.json");
        wait_until("the service is up", Duration::from_secs(10), || {
            let text = std::fs::read_to_string(&record).unwrap_or_default();
            serde_json::from_str::<Value>(&text).is_ok_and(|record| record["pid"].as_u64() == Some(pid))
        });
    }

    /// Reaps agent children of the test that have exited (they would linger as zombies).
    pub fn reap_finished(&mut self) {
        for child in &mut self.children {
            let _ = child.try_wait();
        }
    }
}

impl Drop for Workgraph {
    fn drop(&mut self) {
        // A background service (`wg service start`) is not our child: stop it by its verified pid.
        let record = std::fs::read_to_string(self.dir.join("service/wg-recover-service.json")).unwrap_or_default();
        if let Ok(record) = serde_json::from_str::<Value>(&record) {
            let (pid, ticks) = (record["pid"].as_i64().unwrap_or(0) as i32, record["start_ticks"].as_u64());
            if pid > 1 && ticks.is_some() && start_ticks(pid) == ticks {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGTERM);
            }
        }
        // Agents the service spawned: end them by pid, from the registry.
        if let Some(agents) = self.registry().get("agents").and_then(Value::as_object) {
            for agent in agents.values() {
                let (Some(pid), Some(ticks)) = (agent["pid"].as_i64(), agent["process_start_ticks"].as_u64()) else {
                    continue;
                };
                if pid > 1 && start_ticks(pid as i32) == Some(ticks) {
                    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::SIGKILL);
                }
            }
        }
        for child in &mut self.children {
            let pid = child.id() as i32;
            if child.try_wait().ok().flatten().is_none() {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGTERM);
                let deadline = Instant::now() + Duration::from_secs(3);
                while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

pub fn describe(output: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Field 22 of /proc/<pid>/stat, or None when the process is gone or a zombie.
pub fn start_ticks(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    if fields[0] == "Z" {
        return None;
    }
    fields.get(19)?.parse().ok()
}

pub fn alive(pid: i32) -> bool {
    start_ticks(pid).is_some()
}

/// Polls `condition` every 10 ms until it holds; panics with `what` after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn now_rfc3339() -> String {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    wg_core::time::format_rfc3339(ms)
}

pub fn log_messages(task: &Value) -> Vec<String> {
    task["log"]
        .as_array()
        .map(|log| log.iter().map(|entry| entry["message"].as_str().unwrap_or("").to_string()).collect())
        .unwrap_or_default()
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
