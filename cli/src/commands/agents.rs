//! `wg agents`, `wg agents kill`, `wg heartbeat`.

use super::Ports;
use crate::output::{CliError, Output};
use serde_json::json;
use std::path::Path;
use wg_core::block_on;
use wg_core::ops::{heartbeat as heartbeat_op, kill_agent, KillOutcome};
use wg_core::ports::{Liveness, Processes};

pub fn list(dir: &Path) -> Result<Output, CliError> {
    let ports = Ports::for_command(dir, "agents")?;
    let state = ports.store.read()?;
    let mut human = String::new();
    let mut rows = Vec::new();
    for agent in state.registry.agents() {
        let checked = if agent.status.is_running() && agent.pid != 0 {
            match block_on(ports.processes.liveness(&agent.process())) {
                Liveness::Alive => "alive".to_string(),
                Liveness::Gone(_) => "dead".to_string(),
                Liveness::Replaced => "dead (pid reused)".to_string(),
                Liveness::Refused(why) => format!("not checked: {why}"),
            }
        } else {
            "-".to_string()
        };
        human.push_str(&format!(
            "{:<10} {:<14} pid {:<8} {:<10} {}\n",
            agent.id,
            agent.task_id,
            agent.pid,
            agent.status.as_str(),
            checked
        ));
        rows.push(json!({"agent": agent, "process": checked}));
    }
    if rows.is_empty() {
        human.push_str("No agents.\n");
    }
    Ok(Output::new(human, json!({"ok": true, "agents": rows})))
}

pub fn kill(dir: &Path, agent_id: &str, stop: &wg_args::StopArgs) -> Result<Output, CliError> {
    let ports = Ports::for_command(dir, "agents kill")?;
    let options = stop.options(ports.settings.grace_ms);
    let force = options.force;
    let processes = super::waiting::Announcing::on_terminal(&ports.processes, &ports.store);
    let ctx = ports.ctx_with(&processes);
    let outcome = block_on(kill_agent(ctx, &ports.settings, agent_id, &options))?;
    let (human, kind) = match &outcome {
        KillOutcome::Unknown => (format!("no agent {agent_id} in the registry; nothing to kill"), "unknown"),
        KillOutcome::AlreadyDead { status } => {
            (format!("{agent_id} is already {status}; nothing to kill"), "already-dead")
        }
        KillOutcome::Killed { pid, escalated: false } => {
            (format!("killed {agent_id} (pid {pid}){}", if force { " with SIGKILL" } else { "" }), "killed")
        }
        KillOutcome::Killed { pid, escalated: true } => (
            format!("killed {agent_id} (pid {pid}) with SIGKILL: it ignored SIGTERM for {} ms", options.grace_ms),
            "killed",
        ),
        KillOutcome::NotOurs { pid, why } => (
            format!("{agent_id}'s pid {pid} is not its process any more ({why}); nothing signalled, entry marked dead"),
            "not-ours",
        ),
    };
    let pid = match outcome {
        KillOutcome::Killed { pid, .. } | KillOutcome::NotOurs { pid, .. } => Some(pid),
        _ => None,
    };
    Ok(Output::new(human, json!({"ok": true, "agent": agent_id, "outcome": kind, "pid": pid})))
}

pub fn heartbeat(dir: &Path, agent_id: &str) -> Result<Output, CliError> {
    let ports = Ports::for_command(dir, "heartbeat")?;
    block_on(heartbeat_op(ports.ctx(), agent_id))?;
    Ok(Output::new(String::new(), json!({"ok": true, "agent": agent_id})))
}
