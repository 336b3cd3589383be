//! Which `.wg` a command works on: `--dir`/`WG_DIR`, else the nearest `.wg` here or in a parent
//! folder (as git finds `.git`); with none, one message that says what to do next.

mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Output};

const NO_WG: &str = "no .wg folder here or in any parent: run `wg init`, or pass --dir";

/// `wg args...` run in `folder`, without `--dir` or `WG_DIR`.
fn wg_in(folder: &Path, args: &[&str]) -> Output {
    Command::new(wg_binary())
        .args(args)
        .current_dir(folder)
        .env_remove("WG_DIR")
        .env_remove("WG_AGENT_ID")
        .output()
        .expect("run wg")
}

#[test]
fn a_command_in_a_subfolder_finds_the_wg_of_a_parent() {
    let wg = Workgraph::fresh();
    wg.wg_json(&["add", "Found", "--id", "t1"]);
    let deep = wg.root.path().join("src/module");
    std::fs::create_dir_all(&deep).unwrap();
    let output = wg_in(&deep, &["list"]);
    assert!(output.status.success(), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("t1"), "{}", describe(&output));
    assert!(wg_in(&deep, &["show", "t1"]).status.success());
    assert!(!deep.join(".wg").exists());
}

#[test]
fn every_command_without_a_wg_anywhere_says_so_and_what_to_do() {
    let empty = tempfile::tempdir().unwrap();
    let above = empty.path().ancestors().find(|folder| folder.join(".wg/graph.jsonl").is_file());
    assert!(above.is_none(), "the test needs a temp folder with no .wg above it: {above:?}");
    let commands: [&[&str]; 10] = [
        &["list"],
        &["agents"],
        &["show", "t1"],
        &["add", "x"],
        &["retry", "t1"],
        &["agents", "logs", "agent-1"],
        &["heartbeat", "agent-1"],
        &["service", "start"],
        &["service", "status"],
        &["service", "stop"],
    ];
    for args in commands {
        let output = wg_in(empty.path(), args);
        assert_eq!(output.status.code(), Some(1), "wg {args:?}: {}", describe(&output));
        assert_eq!(String::from_utf8_lossy(&output.stderr).trim(), format!("error: {NO_WG}"), "wg {args:?}");
        assert!(!empty.path().join(".wg").exists(), "wg {args:?} created nothing");
    }
}

#[test]
fn a_dir_given_that_is_not_a_workgraph_says_so_and_what_to_do() {
    let empty = tempfile::tempdir().unwrap();
    let missing = empty.path().join("nowhere");
    for args in [&["list"][..], &["service", "start"][..], &["service", "status"][..]] {
        let output = Command::new(wg_binary()).arg("--dir").arg(&missing).args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(1), "wg {args:?}: {}", describe(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        let expected =
            format!("no workgraph folder at {} (no graph.jsonl in it): run `wg init --dir", missing.display());
        assert!(stderr.contains(&expected), "wg {args:?}: {stderr}");
        assert!(!missing.exists(), "wg {args:?} created nothing");
    }
}

#[test]
fn init_without_dir_creates_wg_here_even_below_another() {
    let wg = Workgraph::fresh();
    let sub = wg.root.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let output = wg_in(&sub, &["init"]);
    assert!(output.status.success(), "{}", describe(&output));
    assert!(sub.join(".wg/graph.jsonl").is_file());
}
