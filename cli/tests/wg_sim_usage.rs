//! `wg-sim` never passes vacuously: a request that would run nothing is a usage error (exit 2)
//! that says what was wrong.

use std::process::{Command, Output};

fn wg_sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wg-sim"))
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .args(args)
        .output()
        .expect("wg-sim runs")
}

fn assert_usage_error(args: &[&str], says: &str) {
    let output = wg_sim(args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "wg-sim {args:?}: {stderr}");
    assert!(stderr.contains(says), "wg-sim {args:?} should say {says:?}, said: {stderr}");
    assert!(output.stdout.is_empty(), "nothing ran: {}", String::from_utf8_lossy(&output.stdout));
}

#[test]
fn a_folder_without_scenarios_is_an_error_not_a_pass() {
    let empty = tempfile::tempdir().expect("tempdir");
    let path = empty.path().to_str().expect("utf-8 path");
    assert_usage_error(&["run", path], "no scenario file (*.toml) in this folder");
    assert_usage_error(&["fuzz", path], "no scenario file (*.toml) in this folder");
}

#[test]
fn an_empty_seed_range_or_zero_seeds_is_an_error() {
    assert_usage_error(&["fuzz", "--seeds", "10..5", "scenarios/two_retries.toml"], "runs no seed");
    assert_usage_error(&["fuzz", "--seeds", "7..7", "scenarios/two_retries.toml"], "runs no seed");
    assert_usage_error(&["run", "--seeds", "0", "scenarios/two_retries.toml"], "invalid value '0' for '--seeds");
}

#[test]
fn a_shard_outside_its_count_is_an_error() {
    assert_usage_error(&["fuzz", "--shard", "3/3", "scenarios/two_retries.toml"], "expected i/n with 0 <= i < n");
}

#[test]
fn a_real_request_still_runs() {
    let output = wg_sim(&["run", "--seeds", "3", "scenarios/two_retries.toml"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("ok   two_retries"));
}

#[test]
fn check_explores_within_its_bounds_and_says_which() {
    let output = wg_sim(&["check", "scenarios/retry_while_done.toml", "--preemptions", "1"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("no violation within the bounds (1 preemption, 0 faults)"), "{stdout}");
    assert!(stdout.contains("schedules explored"), "{stdout}");
    assert_usage_error(&["check", "--faults", "7", "scenarios/retry_while_done.toml"], "--faults");
}

#[test]
fn a_check_stopped_by_its_time_budget_gives_no_verdict() {
    let output = wg_sim(&["check", "scenarios/two_retries.toml", "--preemptions", "3", "--time", "1ms"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains("no violation"), "an unfinished exploration proves nothing: {stdout}");
    assert!(stdout.to_lowercase().contains("incomplete"), "{stdout}");
}
