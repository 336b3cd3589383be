//! The `wg` command line: arguments, and which command runs.

use crate::commands;
use crate::duration::parse_duration_ms;
use crate::output::{CliError, Output};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

const EXIT_CODES: &str = "\
Exit codes:
  0  done, including a no-op (agent already dead, task already open)
  1  the command failed; the message says why and what to do
  2  bad usage
A reader that closes the pipe early (wg list | head -1) is a normal end: exit 0.";

#[derive(Parser, Debug)]
#[command(name = "wg", version, about = "Recover hung work in a workgraph task coordinator", after_help = EXIT_CODES)]
pub struct Cli {
    /// The workgraph folder.
    #[arg(long, global = true, env = "WG_DIR", default_value = ".wg")]
    pub dir: PathBuf,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// A printed guide: getting started, the service, recovering hung agents and failed tasks.
    Quickstart,
    /// Create an empty workgraph folder.
    Init,
    /// Add a task.
    Add {
        title: String,
        #[arg(long)]
        id: Option<String>,
        /// Shell command an agent runs for this task.
        #[arg(long)]
        exec: Option<String>,
        /// A task that must be done first (repeatable).
        #[arg(long)]
        after: Vec<String>,
        #[arg(long)]
        max_retries: Option<u32>,
        /// A tag (repeatable).
        #[arg(long = "tag", short = 't')]
        tags: Vec<String>,
    },
    /// List tasks.
    List,
    /// Show one task with its log.
    Show { task: String },
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
    },
    /// The dispatcher and reaper.
    Service {
        #[command(subcommand)]
        action: ServiceAction,
    },
}

#[derive(Subcommand, Debug)]
pub enum AgentsAction {
    /// Stop an agent's whole process tree: SIGTERM, then SIGKILL after the grace period.
    Kill {
        agent: String,
        /// SIGKILL at once.
        #[arg(long)]
        force: bool,
        /// Time between SIGTERM and SIGKILL (5s, 200ms, ...); default from the config.
        #[arg(long, value_parser = parse_duration_ms)]
        grace: Option<u64>,
    },
    /// Print the last lines of an agent's output (.wg/agents/<agent>/output.log). No follow mode:
    /// run it again, or `tail -f` the file.
    Logs {
        agent: String,
        /// How many lines, from the end.
        #[arg(long, short = 'n', default_value_t = commands::logs::TAIL_LINES)]
        lines: usize,
    },
}

#[derive(Subcommand, Debug)]
pub enum ServiceAction {
    /// Run dispatcher and reaper in the foreground until SIGTERM or Ctrl-C.
    Run,
    /// Start the service in the background.
    Start,
    /// Stop the background service (its agents keep running).
    Stop,
    /// Whether the service runs.
    Status,
}

pub fn run(cli: Cli) -> Result<Output, CliError> {
    let dir = cli.dir;
    match cli.command {
        Command::Quickstart => commands::quickstart::quickstart(),
        Command::Init => commands::tasks::init(&dir),
        Command::Add { title, id, exec, after, max_retries, tags } => {
            let new = wg_core::ops::NewTask { id, title, exec, after, max_retries, tags };
            commands::tasks::add(&dir, &new)
        }
        Command::List => commands::tasks::list(&dir),
        Command::Show { task } => commands::tasks::show(&dir, &task),
        Command::Agents { action: None } => commands::agents::list(&dir),
        Command::Agents { action: Some(AgentsAction::Kill { agent, force, grace }) } => {
            commands::agents::kill(&dir, &agent, force, grace)
        }
        Command::Agents { action: Some(AgentsAction::Logs { agent, lines }) } => {
            commands::logs::agent_logs(&dir, &agent, lines)
        }
        Command::Done { task } => commands::tasks::done(&dir, &task),
        Command::Fail { task, reason } => commands::tasks::fail(&dir, &task, &reason),
        Command::Heartbeat { agent } => commands::agents::heartbeat(&dir, &agent),
        Command::Recover { filter, keep_agency, yes } => commands::recovery::recover(&dir, filter, keep_agency, yes),
        Command::Retry { task, reason } => commands::recovery::retry(&dir, &task, &reason),
        Command::Service { action } => match action {
            ServiceAction::Run => crate::service::run(&dir),
            ServiceAction::Start => crate::service::start(&dir),
            ServiceAction::Stop => crate::service::stop(&dir),
            ServiceAction::Status => crate::service::status(&dir),
        },
    }
}
