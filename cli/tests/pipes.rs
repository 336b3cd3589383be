//! A reader that closes the pipe early (`wg list | head -1`) is a normal end: `wg` exits 0 and
//! says nothing.

mod common;

use common::*;
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};

/// Runs `wg args...` with stdout a pipe whose read end is already closed.
fn wg_into_a_closed_pipe(wg: &Workgraph, args: &[&str]) -> std::process::Output {
    let (read_end, write_end): (OwnedFd, OwnedFd) = nix::unistd::pipe().expect("pipe");
    drop(read_end);
    Command::new(wg_binary())
        .arg("--dir")
        .arg(&wg.dir)
        .args(args)
        .stdout(Stdio::from(write_end))
        .stderr(Stdio::piped())
        .output()
        .expect("run wg")
}

fn a_graph_with_tasks() -> Workgraph {
    let wg = Workgraph::fresh();
    for id in ["t1", "t2", "t3"] {
        wg.wg_json(&["add", id, "--id", id]);
    }
    wg
}

#[test]
fn wg_list_into_a_closed_pipe_exits_0_quietly() {
    let wg = a_graph_with_tasks();
    for args in [&["list"][..], &["--json", "list"][..], &["show", "t1"][..], &["quickstart"][..]] {
        let output = wg_into_a_closed_pipe(&wg, args);
        assert_eq!(output.status.code(), Some(0), "wg {args:?}: {}", describe(&output));
        assert!(output.stderr.is_empty(), "wg {args:?} says nothing: {}", describe(&output));
    }
}

#[test]
fn a_failing_command_into_a_closed_pipe_still_exits_1_with_its_message() {
    let wg = a_graph_with_tasks();
    let output = wg_into_a_closed_pipe(&wg, &["--json", "show", "no-such-task"]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no task \"no-such-task\""), "{}", describe(&output));
    assert!(!stderr.contains("panicked"), "{}", describe(&output));
}
