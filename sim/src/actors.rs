//! The actors of a simulated run, each a future running the real core operations: the
//! service's dispatcher and reaper loops, one future per `wg` command, and the scripted
//! behaviours of agent processes. They act on the world only through the ports, and record what
//! the checkers must see (a retry that returned); the world around them is `crate::world`.

use crate::scenario::{Behaviour, Command, CommandLine};
use crate::world::record::{Record, RetryRecord};
use crate::world::{ActorKind, ActorSpec, World};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use wg_core::ops::{
    add_task, dispatch, fail_task, finish_task, heartbeat, kill_agent, reap, recover, retry, RetryOutcome,
};
use wg_core::ports::Ctx;

pub type ActorFuture<'w> = Pin<Box<dyn Future<Output = ()> + 'w>>;

pub fn kind_of(spec: &ActorSpec) -> ActorKind {
    match spec {
        ActorSpec::Dispatcher { .. } | ActorSpec::Reaper { .. } => ActorKind::Service,
        ActorSpec::Cli { .. } => ActorKind::Cli,
        ActorSpec::Script { .. } => ActorKind::Agent,
    }
}

/// The actor's name: the `user` of its log entries and its label in timelines.
///
/// Every run names its actors, so the parts are joined by hand: `format!` was most of an
/// actor's set-up.
pub fn name_of(spec: &ActorSpec, id: usize) -> String {
    use std::fmt::Write;
    let mut name = String::with_capacity(32);
    // Writing to a `String` cannot fail.
    let _ = match spec {
        ActorSpec::Dispatcher { generation } => write!(name, "service#{generation} dispatcher"),
        ActorSpec::Reaper { generation } => write!(name, "service#{generation} reaper"),
        ActorSpec::Cli { text, .. } => {
            name.push_str(text);
            write!(name, " [a{id}]")
        }
        ActorSpec::Script { agent_id, behaviour, .. } => {
            name.push_str(agent_id);
            name.push(' ');
            name.push_str(behaviour_name(behaviour));
            Ok(())
        }
    };
    name
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

/// Records a retry that returned, for S7 (`crate::checks`), and remembers the stopped agent
/// for L2.
fn after_retry(
    world: &World,
    name: &str,
    task_id: &str,
    reason: &str,
    result: &Result<RetryOutcome, wg_core::ops::OpError>,
) {
    let Ok(outcome) = result else { return };
    let mut inner = world.inner.borrow_mut();
    let state = Rc::clone(&inner.store.committed);
    inner.records.push(Record::Retry(RetryRecord {
        actor_name: name.to_string(),
        task_id: task_id.to_string(),
        reason: reason.to_string(),
        outcome: outcome.clone(),
        state,
    }));
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
            let stalled = world
                .inner
                .borrow()
                .processes
                .procs
                .get(&pid)
                .is_some_and(|proc| proc.stalled_until_ms > world.now_ms());
            if !stalled {
                let _ = heartbeat(ctx, &agent_id).await;
            }
        },
        Behaviour::Hang | Behaviour::HangIgnoringTerm | Behaviour::SpawnChildren { .. } => {}
    }
}
