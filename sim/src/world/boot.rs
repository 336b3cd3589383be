//! The world a run starts from: the scenario's initial files (with lines and fields another
//! tool wrote, which must survive, S8), its pre-existing agents' processes and registry, its
//! timed steps, and the service if it runs.

use super::clock::{Timer, EPOCH_START_MS};
use super::processes::ProcKind;
use super::store::{parse_graph, parse_registry};
use super::{Inner, World};
use crate::scenario::{AgentProcess, Behaviour, Scenario, Trigger};
use std::cell::RefCell;
use std::rc::Rc;
use wg_core::ports::{ExitKind, State};
use wg_core::registry::Registry;
use wg_core::settings::Settings;
use wg_core::time::{format_rfc3339, EpochMs};

/// A world ready to boot: the scenario's initial files committed, nothing running yet.
pub fn new_world(scenario: &Scenario, settings: Settings, seed: u64, recording: bool) -> World {
    let Prepared { scenario, initial, initial_graph_lines } = prepared(scenario);
    let inner = Inner::new(Rc::clone(&initial), initial_graph_lines, recording);
    World { inner: RefCell::new(inner), settings, scenario, seed, initial_graph_lines, initial }
}

/// The service's settings a scenario gives.
pub fn settings_for(scenario: &Scenario) -> Settings {
    let service = &scenario.service;
    Settings {
        grace_ms: service.grace_ms,
        kill_wait_ms: service.kill_wait_ms,
        heartbeat_timeout_ms: service.heartbeat_timeout_ms,
        max_agents: service.max_agents,
        poll_interval_ms: service.poll_interval_ms,
        ..Settings::default()
    }
}

/// What every run of one scenario starts from: the scenario, its initial files and the line
/// count of the initial graph file (S8).
#[derive(Clone)]
struct Prepared {
    scenario: Rc<Scenario>,
    initial: Rc<State>,
    initial_graph_lines: usize,
}

thread_local! {
    /// The last scenario run on this thread, and its initial files: consecutive runs of one
    /// scenario (seeds) share them instead of cloning and building them each time.
    static PREPARED: RefCell<Option<Prepared>> = const { RefCell::new(None) };
}

fn prepared(scenario: &Scenario) -> Prepared {
    PREPARED.with(|cell| {
        let mut cell = cell.borrow_mut();
        if let Some(prepared) = cell.as_ref().filter(|prepared| *prepared.scenario == *scenario) {
            return prepared.clone();
        }
        let initial = initial_state(scenario);
        let initial_graph_lines = initial.graph.render().lines().count();
        let prepared = Prepared { scenario: Rc::new(scenario.clone()), initial: Rc::new(initial), initial_graph_lines };
        *cell = Some(prepared.clone());
        prepared
    })
}

/// The initial files and processes of a scenario.
pub fn initial_state(scenario: &Scenario) -> State {
    let mut lines = Vec::new();
    for task in &scenario.tasks {
        // One behaviour per line: `sh` reads `a &` followed by a newline, not by `; `.
        let shell: Vec<String> = task.exec.iter().map(Behaviour::shell).collect();
        let object = task.graph_object((!shell.is_empty()).then(|| shell.join("\n")));
        lines.push(serde_json::Value::Object(object).to_string());
    }
    // A line of a kind we do not know: it must survive every write byte for byte (S8).
    lines.push(r#"{"kind":"resource","id":"gpu-0","owner":"another tool"}"#.to_string());
    let graph = parse_graph(&format!("{}\n", lines.join("\n"))).expect("scenario graph parses");
    State { graph, registry: Registry::empty() }
}

/// The identities (pid, start time, start ticks) of the pre-existing agents' processes, in the
/// order of the scenario's agents: with the scenario, all the boot registry depends on.
type BootProcesses = Vec<(i64, EpochMs, u64)>;

thread_local! {
    /// The last boot registry built on this thread: every seed of a scenario boots the same
    /// processes, and building the registry through JSON was a tenth of a short run.
    static BOOT_REGISTRY: RefCell<Option<(Rc<Scenario>, BootProcesses, Registry)>> = const { RefCell::new(None) };
}

/// The registry the scenario's pre-existing agents start with, as a file another `wg` wrote
/// (with a top-level field we do not know, which must survive, S8); built once per scenario
/// and processes.
fn boot_registry(world: &World, started: BootProcesses) -> Registry {
    BOOT_REGISTRY.with(|cell| {
        let mut cell = cell.borrow_mut();
        let hit = cell
            .as_ref()
            .filter(|(scenario, processes, _)| Rc::ptr_eq(scenario, &world.scenario) && *processes == started);
        if let Some((_, _, registry)) = hit {
            return registry.clone();
        }
        let registry = build_boot_registry(&world.scenario, &started);
        *cell = Some((world.scenario.clone(), started, registry.clone()));
        registry
    })
}

fn build_boot_registry(scenario: &Scenario, started: &[(i64, EpochMs, u64)]) -> Registry {
    let mut agents = serde_json::Map::new();
    let mut next_agent_id = 1;
    for (spec, &(pid, start_ms, start_ticks)) in scenario.agents.iter().zip(started) {
        let entry = serde_json::json!({
            "id": spec.id, "pid": pid, "task_id": spec.task, "executor": "shell",
            "started_at": format_rfc3339(start_ms), "status": spec.status,
            "last_heartbeat": format_rfc3339(EPOCH_START_MS),
            "process_start_ticks": if spec.start_recorded { Some(start_ticks) } else { None },
        });
        agents.insert(spec.id.clone(), entry);
        if let Some(number) = spec.id.strip_prefix("agent-").and_then(|n| n.parse::<u64>().ok()) {
            next_agent_id = next_agent_id.max(number + 1);
        }
    }
    let registry = serde_json::json!({"agents": agents, "next_agent_id": next_agent_id, "service_note": "kept"});
    parse_registry(&registry.to_string()).expect("scenario registry parses")
}

/// Starts the pre-existing agents' processes and writes their registry entries.
pub fn boot(world: &World) {
    let mut inner = world.inner.borrow_mut();
    let mut started = Vec::new();
    inner.clock.now_ms = EPOCH_START_MS - 60_000;
    for spec in &world.scenario.agents {
        let behaviours =
            world.scenario.tasks.iter().find(|t| t.id == spec.task).map(|t| t.exec.clone()).unwrap_or_default();
        *inner.processes.spawns_per_task.entry(spec.task.clone()).or_insert(0) += 1;
        let proc = world.start_agent(&mut inner, &spec.id, &spec.task, &behaviours, None).expect("free pids at boot");
        started.push((proc.pid, proc.start_ms, proc.start_ticks));
        if spec.process != AgentProcess::Running {
            world.exit_process(&mut inner, proc.pid, ExitKind::Died);
        }
        if spec.process == AgentProcess::PidReused {
            inner.clock.now_ms += 1_000;
            world.start_process(&mut inner, Some(proc.pid), ProcKind::Foreign, None);
        }
    }
    Rc::make_mut(&mut inner.store.committed).registry = boot_registry(world, started);
    inner.notes.clear();
    inner.clock.now_ms = EPOCH_START_MS;
    for (index, step) in world.scenario.steps.iter().enumerate() {
        if let Trigger::At { at_ms } = step.trigger {
            inner.clock.add_timer(EPOCH_START_MS + at_ms as i64, Timer::Step { index });
        }
    }
    if world.scenario.service.running {
        world.start_service(&mut inner);
    }
}
