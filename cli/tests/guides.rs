//! The guides: `wg quickstart` and docs/agent-guide.md show only commands that parse, and the
//! quickstart covers every command.

mod common;

use clap::{CommandFactory, Parser};
use common::*;
use wg_cli::app::Cli;
use wg_cli::commands::quickstart::TEXT;

/// The commands the quickstart shows: each line that starts with `wg ` (up to the first two
/// spaces in a row, where its description starts), and each `wg ...` quoted in backquotes.
fn command_lines() -> Vec<String> {
    let mut commands = Vec::new();
    for line in TEXT.lines() {
        let line = line.trim_start();
        if line.starts_with("wg ") {
            commands.push(line.split("  ").next().unwrap().to_string());
        }
        for (index, quoted) in line.split('`').enumerate() {
            if index % 2 == 1 && quoted.starts_with("wg ") {
                commands.push(quoted.to_string());
            }
        }
    }
    commands
}

fn parse(line: &str) -> Cli {
    let words = shlex::split(line).unwrap_or_else(|| panic!("{line:?} does not split as a shell line"));
    Cli::try_parse_from(&words).unwrap_or_else(|error| panic!("{line:?} does not parse:\n{error}"))
}

/// The top-level command a guide line runs, as clap names it.
fn command_name(line: &str) -> String {
    let words = shlex::split(line).unwrap();
    let matches = Cli::command().try_get_matches_from(&words).unwrap();
    matches.subcommand_name().unwrap().to_string()
}

#[test]
fn every_command_the_quickstart_shows_parses() {
    let lines = command_lines();
    assert!(lines.len() >= 20, "the guide shows commands: {lines:?}");
    for line in &lines {
        parse(line);
    }
}

#[test]
fn the_quickstart_shows_every_top_level_command() {
    let shown: Vec<String> = command_lines().iter().map(|line| command_name(line)).collect();
    let required =
        ["init", "add", "list", "show", "agents", "done", "fail", "heartbeat", "retry", "recover", "service"];
    for command in required {
        assert!(shown.iter().any(|name| name == command), "the guide never shows `wg {command}`: {shown:?}");
    }
    for command in Cli::command().get_subcommands().map(|command| command.get_name().to_string()) {
        let named = TEXT.contains(&format!("wg {command}"));
        assert!(named, "the guide never names `wg {command}`, a command of the CLI");
    }
}

#[test]
fn the_quickstart_has_a_recovery_section_covering_the_attempt_counter() {
    assert!(TEXT.contains("RECOVERY (hung agents, failed tasks, mass failures)"));
    for topic in ["retry_count", "exactly once", "--reason", "--force", "--grace", "--yes", "alive", "heartbeat"] {
        assert!(TEXT.contains(topic), "the guide does not mention {topic}");
    }
}

#[test]
fn the_quickstart_fits_80_columns() {
    for (number, line) in TEXT.lines().enumerate() {
        assert!(line.chars().count() <= 80, "line {} is {} columns: {line:?}", number + 1, line.chars().count());
    }
}

#[test]
fn wg_quickstart_prints_its_guide_without_a_workgraph_folder() {
    let empty = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(wg_binary()).arg("quickstart").current_dir(empty.path()).output().unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim_end(), TEXT.trim_end());
    assert!(!empty.path().join(".wg").exists(), "printing the guide creates nothing");
}

fn agent_guide() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/agent-guide.md");
    std::fs::read_to_string(path).expect("docs/agent-guide.md")
}

/// The agent guide's example commands: its indented lines that start with `wg `, up to the first
/// two spaces in a row (a comment follows).
fn agent_guide_command_lines() -> Vec<String> {
    let text = agent_guide();
    let examples = text.lines().filter_map(|line| line.strip_prefix("    ")).filter(|line| line.starts_with("wg "));
    examples.map(|line| line.split("  ").next().unwrap().to_string()).collect()
}

#[test]
fn every_command_the_agent_guide_shows_parses() {
    let lines = agent_guide_command_lines();
    assert!(lines.len() >= 7, "the agent guide shows commands: {lines:?}");
    for line in &lines {
        parse(line);
    }
}

#[test]
fn the_agent_guide_covers_the_environment_and_stopping() {
    let text = agent_guide();
    let topics =
        ["WG_TASK_ID", "WG_AGENT_ID", "WG_DIR", "output.log", "trap", "signal.signal", "SIGKILL", ".evaluate-*"];
    for topic in topics {
        assert!(text.contains(topic), "the agent guide does not mention {topic}");
    }
}

#[test]
fn the_readme_and_the_quickstart_link_the_agent_guide() {
    let readme = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    assert!(std::fs::read_to_string(readme).unwrap().contains("(docs/agent-guide.md)"));
    assert!(TEXT.contains("docs/agent-guide.md"));
}
