//! Agents' output: where it is, its last lines; `wg agents logs` and the output part of `wg show`.

use super::Ports;
use crate::output::{CliError, Output};
use serde_json::json;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use wg_core::model::Agent;
use wg_core::registry::Registry;

pub use wg_args::TAIL_LINES;

/// At most this much of the end of a log is read to find its last lines.
const TAIL_BYTES: u64 = 1 << 20;

/// Where the dispatcher sends an agent's stdout and stderr.
pub fn output_log(dir: &Path, agent_id: &str) -> PathBuf {
    dir.join("agents").join(agent_id).join("output.log")
}

/// The agent that worked on `task_id` last: the one started latest (by `started_at`, then by
/// the number in its id).
pub fn last_agent<'a>(registry: &'a Registry, task_id: &str) -> Option<&'a Agent> {
    let number = |agent: &Agent| agent.id.rsplit('-').next().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
    registry
        .agents()
        .filter(|agent| agent.task_id == task_id)
        .max_by(|a, b| a.started_at.cmp(&b.started_at).then(number(a).cmp(&number(b))))
}

/// The last `lines` lines of the file (all of them when it has fewer), read from at most its
/// last MiB.
pub fn tail(path: &Path, lines: usize) -> io::Result<Vec<String>> {
    let mut file = File::open(path)?;
    let length = file.metadata()?.len();
    let start = length.saturating_sub(TAIL_BYTES);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let mut all: Vec<&str> = text.lines().collect();
    if start > 0 && !all.is_empty() {
        all.remove(0); // cut in the middle
    }
    Ok(all[all.len().saturating_sub(lines)..].iter().map(|line| line.to_string()).collect())
}

/// An agent id names a folder under `agents/`: it must not climb out of it.
fn check_agent_id(agent_id: &str) -> Result<(), CliError> {
    if agent_id.is_empty() || agent_id == "." || agent_id == ".." || agent_id.contains(['/', '\0']) {
        return Err(CliError::new(format!("{agent_id:?} is not an agent id (see `wg agents`)")));
    }
    Ok(())
}

/// `wg agents logs <agent> [--lines N]`.
pub fn agent_logs(dir: &Path, agent_id: &str, lines: usize) -> Result<Output, CliError> {
    check_agent_id(agent_id)?;
    let ports = Ports::for_command(dir, "agents logs")?;
    let known = ports.store.read()?.registry.agent(agent_id).is_some();
    let path = output_log(dir, agent_id);
    let shown = match tail(&path, lines) {
        Ok(shown) => shown,
        Err(error) if error.kind() == io::ErrorKind::NotFound && !known => {
            return Err(CliError::new(format!("no agent {agent_id} in the registry (see `wg agents`)")));
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(CliError::new(format!(
                "{agent_id} has no output file ({} does not exist): it never started, or another tool ran it",
                path.display()
            )));
        }
        Err(error) => return Err(CliError::new(format!("cannot read {}: {error}", path.display()))),
    };
    let human = shown.iter().map(|line| format!("{line}\n")).collect::<String>();
    let body = json!({"ok": true, "agent": agent_id, "output_file": path, "lines": shown});
    Ok(Output::new(human, body))
}
