//! A temp `.wg/` made by the real `wg init`, and the real `wg` binary.

use crate::procs::{run_measured, Finished};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The `wg` binary the benches run: `$WG_BIN`, or `wg` beside the bench executable's folder
/// (`<target>/release/deps/<bench>` → `<target>/release/wg`). It is not built for you: cargo
/// cannot depend on another crate's binary, so build it first (README.md).
pub fn wg_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("WG_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the bench executable's path");
    let release = exe.parent().and_then(Path::parent).expect("<target>/release/deps/<bench>");
    let wg = release.join("wg");
    assert!(
        wg.is_file(),
        "{} not found: build it first with `CARGO_TARGET_DIR=<same target> cargo build --release -p wg-cli --bin wg`, \
         or set WG_BIN",
        wg.display()
    );
    wg
}

/// An initialised `.wg/` in a temp folder, removed on drop.
pub struct TempWg {
    pub root: tempfile::TempDir,
    pub dir: PathBuf,
}

impl TempWg {
    /// Runs the real `wg init`.
    pub fn init() -> TempWg {
        let root = tempfile::Builder::new().prefix("wg-bench-").tempdir().expect("temp dir");
        let dir = root.path().join(".wg");
        let workgraph = TempWg { root, dir };
        workgraph.run(&["init"]).assert_success("wg init");
        workgraph
    }

    /// `wg --dir <dir> <args>`, not yet run, with no agent identity inherited.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(wg_binary());
        command.arg("--dir").arg(&self.dir).args(args).env_remove("WG_AGENT_ID").env_remove("WG_DIR");
        command
    }

    /// Runs `wg <args>` to the end, measuring it.
    pub fn run(&self, args: &[&str]) -> Finished {
        run_measured(&mut self.command(args))
    }

    pub fn graph_path(&self) -> PathBuf {
        self.dir.join("graph.jsonl")
    }

    pub fn registry_path(&self) -> PathBuf {
        self.dir.join("service/registry.json")
    }

    pub fn write_config(&self, text: &str) {
        std::fs::write(self.dir.join("config.toml"), text).expect("write config.toml");
    }

    /// Replaces `graph.jsonl` with these task lines.
    pub fn write_tasks(&self, tasks: &[Value]) {
        let mut text = String::new();
        for task in tasks {
            text.push_str(&task.to_string());
            text.push('\n');
        }
        std::fs::write(self.graph_path(), text).expect("write graph.jsonl");
    }

    /// Replaces `service/registry.json` with these agent entries.
    pub fn write_agents(&self, agents: &[Value]) {
        let map: serde_json::Map<String, Value> =
            agents.iter().map(|agent| (agent["id"].as_str().expect("agent id").to_string(), agent.clone())).collect();
        let registry = json!({"agents": map, "next_agent_id": 100});
        std::fs::write(self.registry_path(), serde_json::to_string_pretty(&registry).expect("json"))
            .expect("write registry.json");
    }

    /// The registry as JSON; `{}` while there is none (or mid-write by another tool).
    pub fn registry(&self) -> Value {
        std::fs::read(self.registry_path())
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_else(|| json!({}))
    }

    /// The status of a task, read from the graph file.
    pub fn task_status(&self, task_id: &str) -> Option<String> {
        let text = std::fs::read_to_string(self.graph_path()).ok()?;
        text.lines().filter_map(|line| serde_json::from_str::<Value>(line).ok()).find_map(|task| {
            (task["kind"] == "task" && task["id"] == task_id).then(|| task["status"].as_str().unwrap_or("").to_string())
        })
    }
}
