//! A scenario's `[world]` made real: a temp folder with `.wg/` (graph, registry, config), the
//! agents already running, the processes squatting on reused pids, and the `wg service run`.

use super::procs::{self, OurChild};
use super::setup_error::SetupError;
use crate::system::store::WgPaths;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use wg_core::settings::Settings;
use wg_core::time::format_rfc3339;
use wg_sim::scenario::{AgentProcess, AgentSpec, Behaviour, Scenario, TaskSpec};

/// The real run sweeps often so that it takes seconds, whatever the scenario's poll interval.
pub const POLL_INTERVAL_MAX_MS: u64 = 200;

/// Planted on every task: a field no tool knows, which must survive every write (S8).
pub const PLANTED_FIELD: &str = "smoke_planted";

/// A line of a kind no tool knows; it must survive byte for byte (S8).
pub const FOREIGN_LINE: &str = r#"{"kind":"resource","id":"gpu-0","owner":"another tool"}"#;

/// How far before "now" a registry entry written "by another tool" says its agent started, so
/// that a process started now is clearly not it.
const FOREIGN_ENTRY_AGE_MS: i64 = 60_000;

/// How long the service gets to write its pid file.
const SERVICE_START_LIMIT: Duration = Duration::from_secs(5);

/// An unrelated program holding a pid an entry names. It writes any signal it catches to
/// `marker`; it must still run, and `marker` must be empty, at the end (S2).
pub struct Squatter {
    pub agent: String,
    pub proc: OurChild,
    pub marker: PathBuf,
}

/// A scenario's world made real: a temp folder with its `.wg/`, the service, and every process
/// the run started (each ended by pid at the end). The simulator's counterpart is `wg_sim::world::World`.
pub struct RealWorld {
    pub root: PathBuf,
    pub paths: WgPaths,
    pub wg: PathBuf,
    /// Agents running before the run, by id: we started them, so we reap them.
    pub agents: Vec<(String, OurChild)>,
    pub squatters: Vec<Squatter>,
    pub service: Option<OurChild>,
    /// `PATH` with the `wg` binary's folder first: agents call `wg done`.
    path_env: String,
    ended: bool,
}

static RUN_NUMBER: AtomicU64 = AtomicU64::new(0);

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Behaviours as one shell script. Newlines, not `; `: `cmd &; next` is a syntax error.
pub fn script(behaviours: &[Behaviour]) -> String {
    behaviours.iter().map(Behaviour::shell).collect::<Vec<_>>().join("\n")
}

impl RealWorld {
    /// Writes `.wg/` and starts the pre-existing agents; the service is started separately.
    pub fn build(scenario: &Scenario, wg: &Path) -> Result<RealWorld, SetupError> {
        let number = RUN_NUMBER.fetch_add(1, Ordering::Relaxed);
        let root = std::env::temp_dir().join(format!("wg-smoke-{}-{number}-{}", std::process::id(), scenario.name));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("markers")).map_err(|source| SetupError::file("create", &root, source))?;
        let wg_folder = wg.parent().map(Path::to_path_buf).unwrap_or_default();
        let path_env = format!("{}:{}", wg_folder.display(), std::env::var("PATH").unwrap_or_default());
        let paths = WgPaths::new(root.join(".wg"));
        let mut world = RealWorld {
            root,
            paths,
            wg: wg.to_path_buf(),
            agents: Vec::new(),
            squatters: Vec::new(),
            service: None,
            path_env,
            ended: false,
        };
        world.init()?;
        world.write(&world.paths.config(), &config_text(scenario))?;
        world.write(&world.paths.graph(), &world.graph_text(scenario))?;
        let registry = world.start_agents(scenario)?;
        world.write(&world.paths.registry(), &registry)?;
        Ok(world)
    }

    fn init(&self) -> Result<(), SetupError> {
        let output = Command::new(&self.wg)
            .arg("--dir")
            .arg(&self.paths.dir)
            .arg("init")
            .stdin(Stdio::null())
            .output()
            .map_err(|source| SetupError::CannotRun { program: self.wg.clone(), source })?;
        if !output.status.success() {
            return Err(SetupError::InitFailed { stderr: String::from_utf8_lossy(&output.stderr).into_owned() });
        }
        let service_dir = self.paths.service_dir();
        std::fs::create_dir_all(&service_dir).map_err(|source| SetupError::file("create", &service_dir, source))
    }

    fn write(&self, path: &Path, text: &str) -> Result<(), SetupError> {
        std::fs::write(path, text).map_err(|source| SetupError::file("write", path, source))
    }

    pub fn wg_dir(&self) -> String {
        self.paths.dir.display().to_string()
    }

    /// One line per task as in the simulator, plus [`PLANTED_FIELD`] and [`FOREIGN_LINE`].
    fn graph_text(&self, scenario: &Scenario) -> String {
        let mut lines: Vec<String> = scenario.tasks.iter().map(|task| self.task_line(scenario, task)).collect();
        lines.push(FOREIGN_LINE.to_string());
        lines.iter().map(|line| format!("{line}\n")).collect()
    }

    fn task_line(&self, scenario: &Scenario, task: &TaskSpec) -> String {
        let mut object = task.graph_object(self.exec_for_service(scenario, task));
        object.insert(PLANTED_FIELD.into(), json!({"by": "wg-sim --real", "keep": [1, 2]}));
        Value::Object(object).to_string()
    }

    /// What the service's agents run. The simulator picks `exec` for a task's first agent and
    /// `respawn_exec` for later ones; a task with a pre-existing agent has had its first, and
    /// for the others a marker folder (mkdir is atomic) tells the first spawn from the rest.
    fn exec_for_service(&self, scenario: &Scenario, task: &TaskSpec) -> Option<String> {
        let first = script(&task.exec);
        let later = task.respawn_exec.as_deref().map_or_else(|| first.clone(), script);
        let had_first = scenario.agents.iter().any(|agent| agent.task == task.id);
        if task.exec.is_empty() && task.respawn_exec.is_none() {
            return None;
        }
        if had_first || first == later {
            return Some(later);
        }
        let marker = self.root.join("markers").join(format!("first-{}", task.id));
        Some(format!("if mkdir '{}' 2>/dev/null; then\n{first}\nelse\n{later}\nfi", marker.display()))
    }

    fn agent_command(&self, agent_id: &str, task_id: &str, shell: &str) -> Command {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(shell)
            .env("WG_TASK_ID", task_id)
            .env("WG_AGENT_ID", agent_id)
            .env("WG_DIR", &self.paths.dir)
            .env("PATH", &self.path_env)
            .stdin(Stdio::null());
        if let Ok(log) = std::fs::File::create(self.root.join(format!("{agent_id}.log"))) {
            if let Ok(copy) = log.try_clone() {
                command.stderr(copy);
            }
            command.stdout(log);
        }
        command
    }

    /// Starts each `[[world.agent]]` as it stands at the start, and returns the registry text.
    fn start_agents(&mut self, scenario: &Scenario) -> Result<String, SetupError> {
        let mut entries = Map::new();
        let mut next_agent_id = 1;
        for spec in &scenario.agents {
            let entry = self.start_agent(scenario, spec)?;
            entries.insert(spec.id.clone(), entry);
            if let Some(number) = spec.id.strip_prefix("agent-").and_then(|n| n.parse::<u64>().ok()) {
                next_agent_id = next_agent_id.max(number + 1);
            }
        }
        // `service_note` is unknown to every tool: it must survive (S8).
        let registry = json!({"agents": entries, "next_agent_id": next_agent_id, "service_note": "kept"});
        Ok(serde_json::to_string_pretty(&registry).expect("JSON") + "\n")
    }

    fn start_agent(&mut self, scenario: &Scenario, spec: &AgentSpec) -> Result<Value, SetupError> {
        let behaviours = scenario.tasks.iter().find(|t| t.id == spec.task).map(|t| t.exec.clone()).unwrap_or_default();
        let shell = match spec.process {
            AgentProcess::Running => script(&behaviours),
            // A stand-in we stop at once: its pid and start ticks are then those of a process
            // that existed and exited.
            AgentProcess::Exited | AgentProcess::PidReused => "sleep 3600".to_string(),
        };
        let started_at_ms = now_ms();
        let mut proc = OurChild::start(&mut self.agent_command(&spec.id, &spec.task, &shell), true)?;
        let (mut pid, ticks) = (proc.pid, proc.start_ticks);
        if spec.process != AgentProcess::Running {
            proc.end(false);
        }
        if spec.process == AgentProcess::PidReused {
            pid = self.start_squatter(&spec.id)?;
        }
        let mut entry = json!({
            "id": spec.id, "pid": pid, "task_id": spec.task, "executor": "shell",
            "started_at": format_rfc3339(started_at_ms), "last_heartbeat": format_rfc3339(started_at_ms),
            "status": spec.status, "output_file": format!(".wg/agents/{}/output.log", spec.id),
        });
        if spec.start_recorded {
            entry["process_start_ticks"] = ticks.into();
        } else {
            entry["started_at"] = format_rfc3339(started_at_ms - FOREIGN_ENTRY_AGE_MS).into();
        }
        self.agents.push((spec.id.clone(), proc));
        Ok(entry)
    }

    /// Starts the unrelated program that now "has" `agent`'s pid, and returns its pid. Its start
    /// ticks differ from the entry's (it started after the stand-in), as with a real reuse.
    fn start_squatter(&mut self, agent: &str) -> Result<i32, SetupError> {
        // Start ticks have 10 ms resolution: wait one tick so that ours differ from the stand-in's.
        std::thread::sleep(Duration::from_millis(20));
        let marker = self.root.join(format!("squatter-{agent}.signals"));
        let shell = format!(
            "for s in TERM INT HUP USR1 USR2; do trap \"echo $s >> '{}'\" $s; done\nwhile :; do sleep 0.2; done",
            marker.display()
        );
        let mut command = Command::new("sh");
        command.arg("-c").arg(shell).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        let proc = OurChild::start(&mut command, true)?;
        let pid = proc.pid;
        self.squatters.push(Squatter { agent: agent.to_string(), proc, marker });
        Ok(pid)
    }

    /// Starts `wg service run` and waits for its pid file.
    pub fn start_service(&mut self) -> Result<(), SetupError> {
        let _ = std::fs::remove_file(self.paths.service_pid_file());
        let log_path = self.root.join("service.out");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|source| SetupError::file("open", &log_path, source))?;
        let mut command = Command::new(&self.wg);
        command
            .arg("--dir")
            .arg(&self.paths.dir)
            .args(["service", "run"])
            .env("PATH", &self.path_env)
            .env("WG_DIR", &self.paths.dir)
            .env_remove("WG_AGENT_ID")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|source| SetupError::file("open", &log_path, source))?)
            .stderr(log);
        let mut service = OurChild::start(&mut command, true)?;
        let deadline = Instant::now() + SERVICE_START_LIMIT;
        while !self.paths.service_pid_file().exists() {
            if !service.poll() || Instant::now() > deadline {
                service.end(false);
                return Err(SetupError::ServiceDidNotStart { output_tail: self.service_output_tail() });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.service = Some(service);
        Ok(())
    }

    /// The end of the service's own output, for failure messages.
    pub fn service_output_tail(&self) -> String {
        let text = std::fs::read_to_string(self.root.join("service.out")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }

    /// Reaps whatever of ours has exited (an unreaped agent would linger as a zombie).
    pub fn poll_children(&mut self) {
        for (_, agent) in &mut self.agents {
            agent.poll();
        }
    }
}

/// `.wg/config.toml` from the world's settings. The crash-loop keys are written with their
/// defaults: no scenario waits out a backoff, so nothing needs scaling down.
fn config_text(scenario: &Scenario) -> String {
    let service = &scenario.service;
    let defaults = Settings::default();
    let backoffs: Vec<String> = defaults.crash_loop.backoffs_ms.iter().map(u64::to_string).collect();
    format!(
        "[recovery]\ngrace_ms = {}\nkill_wait_ms = {}\nheartbeat_timeout_ms = {}\nmax_agents = {}\n\
         poll_interval_ms = {}\nstarting_timeout_ms = {}\ncrash_loop_deaths = {}\ncrash_loop_window_ms = {}\n\
         crash_loop_backoffs_ms = [{}]\n",
        service.grace_ms,
        service.kill_wait_ms,
        service.heartbeat_timeout_ms.unwrap_or(0),
        service.max_agents,
        service.poll_interval_ms.min(POLL_INTERVAL_MAX_MS),
        defaults.starting_timeout_ms,
        defaults.crash_loop.deaths_max,
        defaults.crash_loop.window_ms,
        backoffs.join(", ")
    )
}

impl RealWorld {
    /// Ends every process this run started, by pid, and reports any that outlived it.
    pub fn shut_down(&mut self) -> Vec<String> {
        if std::mem::replace(&mut self.ended, true) {
            return Vec::new();
        }
        // The service first, so that it respawns nothing while its agents are ended.
        if let Some(service) = &mut self.service {
            service.end(true);
        }
        if let Ok(bytes) = std::fs::read(self.paths.registry()) {
            if let Ok(registry) = wg_core::registry::Registry::parse(&bytes) {
                registry.agents().for_each(|agent| {
                    procs::kill_agent_group(agent);
                });
            }
        }
        self.agents.iter_mut().for_each(|(_, agent)| agent.end(false));
        self.squatters.iter_mut().for_each(|squatter| squatter.proc.end(false));
        self.sweep_leftovers()
    }

    /// Anything still running with this run's `WG_DIR` escaped its group: end it, and say so.
    fn sweep_leftovers(&self) -> Vec<String> {
        // SIGKILLed processes take a moment to leave /proc: look again before calling one a leftover.
        let mut left = procs::processes_of(&self.wg_dir());
        for _ in 0..20 {
            if left.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
            left = procs::processes_of(&self.wg_dir());
        }
        let mut found = Vec::new();
        for (pid, ticks, comm) in left {
            procs::signal_verified(pid, ticks, rustix::process::Signal::Kill);
            found.push(format!("process {pid} ({comm}) outlived the run's process groups; killed it"));
        }
        found
    }

    /// Removes the temp folder (kept when the scenario failed, to be looked at).
    pub fn remove_files(&self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

impl Drop for RealWorld {
    fn drop(&mut self) {
        self.shut_down();
    }
}
