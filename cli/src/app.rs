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
  3  wg service status: no service runs
A reader that closes the pipe early (wg list | head -1) is a normal end: no message,
the same exit code.";

#[derive(Parser, Debug)]
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

#[derive(Subcommand, Debug)]
pub enum Command {
    /// A printed guide: getting started, the service, recovering hung agents and failed tasks.
    Quickstart,
    /// Create an empty workgraph folder.
    Init,
    /// Add a task.
    Add {
        /// What the task is, in a few words (shown by `wg list`).
        title: String,
        /// The task's id (default: made from the title, e.g. "nightly-checks").
        #[arg(long)]
        id: Option<String>,
        /// Shell command an agent runs for this task.
        #[arg(long)]
        exec: Option<String>,
        /// A task that must be done first (repeatable).
        #[arg(long)]
        after: Vec<String>,
        /// `wg retry` refuses to re-open the failed task once its retry_count reaches this
        /// (default: no limit).
        #[arg(long)]
        max_retries: Option<u32>,
        /// A tag (repeatable).
        #[arg(long = "tag", short = 't')]
        tags: Vec<String>,
    },
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
    },
    /// The dispatcher and reaper.
    Service {
        #[command(subcommand)]
        action: ServiceAction,
    },
}

/// The folder name `wg init` creates and the search looks for.
const WG_FOLDER: &str = ".wg";

/// The workgraph folder a command works on: `--dir`/`WG_DIR` when given, else the nearest `.wg`
/// in the current folder or a parent, as git finds `.git`. It must hold a `graph.jsonl`.
pub fn workgraph_dir(given: Option<PathBuf>) -> Result<PathBuf, CliError> {
    match given {
        Some(dir) if is_workgraph(&dir) => Ok(dir),
        Some(dir) => Err(CliError::new(format!(
            "no workgraph folder at {} (no graph.jsonl in it): run `wg init --dir {0}`, or pass another --dir",
            dir.display()
        ))),
        None => find_workgraph().ok_or_else(|| {
            CliError::new("no .wg folder here or in any parent: run `wg init`, or pass --dir".to_string())
        }),
    }
}

fn is_workgraph(dir: &std::path::Path) -> bool {
    dir.join("graph.jsonl").is_file()
}

/// `.wg` in the current folder (as the relative `.wg`), or in the nearest parent that has one.
fn find_workgraph() -> Option<PathBuf> {
    if is_workgraph(std::path::Path::new(WG_FOLDER)) {
        return Some(PathBuf::from(WG_FOLDER));
    }
    let here = std::env::current_dir().ok()?;
    here.ancestors().skip(1).map(|folder| folder.join(WG_FOLDER)).find(|dir| is_workgraph(dir))
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
    /// Whether the service runs: exit 0 if it does, 3 if not (as `systemctl is-active`).
    Status,
}

pub fn run(cli: Cli) -> Result<Output, CliError> {
    let dir = match cli.command {
        Command::Quickstart | Command::Init => cli.dir.unwrap_or_else(|| PathBuf::from(WG_FOLDER)),
        _ => workgraph_dir(cli.dir)?,
    };
    match cli.command {
        Command::Quickstart => commands::quickstart::quickstart(),
        Command::Init => commands::tasks::init(&dir),
        Command::Add { title, id, exec, after, max_retries, tags } => {
            let new = wg_core::ops::NewTask { id, title, exec, after, max_retries, tags };
            commands::tasks::add(&dir, &new)
        }
        Command::List => commands::tasks::list(&dir),
        Command::Show { task, tail } => commands::tasks::show(&dir, &task, tail),
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
