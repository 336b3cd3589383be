//! The actors of a simulated run, each a future running the real core operations: the
//! service's dispatcher and reaper loops, one future per `wg` command, and the scripted
//! behaviours of agent processes. Also the initial world and the timers (steps, exits).

use crate::scenario::{AgentProcess, Behaviour, Command, CommandLine, Scenario, ScriptedFault};
use crate::world::{ActorKind, ActorSpec, Inner, Landing, ProcKind, Timer, World, EPOCH_START_MS};
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use wg_core::ops::{
    add_task, dispatch, fail_task, finish_task, heartbeat, kill_agent, reap, recover, retry, RetryOutcome,
};
use wg_core::ports::{Ctx, ExitKind, State};
use wg_core::registry::Registry;
use wg_core::time::{format_rfc3339, EpochMs};

pub type ActorFuture<'w> = Pin<Box<dyn Future<Output = ()> + 'w>>;

pub fn kind_of(spec: &ActorSpec) -> ActorKind {
    match spec {
        ActorSpec::Dispatcher { .. } | ActorSpec::Reaper { .. } => ActorKind::Service,
        ActorSpec::Cli { .. } => ActorKind::Cli,
        ActorSpec::Script { .. } => ActorKind::Agent,
    }
}

/// The actor's name: the `user` of its log entries and its label in timelines.
pub fn name_of(spec: &ActorSpec, id: usize) -> String {
    match spec {
        ActorSpec::Dispatcher { generation } => format!("service#{generation} dispatcher"),
        ActorSpec::Reaper { generation } => format!("service#{generation} reaper"),
        ActorSpec::Cli { text, .. } => format!("{text} [a{id}]"),
        ActorSpec::Script { agent_id, behaviour, .. } => format!("{agent_id} {}", behaviour_name(behaviour)),
    }
}

fn behaviour_name(behaviour: &Behaviour) -> &'static str {
    match behaviour {
        Behaviour::DoneAfter { .. } => "done-after",
        Behaviour::FailAfter { .. } => "fail-after",
        Behaviour::ExitAfter { .. } => "exit-after",
        Behaviour::HeartbeatEvery { .. } => "heartbeat",
        _ => "process",
    }
}

pub fn make<'w>(world: &'w World, name: String, spec: ActorSpec) -> ActorFuture<'w> {
    match spec {
        ActorSpec::Dispatcher { .. } => Box::pin(dispatcher(world, name)),
        ActorSpec::Reaper { .. } => Box::pin(reaper(world, name)),
        ActorSpec::Cli { command, .. } => Box::pin(cli(world, name, command)),
        ActorSpec::Script { pid, agent_id, task_id, behaviour, .. } => {
            Box::pin(script(world, name, pid, agent_id, task_id, behaviour))
        }
    }
}

fn ctx<'a>(world: &'a World, name: &'a str) -> Ctx<'a, World, World, World> {
    Ctx { clock: world, processes: world, store: world, actor: name }
}

/// The service's dispatcher loop; the run's end bounds it.
async fn dispatcher(world: &World, name: String) {
    loop {
        let result = dispatch(ctx(world, &name), &world.settings).await;
        world.note(|| format!("dispatch -> {result:?}"));
        world.sleep_ms_plain(world.settings.poll_interval_ms).await;
    }
}

/// The service's reaper loop; the run's end bounds it.
async fn reaper(world: &World, name: String) {
    loop {
        let result = reap(ctx(world, &name), &world.settings).await;
        world.note(|| format!("reap -> {result:?}"));
        world.sleep_ms_plain(world.settings.poll_interval_ms).await;
    }
}

/// One `wg` command of a step: the core operation `wg` runs for it, as `wg` would run it.
async fn cli(world: &World, name: String, line: CommandLine) {
    let ctx = ctx(world, &name);
    let settings = &world.settings;
    let agent = line.agent.as_deref();
    // Results are formatted only for a timeline (`World::note`).
    let returned = |result: &dyn std::fmt::Debug| world.note(|| format!("returned {result:?}"));
    match &line.command {
        Command::Retry { task, reason, stop } => {
            let result = retry(ctx, settings, task, reason, &stop.options(settings.grace_ms)).await;
            after_retry(world, &name, task, reason, &result);
            returned(&result);
        }
        Command::Kill { agent, stop } => {
            returned(&kill_agent(ctx, settings, agent, &stop.options(settings.grace_ms)).await);
        }
        Command::Done { task } => returned(&finish_task(ctx, task, agent).await),
        Command::Fail { task, reason } => returned(&fail_task(ctx, task, reason, agent).await),
        Command::Heartbeat { agent } => returned(&heartbeat(ctx, agent).await),
        Command::Recover { task, keep_agency, apply } => {
            returned(&recover(ctx, task.as_deref(), *keep_agency, *apply).await);
        }
        Command::Add(new) => returned(&add_task(ctx, new).await),
    }
}

/// S7: a retry that changed the task left exactly one log entry, with its reason; one that
/// found nothing to do (`AlreadyOpen`, `InFlight`) left none: an idempotent no-op is not a
/// retry and writes nothing (intended; see checks.rs). Also remembers the stopped agent for L2.
fn after_retry(
    world: &World,
    name: &str,
    task_id: &str,
    reason: &str,
    result: &Result<RetryOutcome, wg_core::ops::OpError>,
) {
    let Ok(outcome) = result else { return };
    let mut inner = world.inner.borrow_mut();
    let acted = !matches!(outcome, RetryOutcome::AlreadyOpen | RetryOutcome::InFlight { .. });
    let broken = {
        let entries: Vec<&str> = inner
            .committed
            .graph
            .task(task_id)
            .map(|task| {
                task.log.iter().filter(|entry| entry.user == name).map(|entry| entry.message.as_str()).collect()
            })
            .unwrap_or_default();
        let check = |command: &str| wg_core::invariants::check_retry_logged(command, task_id, reason, acted, &entries);
        // The command's text only goes into the violation's message: built when there is one.
        check("").map(|_| check(&format!("{name} ({outcome:?})")).expect("the same check fails again"))
    };
    if let Some(broken) = broken {
        inner.violations.push(broken.into());
    }
    if let RetryOutcome::Restarted { agent_id, .. } = outcome {
        inner.retried_agents.push(agent_id.clone());
    }
}

/// What an agent process does on its own, as `WG_AGENT_ID` would.
async fn script(world: &World, name: String, pid: i64, agent_id: String, task_id: String, behaviour: Behaviour) {
    let ctx = ctx(world, &name);
    match behaviour {
        Behaviour::DoneAfter { after_ms } => {
            world.sleep_ms_plain(after_ms).await;
            let result = finish_task(ctx, &task_id, Some(&agent_id)).await;
            world.note(|| format!("wg done -> {result:?}"));
            world.exit_self(pid, if result.is_ok() { 0 } else { 1 });
        }
        Behaviour::FailAfter { after_ms } => {
            world.sleep_ms_plain(after_ms).await;
            let result = fail_task(ctx, &task_id, "scripted failure", Some(&agent_id)).await;
            world.note(|| format!("wg fail -> {result:?}"));
            world.exit_self(pid, 1);
        }
        Behaviour::ExitAfter { after_ms, code } => {
            world.sleep_ms_plain(after_ms).await;
            match code {
                Some(code) => world.exit_self(pid, code),
                None => world.die_self(pid),
            }
        }
        Behaviour::HeartbeatEvery { every_ms } => loop {
            world.sleep_ms_plain(every_ms).await;
            let stalled =
                world.inner.borrow().procs.get(&pid).is_some_and(|proc| proc.stalled_until_ms > world.now_ms());
            if !stalled {
                let _ = heartbeat(ctx, &agent_id).await;
            }
        },
        Behaviour::Hang | Behaviour::HangIgnoringTerm | Behaviour::SpawnChildren { .. } => {}
    }
}

impl World {
    pub async fn sleep_ms_plain(&self, duration_ms: u64) {
        let until = self.now_ms() + duration_ms as i64;
        self.suspend(crate::world::Wait::Until(until), "sleep").await;
    }

    pub fn exit_self(&self, pid: i64, code: i32) {
        let mut inner = self.inner.borrow_mut();
        self.exit_process(&mut inner, pid, ExitKind::Code(code));
    }

    pub fn die_self(&self, pid: i64) {
        let mut inner = self.inner.borrow_mut();
        self.exit_process(&mut inner, pid, ExitKind::Died);
    }

    /// Fires the timers due at the current time, in time order.
    pub fn fire_due_timers(&self) {
        loop {
            let mut inner = self.inner.borrow_mut();
            let Some((&(at_ms, seq), _)) = inner.timers.first_key_value() else { return };
            if at_ms > inner.now_ms {
                return;
            }
            let timer = inner.timers.remove(&(at_ms, seq)).expect("just seen");
            self.fire(&mut inner, timer);
        }
    }

    fn fire(&self, inner: &mut Inner, timer: Timer) {
        match timer {
            Timer::ProcessExit { pid, start_ticks, code } => {
                if inner.procs.get(&pid).is_some_and(|proc| proc.start_ticks == start_ticks) {
                    self.exit_process(inner, pid, code.map_or(ExitKind::Died, ExitKind::Code));
                }
            }
            Timer::ServiceRestart => self.start_service(inner),
            Timer::Step { index } => {
                let step = &self.scenario.steps[index];
                if inner.recording {
                    inner.notes.push(format!("step: {}", step.text));
                }
                match &step.action {
                    crate::scenario::Action::Run(command) => {
                        inner.new_actors.push(ActorSpec::Cli { command: command.clone(), text: step.text.clone() })
                    }
                    crate::scenario::Action::Fault(fault) => self.scripted_fault(inner, fault),
                }
            }
        }
    }

    fn scripted_fault(&self, inner: &mut Inner, fault: &ScriptedFault) {
        match fault {
            ScriptedFault::CrashService => self.crash_service(inner, Landing::Nothing),
            ScriptedFault::ClockJump { by_ms } => inner.now_ms += *by_ms as i64,
            ScriptedFault::ReusePid { agent } => {
                let pid = inner.committed.registry.agent(agent).map(|agent| agent.pid);
                if let Some(pid) = pid.filter(|pid| *pid > 1 && !inner.procs.contains_key(pid)) {
                    self.start_process(inner, Some(pid), ProcKind::Foreign, None);
                }
            }
            ScriptedFault::StallHeartbeat { agent, for_ms } => {
                let until = inner.now_ms + *for_ms as i64;
                for proc in inner.procs.values_mut() {
                    if matches!(&proc.kind, ProcKind::Agent { agent_id, .. } if agent_id == agent) {
                        proc.stalled_until_ms = until;
                    }
                }
            }
        }
    }

    pub fn start_service(&self, inner: &mut Inner) {
        inner.service_generation += 1;
        inner.service_up = true;
        let generation = inner.service_generation;
        inner.new_actors.push(ActorSpec::Dispatcher { generation });
        inner.new_actors.push(ActorSpec::Reaper { generation });
    }

    /// The service process dies (both loops) and is restarted a second later.
    pub fn crash_service(&self, inner: &mut Inner, landing: Landing) {
        if !inner.service_up {
            return;
        }
        inner.service_up = false;
        inner.timer_waits.starting_timeout = true;
        for id in 0..inner.actors.len() {
            let slot = &inner.actors[id];
            if slot.kind == crate::world::ActorKind::Service && !slot.finished && !slot.killed {
                inner.actors[id].killed = true;
                self.release_actor(inner, id, landing);
            }
        }
        let at_ms = inner.now_ms + 1_000;
        World::add_timer(inner, at_ms, Timer::ServiceRestart);
        if inner.recording {
            inner.notes.push("service crashed; restarts in 1s".into());
        }
    }
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
    let graph = crate::world::parse_graph(&format!("{}\n", lines.join("\n"))).expect("scenario graph parses");
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
    crate::world::parse_registry(&registry.to_string()).expect("scenario registry parses")
}

/// Starts the pre-existing agents' processes and writes their registry entries.
pub fn boot(world: &World) {
    let mut inner = world.inner.borrow_mut();
    let mut started = Vec::new();
    inner.now_ms = EPOCH_START_MS - 60_000;
    for spec in &world.scenario.agents {
        let behaviours =
            world.scenario.tasks.iter().find(|t| t.id == spec.task).map(|t| t.exec.clone()).unwrap_or_default();
        *inner.spawns_per_task.entry(spec.task.clone()).or_insert(0) += 1;
        let proc = world.start_agent(&mut inner, &spec.id, &spec.task, &behaviours, None).expect("free pids at boot");
        started.push((proc.pid, proc.start_ms, proc.start_ticks));
        if spec.process != AgentProcess::Running {
            world.exit_process(&mut inner, proc.pid, ExitKind::Died);
        }
        if spec.process == AgentProcess::PidReused {
            inner.now_ms += 1_000;
            world.start_process(&mut inner, Some(proc.pid), ProcKind::Foreign, None);
        }
    }
    inner.committed.registry = boot_registry(world, started);
    inner.notes.clear();
    inner.now_ms = EPOCH_START_MS;
    for (index, step) in world.scenario.steps.iter().enumerate() {
        if let crate::scenario::Trigger::At { at_ms } = step.trigger {
            World::add_timer(&mut inner, EPOCH_START_MS + at_ms as i64, Timer::Step { index });
        }
    }
    if world.scenario.service.running {
        world.start_service(&mut inner);
    }
}
