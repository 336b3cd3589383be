//! One function per `wg` command: set up the real ports, run the core operation, say what
//! happened in words and in JSON.

pub mod agents;
pub mod generated;
pub mod logs;
pub mod quickstart;
pub mod recovery;
pub mod tasks;
pub mod waiting;

use crate::config::load_settings;
use crate::output::CliError;
use crate::system::clock::SystemClock;
use crate::system::processes::SystemProcesses;
use crate::system::store::{FileStore, WgPaths};
use std::path::Path;
use wg_core::ports::Ctx;
use wg_core::settings::Settings;

/// The real ports of one command invocation.
pub struct Ports {
    pub clock: SystemClock,
    pub processes: SystemProcesses,
    pub store: FileStore,
    pub settings: Settings,
    /// Written into log entries and stop requests: which command, which process.
    pub actor: String,
}

impl Ports {
    /// Ports for a CLI command; its commits wake the service.
    pub fn for_command(dir: &Path, command: &str) -> Result<Ports, CliError> {
        let paths = WgPaths::new(dir);
        let settings = load_settings(&paths.config()).map_err(|error| CliError::new(error.to_string()))?;
        Ok(Ports {
            clock: SystemClock,
            processes: SystemProcesses::new(absolute(dir)),
            store: FileStore::new(paths, true),
            settings,
            actor: format!("wg {command} (pid {})", std::process::id()),
        })
    }

    pub fn ctx(&self) -> Ctx<'_, SystemClock, SystemProcesses, FileStore> {
        self.ctx_with(&self.processes)
    }

    /// The same ports with `processes` in front of the real one (see `waiting::Announcing`).
    pub fn ctx_with<'a, P>(&'a self, processes: &'a P) -> Ctx<'a, SystemClock, P, FileStore> {
        Ctx { clock: &self.clock, processes, store: &self.store, actor: &self.actor }
    }
}

/// Agents get `WG_DIR` as an absolute path, so they may change folders.
pub fn absolute(dir: &Path) -> std::path::PathBuf {
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}

/// The agent a command comes from, when an agent calls it.
pub fn calling_agent() -> Option<String> {
    std::env::var("WG_AGENT_ID").ok().filter(|id| !id.is_empty())
}
