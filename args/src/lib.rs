//! The grammar of `wg` command lines: one clap definition, used by the `wg` binary to parse its
//! arguments, by the simulator to parse a scenario's `run = "wg ..."` lines, and by the
//! real-process scenario runner. Anything `wg` accepts a scenario accepts, and nothing else.
//!
//! Plain data only: what each command does lives in `wg_cli::app::run` (real ports) and in the
//! simulator (simulated ports); both call the same `wg_core` operations.

pub mod duration;

use clap::{Args, Parser, Subcommand};
use duration::parse_duration_ms;
use std::path::PathBuf;

const EXIT_CODES: &str = "\
Exit codes:
  0  done, including a no-op (agent already dead, task already open)
  1  the command failed; the message says why and what to do
  2  bad usage
  3  wg service status: no service runs
A reader that closes the pipe early (wg list | head -1) is a normal end: no message,
the same exit code.";

/// How many lines `wg show` prints of a failed task's output, and `wg agents logs` by default.
pub const TAIL_LINES: usize = 10;

#[derive(Parser, Clone, Debug, PartialEq, Eq)]
#[command(name = "wg", version, about = "Recover hung work in a workgraph task coordinator", after_help = EXIT_CODES)]
pub struct Cli {
    /// The workgraph folder [default: the nearest .wg here or in a parent folder; `wg init`: ./.wg]
    #[arg(long, global = true, env = "WG_DIR")]
    pub dir: Option<PathBuf>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// A printed guide: getting started, the service, recovering hung agents and failed tasks.
    Quickstart,
    /// Create an empty workgraph folder.
    Init,
    /// Add a task.
    Add(AddArgs),
    /// List tasks.
    List,
    /// Show one task with its log.
    Show {
        task: String,
        /// Only the last N log entries.
        #[arg(long, value_name = "N")]
        tail: Option<usize>,
    },
    /// List agents, checking now whether each process is alive; or act on one.
    Agents {
        #[command(subcommand)]
        action: Option<AgentsAction>,
    },
    /// Mark a task done (agents call this; WG_AGENT_ID makes it refuse a task no longer theirs).
    Done { task: String },
    /// Mark a task failed.
    Fail {
        task: String,
        /// Why it failed: kept as the task's failure reason and logged.
        #[arg(long)]
        reason: String,
    },
    /// Record that an agent is alive.
    Heartbeat { agent: String },
    /// Re-open failed and abandoned tasks (a dry run without --yes).
    Recover {
        /// Only this task: `id=<task>`.
        #[arg(long)]
        filter: Option<String>,
        /// Keep the tasks' .evaluate-*/.flip-* companions instead of abandoning them.
        #[arg(long)]
        keep_agency: bool,
        /// Apply the plan.
        #[arg(long)]
        yes: bool,
    },
    /// Stop a task's agent if one runs, and re-queue the task.
    Retry {
        task: String,
        /// Why; recorded in the task's log.
        #[arg(long, default_value = "manual retry")]
        reason: String,
        #[command(flatten)]
        stop: StopArgs,
    },
    /// The dispatcher and reaper.
    Service {
        #[command(subcommand)]
        action: ServiceAction,
    },
    /// Print a shell completion script: `wg completions bash > /etc/bash_completion.d/wg`.
    Completions { shell: ShellName },
    /// Print the manual page (roff): `wg man > wg.1; man ./wg.1`.
    Man,
}

/// The shells `completions` writes scripts for (`wg completions`, `wg-sim completions`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShellName {
    Bash,
    Zsh,
    Fish,
}

#[derive(Args, Clone, Debug, PartialEq, Eq)]
pub struct AddArgs {
    /// What the task is, in a few words (shown by `wg list`).
    pub title: String,
    /// The task's id (default: made from the title, e.g. "nightly-checks").
    #[arg(long)]
    pub id: Option<String>,
    /// Shell command an agent runs for this task.
    #[arg(long)]
    pub exec: Option<String>,
    /// A task that must be done first (repeatable).
    #[arg(long)]
    pub after: Vec<String>,
    /// `wg retry` refuses to re-open the failed task once its retry_count reaches this
    /// (default: no limit).
    #[arg(long)]
    pub max_retries: Option<u32>,
    /// A tag (repeatable).
    #[arg(long = "tag", short = 't')]
    pub tags: Vec<String>,
}

impl AddArgs {
    /// The task `wg add` asks the core to add.
    pub fn new_task(self) -> wg_core::ops::NewTask {
        let AddArgs { title, id, exec, after, max_retries, tags } = self;
        wg_core::ops::NewTask { id, title, exec, after, max_retries, tags }
    }
}

#[derive(Subcommand, Clone, Debug, PartialEq, Eq)]
pub enum AgentsAction {
    /// Stop an agent's whole process tree: SIGTERM, then SIGKILL after the grace period.
    Kill {
        agent: String,
        #[command(flatten)]
        stop: StopArgs,
    },
    /// Print the last lines of an agent's output (.wg/agents/<agent>/output.log). No follow mode:
    /// run it again, or `tail -f` the file.
    Logs {
        agent: String,
        /// How many lines, from the end.
        #[arg(long, short = 'n', default_value_t = TAIL_LINES)]
        lines: usize,
    },
}

/// How an agent is stopped: the one definition of `--force` and `--grace`, shared by
/// `wg agents kill` and `wg retry` (same meaning, same parsing).
#[derive(Args, Clone, Debug, Default, PartialEq, Eq)]
pub struct StopArgs {
    /// SIGKILL at once.
    #[arg(long)]
    pub force: bool,
    /// Time between SIGTERM and SIGKILL (5s, 200ms, ...); default from the config.
    #[arg(long, value_parser = parse_duration_ms)]
    pub grace: Option<u64>,
}

impl StopArgs {
    /// The core's stop options: these flags over the configured grace period.
    pub fn options(&self, configured_grace_ms: u64) -> wg_core::ops::StopOptions {
        wg_core::ops::StopOptions { force: self.force, grace_ms: self.grace.unwrap_or(configured_grace_ms) }
    }
}

#[derive(Subcommand, Clone, Debug, PartialEq, Eq)]
pub enum ServiceAction {
    /// Run dispatcher and reaper in the foreground until SIGTERM or Ctrl-C.
    Run,
    /// Start the service in the background.
    Start,
    /// Stop the background service (its agents keep running).
    Stop,
    /// Whether the service runs: exit 0 if it does, 3 if not (as `systemctl is-active`).
    Status,
}

/// The task a `wg recover --filter` names: `id=<task>` is the only filter there is.
pub fn recover_filter_task(filter: Option<&str>) -> Result<Option<String>, UnknownFilter> {
    let Some(filter) = filter else { return Ok(None) };
    match filter.strip_prefix("id=") {
        Some(task) => Ok(Some(task.to_string())),
        None => Err(UnknownFilter { filter: filter.to_string() }),
    }
}

/// A `wg recover --filter` other than `id=<task>`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("--filter {filter:?}: only id=<task> is supported")]
pub struct UnknownFilter {
    pub filter: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn retry_and_kill_read_force_and_grace_alike() {
        let retry = Cli::try_parse_from(["wg", "retry", "t1", "--grace", "200ms"]).unwrap();
        let Command::Retry { stop, reason, .. } = retry.command else { panic!("{retry:?}") };
        assert_eq!((stop.force, stop.grace, reason.as_str()), (false, Some(200), "manual retry"));
        let kill = Cli::try_parse_from(["wg", "agents", "kill", "agent-1", "--force", "--grace", "2"]).unwrap();
        let Command::Agents { action: Some(AgentsAction::Kill { stop, .. }) } = kill.command else { panic!() };
        assert_eq!((stop.force, stop.grace), (true, Some(2_000)));
        assert_eq!(stop.options(5_000), wg_core::ops::StopOptions { force: true, grace_ms: 2_000 });
        assert_eq!(StopArgs::default().options(5_000).grace_ms, 5_000, "the configured grace by default");
        assert!(Cli::try_parse_from(["wg", "retry", "t1", "--grace", "soon"]).is_err());
    }

    #[test]
    fn recover_filters_name_one_task_by_id() {
        assert_eq!(recover_filter_task(None), Ok(None));
        assert_eq!(recover_filter_task(Some("id=t1")), Ok(Some("t1".to_string())));
        let refused = recover_filter_task(Some("status=failed")).unwrap_err().to_string();
        assert_eq!(refused, r#"--filter "status=failed": only id=<task> is supported"#);
    }
}
