//! The `run = "wg ..."` line of a scenario step, read with `wg`'s own grammar: split with shell
//! rules, parsed by `wg_args::Cli` (the clap definition the `wg` binary parses with), then mapped
//! to the core operation the simulator runs. Anything `wg` accepts a scenario accepts; a command
//! `wg` accepts but the simulator cannot model (`wg list`, `wg service start`, ...) is an error
//! here, at parse time, not a surprise at run time.
//!
//! One environment variable may come first, as a shell line has it: `WG_AGENT_ID=agent-1 wg done
//! t1` runs the command as that agent, the way an agent's own `wg done $WG_TASK_ID` does.

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches};
use wg_args::{AgentsAction, Cli, Command as WgCommand, StopArgs};
use wg_core::ops::NewTask;

/// The environment variable a step may set before `wg`: whose command it is.
pub const AGENT_VARIABLE: &str = "WG_AGENT_ID";

/// A `wg` command line of a scenario, as typed and as the simulator runs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandLine {
    /// The words after `wg`: the real-process runner passes exactly these to the real `wg`.
    pub args: Vec<String>,
    /// `WG_AGENT_ID=<agent>` before `wg`: the command runs as that agent.
    pub agent: Option<String>,
    pub command: Command,
}

/// The `wg` commands the simulator models: each runs one core operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Retry {
        task: String,
        reason: String,
        stop: StopArgs,
    },
    Kill {
        agent: String,
        stop: StopArgs,
    },
    Done {
        task: String,
    },
    Fail {
        task: String,
        reason: String,
    },
    Heartbeat {
        agent: String,
    },
    /// `wg recover`: the task of `--filter id=<task>`; `apply` is `--yes` (else a dry run).
    Recover {
        task: Option<String>,
        keep_agency: bool,
        apply: bool,
    },
    Add(NewTask),
}

impl Command {
    /// The task the command names, if it names one; for `wg add`, the id the task will have
    /// (its `--id`, else the one `wg add` makes from the title).
    pub fn task(&self) -> Option<String> {
        match self {
            Command::Retry { task, .. } | Command::Done { task } | Command::Fail { task, .. } => Some(task.clone()),
            Command::Recover { task, .. } => task.clone(),
            Command::Add(new) => Some(new.id.clone().unwrap_or_else(|| wg_core::ops::slug(&new.title))),
            Command::Kill { .. } | Command::Heartbeat { .. } => None,
        }
    }

    /// The agent the command names, if it names one.
    pub fn agent(&self) -> Option<&str> {
        match self {
            Command::Kill { agent, .. } | Command::Heartbeat { agent } => Some(agent),
            _ => None,
        }
    }
}

const MODELLED: &str = "wg retry, wg agents kill, wg done, wg fail, wg heartbeat, wg recover, wg add";

/// Parses one `run` line. The error says what is wrong and what a step may run instead.
pub fn parse(text: &str) -> Result<CommandLine, String> {
    let words = shlex::split(text).ok_or("unbalanced quotes: the line does not split as a shell line")?;
    let (agent, words) = agent_variable(&words)?;
    if words.first().map(String::as_str) != Some("wg") {
        return Err(format!("a step runs a `wg` command, e.g. \"wg retry t1 --reason hung\" (one of: {MODELLED})"));
    }
    let matches = Cli::command().try_get_matches_from(words).map_err(clap_message)?;
    if matches.value_source("dir") == Some(ValueSource::CommandLine) {
        return Err("--dir: a scenario has one workgraph, its [world]; drop --dir".into());
    }
    let cli = Cli::from_arg_matches(&matches).map_err(clap_message)?;
    let command = modelled(cli.command).ok_or_else(|| {
        format!("the simulator cannot model `{}`: a step runs one of: {MODELLED}", subcommand_name(&matches))
    })??;
    Ok(CommandLine { args: words[1..].to_vec(), agent, command })
}

/// Splits off a leading `WG_AGENT_ID=<agent>`; any other assignment is refused.
fn agent_variable(words: &[String]) -> Result<(Option<String>, &[String]), String> {
    let Some((name, value)) = words.first().and_then(|word| word.split_once('=')) else { return Ok((None, words)) };
    if name.starts_with('-') || name.contains(char::is_whitespace) {
        return Ok((None, words));
    }
    if name != AGENT_VARIABLE {
        return Err(format!("{name}=...: the only variable a step may set is {AGENT_VARIABLE}=<agent>"));
    }
    if value.is_empty() {
        return Err(format!("{AGENT_VARIABLE}= needs an agent id, e.g. {AGENT_VARIABLE}=agent-1"));
    }
    Ok((Some(value.to_string()), &words[1..]))
}

/// `wg agents logs`: the subcommands the line named, without their arguments.
fn subcommand_name(matches: &clap::ArgMatches) -> String {
    let mut name = "wg".to_string();
    let mut level = matches;
    while let Some((subcommand, below)) = level.subcommand() {
        name = format!("{name} {subcommand}");
        level = below;
    }
    name
}

/// clap's error in one line: what it found, and the usage it expected.
fn clap_message(error: clap::Error) -> String {
    use clap::error::ErrorKind;
    if matches!(error.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        return "--help and --version only print: a step runs a command".into();
    }
    let rendered = error.render().to_string();
    let first = rendered.lines().next().unwrap_or_default().trim_start_matches("error: ").to_string();
    match rendered.lines().find_map(|line| line.strip_prefix("Usage: ")) {
        Some(usage) => format!("`wg` rejects this line: {first} (usage: {usage})"),
        None => format!("`wg` rejects this line: {first}"),
    }
}

/// The simulator's command for what `wg` parsed; `None` for commands it does not model.
fn modelled(command: WgCommand) -> Option<Result<Command, String>> {
    let command = match command {
        WgCommand::Retry { task, reason, stop } => Command::Retry { task, reason, stop },
        WgCommand::Agents { action: Some(AgentsAction::Kill { agent, stop }) } => Command::Kill { agent, stop },
        WgCommand::Done { task } => Command::Done { task },
        WgCommand::Fail { task, reason } => Command::Fail { task, reason },
        WgCommand::Heartbeat { agent } => Command::Heartbeat { agent },
        WgCommand::Recover { filter, keep_agency, yes } => match wg_args::recover_filter_task(filter.as_deref()) {
            Ok(task) => Command::Recover { task, keep_agency, apply: yes },
            Err(unknown) => return Some(Err(unknown.to_string())),
        },
        WgCommand::Add(add) => Command::Add(add.new_task()),
        WgCommand::Quickstart
        | WgCommand::Init
        | WgCommand::List
        | WgCommand::Show { .. }
        | WgCommand::Agents { .. }
        | WgCommand::Service { .. }
        | WgCommand::Completions { .. }
        | WgCommand::Man => return None,
    };
    Some(Ok(command))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_wg_accepts_is_parsed_as_wg_parses_it() {
        let line = parse("wg agents kill agent-1 --grace 200ms").unwrap();
        let stop = StopArgs { force: false, grace: Some(200) };
        assert_eq!(line.command, Command::Kill { agent: "agent-1".into(), stop });
        assert_eq!(line.args, ["agents", "kill", "agent-1", "--grace", "200ms"]);
        let retry = parse("wg retry t1").unwrap();
        assert!(matches!(retry.command, Command::Retry { ref reason, .. } if reason == "manual retry"), "wg's default");
        let add = parse("wg add t2 --exec 'sleep 3600'").unwrap();
        assert!(matches!(add.command, Command::Add(ref new) if new.exec.as_deref() == Some("sleep 3600")));
        let recover = parse("wg recover --filter id=t1 --keep-agency --yes").unwrap();
        assert_eq!(recover.command, Command::Recover { task: Some("t1".into()), keep_agency: true, apply: true });
    }

    #[test]
    fn the_agent_variable_makes_it_the_agents_command() {
        let line = parse("WG_AGENT_ID=agent-1 wg done t1").unwrap();
        assert_eq!(
            (line.agent.as_deref(), line.args.as_slice()),
            (Some("agent-1"), ["done".to_string(), "t1".into()].as_slice())
        );
        assert!(parse("WG_DIR=/tmp wg done t1").unwrap_err().contains("only variable a step may set is WG_AGENT_ID"));
    }

    #[test]
    fn a_line_wg_rejects_is_rejected_with_wgs_reason() {
        let error = parse("wg done t1 --agent agent-1").unwrap_err();
        assert!(error.starts_with("`wg` rejects this line: unexpected argument '--agent' found"), "{error}");
        assert!(error.contains("(usage: wg done <TASK>)"), "{error}");
        assert!(parse("wg recover t1").unwrap_err().contains("unexpected argument 't1'"));
        assert!(parse("wg recover --filter status=failed").unwrap_err().contains("only id=<task>"));
        assert!(parse("wg retry \"t1").unwrap_err().contains("unbalanced quotes"));
    }

    #[test]
    fn a_command_the_simulator_cannot_model_is_refused_by_name() {
        let lines =
            [("wg quickstart", "wg quickstart"), ("wg list", "wg list"), ("wg service start", "wg service start")];
        for (line, name) in lines {
            let error = parse(line).unwrap_err();
            assert!(error.starts_with(&format!("the simulator cannot model `{name}`")), "{error}");
        }
        assert!(parse("wg --dir /elsewhere retry t1").unwrap_err().starts_with("--dir"));
        assert!(parse("retry t1").unwrap_err().starts_with("a step runs a `wg` command"));
        assert!(parse("wg retry t1 --help").unwrap_err().starts_with("--help and --version only print"));
        assert!(parse("wg --json agents logs agent-1").unwrap_err().contains("`wg agents logs`"));
    }
}
