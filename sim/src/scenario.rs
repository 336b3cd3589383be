//! The scenario file format: a world, what happens to it, and what must hold.
//!
//! This module is the public parsing API shared by the simulator and the real-process runner:
//! both read the same file through [`parse`]. Behaviours are named so that each maps to a shell
//! command ([`Behaviour::shell`]), which is what the real runner executes and what the simulator
//! writes into the task's `exec` field.
//!
//! Errors name the file, line and column and say what was expected.

pub mod command_line;
pub mod names;

pub use command_line::{Command, CommandLine};
use names::Names;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// A scenario file that could not be read or understood.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct ScenarioError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Why the scenario files named on a command line could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioFilesError {
    #[error("{}: {source}", folder.display())]
    CannotList { folder: PathBuf, source: std::io::Error },
    /// A run of nothing must not pass.
    #[error("{}: no scenario file (*.toml) in this folder", .0.display())]
    NoneInFolder(PathBuf),
}

/// What an agent process does. Each maps to a shell fragment for the real runner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Runs until killed.
    Hang,
    /// Runs until SIGKILL: SIGTERM is ignored.
    HangIgnoringTerm,
    /// Ends on its own after `after_ms`: exits with `code`, or dies (as if OOM-killed) without one.
    ExitAfter { after_ms: u64, code: Option<i32> },
    /// Calls `wg done $WG_TASK_ID` after `after_ms`, then exits 0.
    DoneAfter { after_ms: u64 },
    /// Calls `wg fail $WG_TASK_ID` after `after_ms`, then exits 1.
    FailAfter { after_ms: u64 },
    /// Calls `wg heartbeat $WG_AGENT_ID` every `every_ms` while it runs.
    HeartbeatEvery { every_ms: u64 },
    /// Starts `count` children that hang (the kill must reach them too).
    SpawnChildren { count: u32 },
}

impl Behaviour {
    /// The shell fragment the real runner uses for this behaviour.
    pub fn shell(&self) -> String {
        let seconds = |ms: &u64| format!("{}.{:03}", ms / 1000, ms % 1000);
        match self {
            Behaviour::Hang => "sleep 3600".into(),
            Behaviour::HangIgnoringTerm => "trap '' TERM; sleep 3600".into(),
            Behaviour::ExitAfter { after_ms, code: Some(code) } => format!("sleep {}; exit {code}", seconds(after_ms)),
            Behaviour::ExitAfter { after_ms, code: None } => format!("sleep {}; kill -9 $$", seconds(after_ms)),
            Behaviour::DoneAfter { after_ms } => format!("sleep {}; wg done $WG_TASK_ID", seconds(after_ms)),
            Behaviour::FailAfter { after_ms } => {
                format!("sleep {}; wg fail $WG_TASK_ID --reason scripted; exit 1", seconds(after_ms))
            }
            Behaviour::HeartbeatEvery { every_ms } => {
                format!("(while :; do wg heartbeat $WG_AGENT_ID; sleep {}; done) &", seconds(every_ms))
            }
            Behaviour::SpawnChildren { count } => format!("for i in $(seq {count}); do sleep 3600 & done"),
        }
    }

    fn parse(text: &str) -> Result<Behaviour, String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let duration = |index: usize| -> Result<u64, String> {
            words
                .get(index)
                .ok_or_else(|| format!("{:?} needs a duration, e.g. `{} 2s`", words[0], words[0]))
                .and_then(|word| parse_duration_ms(word).map_err(|error| error.to_string()))
        };
        let behaviour = match words.first().copied() {
            Some("hang") => Behaviour::Hang,
            Some("hang-ignoring-term") => Behaviour::HangIgnoringTerm,
            Some("exit-after") => {
                let code = match words.get(2..) {
                    Some(["code", code]) => {
                        Some(code.parse().map_err(|_| format!("exit code {code:?} is not a number"))?)
                    }
                    Some([]) | None => None,
                    Some(_) => return Err("expected `exit-after <duration> [code <n>]`".into()),
                };
                Behaviour::ExitAfter { after_ms: duration(1)?, code }
            }
            Some("done-after") => Behaviour::DoneAfter { after_ms: duration(1)? },
            Some("fail-after") => Behaviour::FailAfter { after_ms: duration(1)? },
            Some("heartbeat-every") => Behaviour::HeartbeatEvery { every_ms: duration(1)? },
            Some("spawn-children") => {
                let count = words.get(1).and_then(|n| n.parse().ok()).ok_or("expected `spawn-children <count>`")?;
                Behaviour::SpawnChildren { count }
            }
            _ => {
                return Err(format!(
                    "unknown behaviour {text:?}; expected one of hang, hang-ignoring-term, exit-after T [code N], \
                 done-after T, fail-after T, heartbeat-every T, spawn-children N"
                ))
            }
        };
        Ok(behaviour)
    }
}

pub use wg_core::time::parse_duration_ms;

/// The scenario files named: files as given, folders as their `*.toml` (sorted). A folder with
/// none is an error: a run of nothing must not pass.
pub fn scenario_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ScenarioFilesError> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let entries = std::fs::read_dir(path)
                .map_err(|source| ScenarioFilesError::CannotList { folder: path.clone(), source })?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .filter(|file| file.is_file() && file.extension().is_some_and(|ext| ext == "toml"))
                .collect();
            if found.is_empty() {
                return Err(ScenarioFilesError::NoneInFolder(path.clone()));
            }
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

#[derive(Clone, Debug, PartialEq)]
pub struct TaskSpec {
    pub id: String,
    pub title: String,
    pub status: String,
    /// What the first agent spawned for it does (also a pre-existing agent).
    pub exec: Vec<Behaviour>,
    /// What later agents do (after a retry or re-dispatch); defaults to `exec`.
    pub respawn_exec: Option<Vec<Behaviour>>,
    pub after: Vec<String>,
    pub retry_count: u32,
    pub max_retries: Option<u32>,
    /// The running agent of an in-progress task.
    pub agent: Option<String>,
    /// Fields this tool does not know; they must survive every write (S8).
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl TaskSpec {
    /// The task's `graph.jsonl` object, with `exec` as given: the one place both modes (the
    /// simulator and the real runner) write a scenario's task.
    pub fn graph_object(&self, exec: Option<String>) -> serde_json::Map<String, serde_json::Value> {
        let mut object = self.extra.clone();
        object.insert("kind".into(), "task".into());
        object.insert("id".into(), self.id.clone().into());
        object.insert("title".into(), self.title.clone().into());
        object.insert("status".into(), self.status.clone().into());
        if let Some(exec) = exec {
            object.insert("exec".into(), exec.into());
        }
        if !self.after.is_empty() {
            object.insert("after".into(), self.after.clone().into());
        }
        if self.retry_count > 0 {
            object.insert("retry_count".into(), self.retry_count.into());
        }
        if let Some(max) = self.max_retries {
            object.insert("max_retries".into(), max.into());
        }
        if let Some(agent) = &self.agent {
            object.insert("assigned".into(), agent.clone().into());
        }
        object
    }
}

/// What stands at a pre-existing agent's pid when the run starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentProcess {
    Running,
    Exited,
    /// The process exited and an unrelated program took its pid.
    PidReused,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AgentSpec {
    pub id: String,
    pub task: String,
    pub process: AgentProcess,
    /// Whether the registry recorded the process start time (we spawned it) or not (another tool).
    pub start_recorded: bool,
    /// Registry status, default `working`.
    pub status: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSpec {
    pub max_agents: usize,
    pub heartbeat_timeout_ms: Option<u64>,
    pub grace_ms: u64,
    pub kill_wait_ms: u64,
    pub poll_interval_ms: u64,
    /// Whether the service (dispatcher + reaper) runs at all.
    pub running: bool,
}

/// When a step fires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trigger {
    At {
        at_ms: u64,
    },
    /// When an event happens (`spawn agent-2`, `signal agent-1`, `exit agent-1`), plus a delay.
    On {
        event: String,
        delay_ms: u64,
    },
}

/// A fault written into the scenario at a given moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScriptedFault {
    CrashService,
    ClockJump {
        by_ms: u64,
    },
    /// An unrelated program takes the pid of this agent's (exited) process.
    ReusePid {
        agent: String,
    },
    StallHeartbeat {
        agent: String,
        for_ms: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Run(CommandLine),
    Fault(ScriptedFault),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub trigger: Trigger,
    pub action: Action,
    /// The text as written, for timelines.
    pub text: String,
    /// A run in which the step never fired fails (`step-never-fired`), unless one of these
    /// fault kinds was injected: as an expectation's `unless`, e.g. `unless = "crash-cli"`.
    pub unless: Vec<FaultKind>,
}

/// A randomly injected fault kind (`[sim] faults`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    CrashCli,
    CrashService,
    SigtermIgnored,
    PidReuse,
    HeartbeatStall,
    ClockJump,
    StoreSlow,
    StoreFail,
}

impl FaultKind {
    pub const ALL: [FaultKind; 8] = [
        FaultKind::CrashCli,
        FaultKind::CrashService,
        FaultKind::SigtermIgnored,
        FaultKind::PidReuse,
        FaultKind::HeartbeatStall,
        FaultKind::ClockJump,
        FaultKind::StoreSlow,
        FaultKind::StoreFail,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::CrashCli => "crash-cli",
            FaultKind::CrashService => "crash-service",
            FaultKind::SigtermIgnored => "sigterm-ignored",
            FaultKind::PidReuse => "pid-reuse",
            FaultKind::HeartbeatStall => "heartbeat-stall",
            FaultKind::ClockJump => "clock-jump",
            FaultKind::StoreSlow => "store-slow",
            FaultKind::StoreFail => "store-fail",
        }
    }

    fn parse(text: &str) -> Result<FaultKind, String> {
        FaultKind::ALL.into_iter().find(|kind| kind.name() == text).ok_or_else(|| {
            let names: Vec<&str> = FaultKind::ALL.iter().map(|kind| kind.name()).collect();
            format!("unknown fault {text:?}; expected one of {}", names.join(", "))
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchedulerKind {
    Random,
    Pct { depth: u32 },
}

#[derive(Clone, Debug, PartialEq)]
pub struct SimSpec {
    pub seeds: u64,
    pub scheduler: SchedulerKind,
    pub faults: Vec<FaultKind>,
    /// Chance per step that an enabled fault is injected.
    pub fault_rate: f64,
    pub safety_ms: u64,
    /// How long the liveness phase may take to reach L1/L2; derived from the settings if absent.
    pub liveness_ms: Option<u64>,
    pub steps_max: u64,
}

/// The fields an expectation may name on a task, and on an agent: the checks read each
/// (`checks::field_value`), and the parser refuses any other (`scenario/names.rs`).
pub const TASK_FIELDS: [&str; 6] = ["status", "retry_count", "assigned", "agent", "failure_reason", "log"];
pub const AGENT_FIELDS: [&str; 2] = ["status", "task"];

/// The most faults one run injects: enough to combine a few, few enough that runs progress. The
/// executor keeps to it, and the parser counts on it for the agents a scenario can start.
pub const FAULTS_MAX: u32 = 6;

/// One expectation, e.g. `t1.status in [open, in-progress]`, or
/// `t1.status = done unless crash-cli, store-fail` (it need not hold in a run where one of those
/// faults was injected at random).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expectation {
    pub subject: String,
    pub field: String,
    pub op: ExpectOp,
    pub text: String,
    pub unless: Vec<FaultKind>,
}

impl Expectation {
    /// Whether it must hold in a run in which these fault kinds were injected.
    pub fn applies(&self, injected: &std::collections::BTreeSet<FaultKind>) -> bool {
        !self.unless.iter().any(|kind| injected.contains(kind))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExpectOp {
    Equals(String),
    NotEquals(String),
    In(Vec<String>),
    Contains(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    pub path: PathBuf,
    pub name: String,
    pub service: ServiceSpec,
    pub tasks: Vec<TaskSpec>,
    pub agents: Vec<AgentSpec>,
    pub steps: Vec<Step>,
    /// Checked at the end of every run.
    pub expect_always: Vec<Expectation>,
    /// Checked at the end of runs in which no fault fired.
    pub expect_if_no_faults: Vec<Expectation>,
    pub sim: SimSpec,
}

// ---- raw TOML shapes -------------------------------------------------------------------------

type Text = Spanned<String>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    world: RawWorld,
    #[serde(default)]
    step: Vec<Spanned<RawStep>>,
    #[serde(default)]
    expect: RawExpect,
    #[serde(default)]
    sim: RawSim,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorld {
    #[serde(default = "default_max_agents")]
    max_agents: usize,
    heartbeat_timeout: Option<Text>,
    grace: Option<Text>,
    kill_wait: Option<Text>,
    poll_interval: Option<Text>,
    #[serde(default = "yes")]
    service: bool,
    #[serde(default)]
    task: Vec<RawTask>,
    #[serde(default)]
    agent: Vec<RawAgent>,
}

fn default_max_agents() -> usize {
    4
}

fn yes() -> bool {
    true
}

/// A behaviour, or a list of them: `exec = "hang"` or `exec = ["heartbeat-every 1s", "hang"]`.
type OneOrMany = Spanned<toml::Value>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTask {
    id: String,
    title: Option<String>,
    #[serde(default = "open")]
    status: Text,
    exec: Option<OneOrMany>,
    respawn_exec: Option<OneOrMany>,
    #[serde(default)]
    after: Vec<Text>,
    #[serde(default)]
    retry_count: u32,
    max_retries: Option<u32>,
    agent: Option<String>,
    #[serde(default)]
    extra: BTreeMap<String, toml::Value>,
}

fn open() -> Text {
    Spanned::new(0..0, "open".to_string())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    id: String,
    task: Text,
    #[serde(default)]
    process: Option<Text>,
    #[serde(default = "yes")]
    start_recorded: bool,
    status: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    at: Option<Text>,
    on: Option<Text>,
    delay: Option<Text>,
    run: Option<Text>,
    fault: Option<Text>,
    unless: Option<Text>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    #[serde(default)]
    always: Vec<Text>,
    #[serde(default)]
    if_no_faults: Vec<Text>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSim {
    seeds: Option<u64>,
    scheduler: Option<Text>,
    pct_depth: Option<u32>,
    #[serde(default)]
    faults: Vec<Text>,
    fault_rate: Option<f64>,
    safety: Option<Text>,
    liveness: Option<Text>,
    steps_max: Option<u64>,
}

// ---- parsing ---------------------------------------------------------------------------------

/// Reads and parses a scenario file.
pub fn parse(path: &Path) -> Result<Scenario, ScenarioError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
        file: file.clone(),
        line: 1,
        column: 1,
        message: format!("cannot read: {e}"),
    })?;
    parse_str(path, &text)
}

/// Parses scenario text; `path` names it in errors and gives the scenario its name.
pub fn parse_str(path: &Path, text: &str) -> Result<Scenario, ScenarioError> {
    let file = path.display().to_string();
    let at = |span: Range<usize>, message: String| {
        let (line, column) = line_column(text, span.start);
        ScenarioError { file: file.clone(), line, column, message }
    };
    let raw: RawScenario = toml::from_str(text).map_err(|e| at(e.span().unwrap_or(0..0), e.message().to_string()))?;
    let name = path.file_stem().map(|stem| stem.to_string_lossy().into_owned()).unwrap_or_default();
    let service = service_spec(&raw.world).map_err(|(span, message)| at(span, message))?;
    let tasks = raw.world.task.iter().map(task_spec).collect::<Result<Vec<_>, _>>().map_err(|(s, m)| at(s, m))?;
    let agents = agent_specs(&raw.world, &tasks).map_err(|(s, m)| at(s, m))?;
    let steps = raw.step.iter().map(step_spec).collect::<Result<Vec<_>, _>>().map_err(|(s, m)| at(s, m))?;
    let names = Names::of(&tasks, &agents, &steps);
    check_names(&raw, &steps, &names).map_err(|(s, m)| at(s, m))?;
    let expectations = |list: &[Text]| list.iter().map(expectation).collect::<Result<Vec<_>, _>>();
    let expect_always = expectations(&raw.expect.always).map_err(|(s, m)| at(s, m))?;
    let expect_if_no_faults = expectations(&raw.expect.if_no_faults).map_err(|(s, m)| at(s, m))?;
    let sim = sim_spec(&raw.sim).map_err(|(s, m)| at(s, m))?;
    Ok(Scenario {
        path: path.to_path_buf(),
        name,
        service,
        tasks,
        agents,
        steps,
        expect_always,
        expect_if_no_faults,
        sim,
    })
}

type Spanful<T> = Result<T, (Range<usize>, String)>;

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |tail| tail.chars().count()) + 1;
    (line, column)
}

fn duration(text: &Text) -> Spanful<u64> {
    parse_duration_ms(text.get_ref()).map_err(|error| (text.span(), error.to_string()))
}

fn optional_duration(text: &Option<Text>, default_ms: u64) -> Spanful<u64> {
    text.as_ref().map_or(Ok(default_ms), duration)
}

fn service_spec(world: &RawWorld) -> Spanful<ServiceSpec> {
    let defaults = wg_core::settings::Settings::default();
    Ok(ServiceSpec {
        max_agents: world.max_agents,
        heartbeat_timeout_ms: world.heartbeat_timeout.as_ref().map(duration).transpose()?,
        grace_ms: optional_duration(&world.grace, defaults.grace_ms)?,
        kill_wait_ms: optional_duration(&world.kill_wait, defaults.kill_wait_ms)?,
        poll_interval_ms: optional_duration(&world.poll_interval, defaults.poll_interval_ms)?,
        running: world.service,
    })
}

fn behaviours(raw: &OneOrMany) -> Spanful<Vec<Behaviour>> {
    let expected = || (raw.span(), "expected a behaviour string or a list of them, e.g. \"hang\"".to_string());
    let list: Vec<&str> = match raw.get_ref() {
        toml::Value::String(one) => vec![one.as_str()],
        toml::Value::Array(many) => many.iter().map(|v| v.as_str().ok_or_else(expected)).collect::<Result<_, _>>()?,
        _ => return Err(expected()),
    };
    list.into_iter().map(|text| Behaviour::parse(text).map_err(|m| (raw.span(), m))).collect()
}

const TASK_STATUSES: [&str; 5] = ["open", "in-progress", "done", "failed", "abandoned"];

fn task_spec(raw: &RawTask) -> Spanful<TaskSpec> {
    if !TASK_STATUSES.contains(&raw.status.get_ref().as_str()) {
        let message = format!("task status {:?}: expected one of {}", raw.status.get_ref(), TASK_STATUSES.join(", "));
        return Err((raw.status.span(), message));
    }
    let extra = raw
        .extra
        .iter()
        .map(|(key, value)| (key.clone(), serde_json::to_value(value).expect("TOML values are JSON values")))
        .collect();
    Ok(TaskSpec {
        id: raw.id.clone(),
        title: raw.title.clone().unwrap_or_else(|| raw.id.clone()),
        status: raw.status.get_ref().clone(),
        exec: raw.exec.as_ref().map(behaviours).transpose()?.unwrap_or_default(),
        respawn_exec: raw.respawn_exec.as_ref().map(behaviours).transpose()?,
        after: raw.after.iter().map(|name| name.get_ref().clone()).collect(),
        retry_count: raw.retry_count,
        max_retries: raw.max_retries,
        agent: raw.agent.clone(),
        extra,
    })
}

/// Explicit `[[world.agent]]` entries, plus a running one for each in-progress task naming an
/// agent that has no entry.
fn agent_specs(world: &RawWorld, tasks: &[TaskSpec]) -> Spanful<Vec<AgentSpec>> {
    let mut agents = Vec::new();
    for raw in &world.agent {
        let process = match raw.process.as_ref().map(|p| (p.get_ref().as_str(), p.span())) {
            None | Some(("running", _)) => AgentProcess::Running,
            Some(("exited", _)) => AgentProcess::Exited,
            Some(("pid-reused", _)) => AgentProcess::PidReused,
            Some((other, span)) => {
                return Err((span, format!("agent process {other:?}: expected running, exited or pid-reused")))
            }
        };
        let status = raw.status.clone().unwrap_or_else(|| "working".into());
        agents.push(AgentSpec {
            id: raw.id.clone(),
            task: raw.task.get_ref().clone(),
            process,
            start_recorded: raw.start_recorded,
            status,
        });
    }
    for task in tasks {
        let Some(agent) = &task.agent else { continue };
        if !agents.iter().any(|spec| &spec.id == agent) {
            agents.push(AgentSpec {
                id: agent.clone(),
                task: task.id.clone(),
                process: AgentProcess::Running,
                start_recorded: true,
                status: "working".into(),
            });
        }
    }
    Ok(agents)
}

fn step_spec(spanned: &Spanned<RawStep>) -> Spanful<Step> {
    let raw = spanned.get_ref();
    let trigger = match (&raw.at, &raw.on) {
        (Some(at), None) => Trigger::At { at_ms: duration(at)? },
        (None, Some(on)) => {
            let words: Vec<&str> = on.get_ref().split_whitespace().collect();
            if !matches!(words.as_slice(), ["spawn" | "signal" | "exit", _]) {
                return Err((on.span(), "expected `on = \"spawn|signal|exit <agent-id>\"`".into()));
            }
            Trigger::On { event: words.join(" "), delay_ms: optional_duration(&raw.delay, 0)? }
        }
        _ => return Err((spanned.span(), "each [[step]] needs exactly one of `at` or `on`".into())),
    };
    let (action, text) = match (&raw.run, &raw.fault) {
        (Some(run), None) => (Action::Run(command(run)?), run.get_ref().clone()),
        (None, Some(fault)) => (Action::Fault(scripted_fault(fault)?), format!("fault: {}", fault.get_ref())),
        _ => return Err((spanned.span(), "each [[step]] needs exactly one of `run` or `fault`".into())),
    };
    let unless = raw.unless.as_ref().map(fault_list).transpose()?.unwrap_or_default();
    Ok(Step { trigger, action, text, unless })
}

/// A `run` line, read with `wg`'s own grammar ([`command_line`]).
fn command(text: &Text) -> Spanful<CommandLine> {
    command_line::parse(text.get_ref()).map_err(|message| (text.span(), message))
}

fn scripted_fault(text: &Text) -> Spanful<ScriptedFault> {
    let words: Vec<&str> = text.get_ref().split_whitespace().collect();
    let span = text.span();
    let fault = match words.as_slice() {
        ["crash", "service"] => ScriptedFault::CrashService,
        ["clock-jump", by] => {
            ScriptedFault::ClockJump { by_ms: parse_duration_ms(by).map_err(|e| (span.clone(), e.to_string()))? }
        }
        ["reuse-pid", agent] => ScriptedFault::ReusePid { agent: agent.to_string() },
        ["stall-heartbeat", agent, period] => ScriptedFault::StallHeartbeat {
            agent: agent.to_string(),
            for_ms: parse_duration_ms(period).map_err(|e| (span.clone(), e.to_string()))?,
        },
        _ => {
            return Err((
                span,
                "expected one of: crash service | clock-jump <duration> | reuse-pid <agent> | \
                 stall-heartbeat <agent> <duration>"
                    .into(),
            ))
        }
    };
    Ok(fault)
}

/// `crash-cli, store-fail`: the fault kinds an expectation or a step does not survive.
fn fault_names(text: &str) -> Result<Vec<FaultKind>, String> {
    text.split(',').map(|name| FaultKind::parse(name.trim())).collect()
}

fn fault_list(text: &Text) -> Spanful<Vec<FaultKind>> {
    fault_names(text.get_ref()).map_err(|message| (text.span(), message))
}

/// Every task and agent name the file uses is one the scenario can have ([`names`]).
fn check_names(raw: &RawScenario, steps: &[Step], names: &Names) -> Spanful<()> {
    let task = |name: &Text, role: &str| names.check_task(name.get_ref(), role).map_err(|m| (name.span(), m));
    for raw_task in &raw.world.task {
        for after in &raw_task.after {
            task(after, &format!("task {:?}'s `after`", raw_task.id))?;
        }
    }
    for agent in &raw.world.agent {
        task(&agent.task, &format!("agent {:?}'s `task`", agent.id))?;
    }
    for (raw_step, step) in raw.step.iter().zip(steps) {
        let raw_step = raw_step.get_ref();
        if let (Some(on), Trigger::On { event, .. }) = (&raw_step.on, &step.trigger) {
            let agent = event.split_whitespace().nth(1).unwrap_or_default();
            names.check_agent(agent, "`on`").map_err(|m| (on.span(), m))?;
        }
        if let (Some(run), Action::Run(line)) = (&raw_step.run, &step.action) {
            let in_run = |result: Result<(), String>| result.map_err(|m| (run.span(), m));
            if let Some(name) = line.command.task().filter(|_| !matches!(line.command, Command::Add(_))) {
                in_run(names.check_task(&name, "`run`"))?;
            }
            if let Some(name) = line.command.agent() {
                in_run(names.check_agent(name, "`run`"))?;
            }
            if let Some(name) = &line.agent {
                in_run(names.check_agent(name, "`run`'s WG_AGENT_ID"))?;
            }
        }
        if let (
            Some(fault),
            Action::Fault(ScriptedFault::ReusePid { agent } | ScriptedFault::StallHeartbeat { agent, .. }),
        ) = (&raw_step.fault, &step.action)
        {
            names.check_agent(agent, "`fault`").map_err(|m| (fault.span(), m))?;
        }
    }
    for text in raw.expect.always.iter().chain(&raw.expect.if_no_faults) {
        let parsed = expectation(text)?;
        names.check_subject(&parsed.subject, &parsed.field).map_err(|m| (text.span(), m))?;
    }
    Ok(())
}

/// `<subject>.<field> (= | != | in | contains) <value>`; the subject is a task or agent id and
/// may itself contain dots (`.evaluate-t1.status = open`), so the field is after the last dot.
fn expectation(text: &Text) -> Spanful<Expectation> {
    let error = || {
        (
            text.span(),
            format!(
                "expectation {:?}: expected `<task-or-agent>.<field> = V`, `!= V`, `in [A, B]` or \
                 `contains \"text\"`",
                text.get_ref()
            ),
        )
    };
    let line = text.get_ref().trim();
    let (claim, unless) = match line.rsplit_once(" unless ") {
        Some((claim, faults)) => (claim.trim(), fault_names(faults).map_err(|m| (text.span(), m))?),
        None => (line, Vec::new()),
    };
    let (left, op, right) = [" != ", " = ", " in ", " contains "]
        .iter()
        .find_map(|op| claim.split_once(op).map(|(left, right)| (left.trim(), op.trim(), right.trim())))
        .ok_or_else(error)?;
    let (subject, field) = left.rsplit_once('.').filter(|(subject, _)| !subject.is_empty()).ok_or_else(error)?;
    let unquote = |value: &str| value.trim().trim_matches('"').to_string();
    let op = match op {
        "=" => ExpectOp::Equals(unquote(right)),
        "!=" => ExpectOp::NotEquals(unquote(right)),
        "contains" => ExpectOp::Contains(unquote(right)),
        _ => {
            let inner = right.strip_prefix('[').and_then(|r| r.strip_suffix(']')).ok_or_else(error)?;
            ExpectOp::In(inner.split(',').map(unquote).filter(|value| !value.is_empty()).collect())
        }
    };
    Ok(Expectation { subject: subject.to_string(), field: field.to_string(), op, text: line.to_string(), unless })
}

fn sim_spec(raw: &RawSim) -> Spanful<SimSpec> {
    let scheduler = match raw.scheduler.as_ref().map(|s| (s.get_ref().as_str(), s.span())) {
        None | Some(("random", _)) => SchedulerKind::Random,
        Some(("pct", _)) => SchedulerKind::Pct { depth: raw.pct_depth.unwrap_or(3) },
        Some((other, span)) => return Err((span, format!("scheduler {other:?}: expected random or pct"))),
    };
    let faults = raw
        .faults
        .iter()
        .map(|f| FaultKind::parse(f.get_ref()).map_err(|m| (f.span(), m)))
        .collect::<Result<_, _>>()?;
    Ok(SimSpec {
        seeds: raw.seeds.unwrap_or(100),
        scheduler,
        faults,
        fault_rate: raw.fault_rate.unwrap_or(0.02),
        safety_ms: optional_duration(&raw.safety, 20_000)?,
        liveness_ms: raw.liveness.as_ref().map(duration).transpose()?,
        steps_max: raw.steps_max.unwrap_or(20_000),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaviours_parse_and_map_to_shell() {
        assert_eq!(
            Behaviour::parse("exit-after 2s code 3"),
            Ok(Behaviour::ExitAfter { after_ms: 2000, code: Some(3) })
        );
        assert_eq!(Behaviour::parse("done-after 150ms").unwrap().shell(), "sleep 0.150; wg done $WG_TASK_ID");
        assert!(Behaviour::parse("explode").is_err());
    }

    #[test]
    fn an_expectation_may_name_the_faults_it_does_not_survive() {
        let text = Spanned::new(0..0, "t1.status = done unless crash-cli, store-fail".to_string());
        let parsed = expectation(&text).unwrap();
        assert_eq!(parsed.op, ExpectOp::Equals("done".into()));
        assert_eq!(parsed.unless, [FaultKind::CrashCli, FaultKind::StoreFail]);
        let injected = |kinds: &[FaultKind]| kinds.iter().copied().collect();
        assert!(parsed.applies(&injected(&[FaultKind::PidReuse])));
        assert!(!parsed.applies(&injected(&[FaultKind::PidReuse, FaultKind::StoreFail])));
        let unknown = Spanned::new(0..0, "t1.status = done unless gremlins".to_string());
        assert!(expectation(&unknown).unwrap_err().1.contains("unknown fault \"gremlins\""));
    }

    #[test]
    fn expectations_split_on_the_last_dot() {
        let text = Spanned::new(0..0, ".evaluate-t1.status in [open, in-progress]".to_string());
        let parsed = expectation(&text).unwrap();
        assert_eq!(parsed.subject, ".evaluate-t1");
        assert_eq!(parsed.op, ExpectOp::In(vec!["open".into(), "in-progress".into()]));
    }
}
