//! Shell completions and the manual page come from the clap definition: every subcommand is in
//! them, and they are what the binaries print.

mod common;

use clap::CommandFactory;
use common::*;
use std::process::Command;

fn stdout_of(program: &str, args: &[&str]) -> String {
    let output = Command::new(program).args(args).output().expect("runs");
    assert!(output.status.success(), "{program} {args:?}: {}", describe(&output));
    String::from_utf8(output.stdout).expect("UTF-8")
}

/// Every subcommand name, nested ones included (`agents kill`).
fn subcommand_names(command: &clap::Command) -> Vec<String> {
    command
        .get_subcommands()
        .flat_map(|sub| std::iter::once(sub.get_name().to_string()).chain(subcommand_names(sub)))
        .collect()
}

#[test]
fn bash_completion_offers_every_subcommand_of_wg() {
    let script = stdout_of(wg_binary(), &["completions", "bash"]);
    assert!(script.contains("complete -F _wg"), "a bash completion function for wg");
    let names = subcommand_names(&wg_args::Cli::command());
    assert!(names.len() >= 15, "{names:?}");
    // Each subcommand is offered in the word list of its parent (`opts="... retry ..."`).
    let offered: Vec<&str> = script
        .lines()
        .filter_map(|line| line.trim().strip_prefix("opts=\""))
        .flat_map(|words| words.trim_end_matches('"').split_whitespace())
        .collect();
    for name in names {
        assert!(offered.contains(&name.as_str()), "bash completion does not offer `{name}`");
    }
}

#[test]
fn zsh_and_fish_completions_are_printed_too() {
    assert!(stdout_of(wg_binary(), &["completions", "zsh"]).starts_with("#compdef wg"));
    assert!(stdout_of(wg_binary(), &["completions", "fish"]).contains("complete -c wg "));
}

#[test]
fn wg_sim_prints_its_own_completions() {
    let wg_sim = env!("CARGO_BIN_EXE_wg-sim");
    let script = stdout_of(wg_sim, &["completions", "bash"]);
    assert!(script.contains("_wg__sim()"), "a bash completion function for wg-sim: {script}");
    let top = script.lines().find(|line| line.contains("opts=\"-h -V")).expect("the top-level word list");
    for mode in ["run", "fuzz", "replay", "completions"] {
        assert!(top.split_whitespace().any(|word| word == mode), "{mode} in {top}");
    }
}

#[test]
fn the_manual_page_is_roff_naming_every_command() {
    let page = stdout_of(wg_binary(), &["man"]);
    assert!(page.lines().any(|line| line.starts_with(".TH wg 1")), "a roff title line: {page}");
    assert!(page.contains(".SH SUBCOMMANDS"), "{page}");
    for name in wg_args::Cli::command().get_subcommands().map(|sub| sub.get_name().to_string()) {
        assert!(
            page.contains(&format!("wg\\-{name}")) || page.contains(&format!("wg-{name}")),
            "man page lacks {name}"
        );
    }
}

#[test]
fn completions_and_man_need_no_workgraph() {
    let empty = tempfile::tempdir().unwrap();
    let output = Command::new(wg_binary()).args(["completions", "bash"]).current_dir(empty.path()).output().unwrap();
    assert!(output.status.success(), "{}", describe(&output));
}
