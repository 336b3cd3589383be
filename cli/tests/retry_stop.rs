//! `wg retry --force` and `--grace`, as `wg agents kill` has them, and what a retry says while it
//! waits for an agent that ignores SIGTERM (on a terminal only).

mod common;

use common::*;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// An agent that ignores SIGTERM (the config's grace is 2 s, see `Workgraph::fresh`).
const IGNORES_TERM: &str = "trap '' TERM; while :; do sleep 0.05; done";

fn agent_ignoring_term(wg: &mut Workgraph) -> i32 {
    let pid = wg.start_agent("agent-1", "t1", IGNORES_TERM);
    std::thread::sleep(Duration::from_millis(100)); // let the shell install its trap
    pid
}

#[test]
fn retry_force_ends_an_agent_ignoring_term_at_once() {
    let mut wg = Workgraph::fresh();
    let pid = agent_ignoring_term(&mut wg);
    let started = Instant::now();
    let output = wg.wg(&["retry", "t1", "--reason", "hung", "--force"]);
    let elapsed = started.elapsed();
    assert!(output.status.success(), "{}", describe(&output));
    assert!(elapsed < Duration::from_millis(1_500), "no grace period with --force ({elapsed:?})");
    assert!(String::from_utf8_lossy(&output.stdout).contains("SIGKILL at once"), "{}", describe(&output));
    wg.reap_finished();
    assert!(!alive(pid));
    assert_eq!(wg.task("t1")["status"], "open");
}

#[test]
fn retry_grace_waits_that_long_then_sigkills() {
    let mut wg = Workgraph::fresh();
    let pid = agent_ignoring_term(&mut wg);
    let started = Instant::now();
    let output = wg.wg(&["retry", "t1", "--reason", "hung", "--grace", "200ms"]);
    let elapsed = started.elapsed();
    assert!(output.status.success(), "{}", describe(&output));
    assert!(elapsed >= Duration::from_millis(200), "the grace period came first ({elapsed:?})");
    assert!(elapsed < Duration::from_millis(1_800), "--grace, not the configured 2 s ({elapsed:?})");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("SIGKILL after the grace period"), "{}", describe(&output));
    wg.reap_finished();
    assert!(!alive(pid));
}

#[test]
fn retry_refuses_a_grace_it_cannot_read_as_kill_does() {
    let wg = Workgraph::fresh();
    let commands: [&[&str]; 2] =
        [&["retry", "t1", "--grace", "soon"], &["agents", "kill", "agent-1", "--grace", "soon"]];
    for command in commands {
        let output = wg.wg(command);
        assert_eq!(output.status.code(), Some(2), "bad usage: {}", describe(&output));
        assert!(String::from_utf8_lossy(&output.stderr).contains("invalid value 'soon' for '--grace <GRACE>'"));
    }
}

/// `wg retry` with its stderr on a pseudo-terminal (what a person at a shell has); stdout piped.
fn retry_on_a_terminal(wg: &Workgraph, args: &[&str]) -> (std::process::Output, String) {
    let pty = nix::pty::openpty(None, None).expect("a pseudo-terminal");
    let mut command = Command::new(wg_binary());
    command.arg("--dir").arg(&wg.dir).arg("retry").args(args).env_remove("WG_AGENT_ID");
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::from(pty.slave));
    let child = command.spawn().expect("run wg");
    drop(command); // our copy of the terminal's slave end: the read below ends when wg's does
    let output = child.wait_with_output().expect("wg ends");
    let mut said = Vec::new();
    let mut master = std::fs::File::from(pty.master);
    let _ = master.read_to_end(&mut said); // ends with EIO once no process holds the slave
    (output, String::from_utf8_lossy(&said).into_owned())
}

#[test]
fn retry_says_what_it_waits_for_on_a_terminal() {
    let mut wg = Workgraph::fresh();
    let pid = agent_ignoring_term(&mut wg);
    let (output, said) = retry_on_a_terminal(&wg, &["t1", "--reason", "hung", "--grace", "300ms"]);
    assert!(output.status.success(), "{}", describe(&output));
    let expected = format!("waiting for agent-1 (pid {pid}) to exit after SIGTERM; SIGKILL in ");
    assert!(said.contains(&expected), "expected {expected:?} on the terminal, got {said:?}");
    assert!(said.contains("to exit after SIGKILL; giving up in "), "{said:?}");
}

#[test]
fn retry_says_nothing_of_its_waits_when_stderr_is_not_a_terminal() {
    let mut wg = Workgraph::fresh();
    agent_ignoring_term(&mut wg);
    let output = wg.wg(&["retry", "t1", "--reason", "hung", "--grace", "200ms"]);
    assert!(output.status.success(), "{}", describe(&output));
    assert!(!String::from_utf8_lossy(&output.stderr).contains("waiting for"), "{}", describe(&output));
}
