//! The `wg` command line: which command runs for the arguments `wg_args` parsed.

use crate::commands;
use crate::output::{CliError, Output};
use std::path::PathBuf;
pub use wg_args::{AddArgs, AgentsAction, Cli, Command, ServiceAction, StopArgs};

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

pub fn run(cli: Cli) -> Result<Output, CliError> {
    let dir = match cli.command {
        Command::Quickstart | Command::Init | Command::Completions { .. } | Command::Man => {
            cli.dir.unwrap_or_else(|| PathBuf::from(WG_FOLDER))
        }
        _ => workgraph_dir(cli.dir)?,
    };
    match cli.command {
        Command::Quickstart => commands::quickstart::quickstart(),
        Command::Completions { shell } => Ok(commands::generated::completions_output::<Cli>(shell)),
        Command::Man => Ok(commands::generated::man_output::<Cli>()),
        Command::Init => commands::tasks::init(&dir),
        Command::Add(add) => commands::tasks::add(&dir, &add.new_task()),
        Command::List => commands::tasks::list(&dir),
        Command::Show { task, tail } => commands::tasks::show(&dir, &task, tail),
        Command::Agents { action: None } => commands::agents::list(&dir),
        Command::Agents { action: Some(AgentsAction::Kill { agent, stop }) } => {
            commands::agents::kill(&dir, &agent, &stop)
        }
        Command::Agents { action: Some(AgentsAction::Logs { agent, lines }) } => {
            commands::logs::agent_logs(&dir, &agent, lines)
        }
        Command::Done { task } => commands::tasks::done(&dir, &task),
        Command::Fail { task, reason } => commands::tasks::fail(&dir, &task, &reason),
        Command::Heartbeat { agent } => commands::agents::heartbeat(&dir, &agent),
        Command::Recover { filter, keep_agency, yes } => commands::recovery::recover(&dir, filter, keep_agency, yes),
        Command::Retry { task, reason, stop } => commands::recovery::retry(&dir, &task, &reason, &stop),
        Command::Service { action } => match action {
            ServiceAction::Run => crate::service::run(&dir),
            ServiceAction::Start => crate::service::start(&dir),
            ServiceAction::Stop => crate::service::stop(&dir),
            ServiceAction::Status => crate::service::status(&dir),
        },
    }
}
