//! The scenario suite in real mode (`wg-sim run --real`), and self-tests of the runners: a
//! scenario written to fail must fail in both modes, and `--junit` must say so in its XML.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Far above the runner's own 20 s cap per scenario: reached only if the runner itself hangs.
const PER_SCENARIO_LIMIT: Duration = Duration::from_secs(60);

fn wg_sim() -> &'static str {
    env!("CARGO_BIN_EXE_wg-sim")
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("cli/ is in the workspace").to_path_buf()
}

fn failing_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/failing_scenario.toml")
}

/// Runs `wg-sim args...`, killing it (by its pid, as our own child) if it outlives `limit`.
fn run_bounded(args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(wg_sim())
        .args(args)
        .current_dir(repo())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start wg-sim");
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("wait for wg-sim").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("collect wg-sim");
            panic!("wg-sim {args:?} took longer than {limit:?}: {}", String::from_utf8_lossy(&output.stdout));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("collect wg-sim")
}

/// The output, after removing the temp folders a failed real run keeps for inspection.
fn text(output: &Output) -> String {
    let shown = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    for kept in shown.lines().filter_map(|line| line.trim().strip_prefix("files: ")) {
        if kept.contains("wg-smoke-") {
            let _ = std::fs::remove_dir_all(kept);
        }
    }
    shown
}

fn scenario_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("scenarios"))
        .expect("scenarios/")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    files
}

/// Every `scenarios/*.toml`, once each, against real processes; each with its own time bound.
#[test]
fn every_scenario_passes_in_real_mode() {
    let files = scenario_files();
    assert!(!files.is_empty(), "no scenarios found");
    let mut failed = Vec::new();
    for file in &files {
        let path = file.to_string_lossy();
        let output = run_bounded(&["run", "--real", &path], PER_SCENARIO_LIMIT);
        let shown = text(&output);
        eprint!("{shown}");
        let name = file.file_stem().unwrap().to_string_lossy();
        let verdict_line = shown.lines().find(|line| line.split_whitespace().nth(1) == Some(&*name));
        let passed = output.status.success() && verdict_line.is_some_and(|line| !line.starts_with("FAIL"));
        if !passed {
            failed.push(format!("{name}: {}", verdict_line.unwrap_or("(no verdict line)")));
        }
    }
    assert!(failed.is_empty(), "scenarios failing in real mode:\n{}", failed.join("\n"));
}

/// The runner self-test: a wrong expectation fails the simulator run (exit 1).
#[test]
fn a_scenario_written_to_fail_fails_in_the_simulator() {
    let fixture = failing_fixture();
    let traces = tempfile::tempdir().expect("tempdir");
    let out = traces.path().to_string_lossy();
    let output = run_bounded(&["run", "--out", &out, &fixture.to_string_lossy()], PER_SCENARIO_LIMIT);
    let shown = text(&output);
    assert_eq!(output.status.code(), Some(1), "{shown}");
    assert!(shown.contains("t1.retry_count = 5 (actual: 1)"), "the failure names the expectation: {shown}");
}

/// The same scenario fails in real mode too (exit 1), with expected and actual values.
#[test]
fn a_scenario_written_to_fail_fails_in_real_mode() {
    let fixture = failing_fixture();
    let output = run_bounded(&["run", "--real", &fixture.to_string_lossy()], PER_SCENARIO_LIMIT);
    let shown = text(&output);
    assert_eq!(output.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains("FAIL failing_scenario: expected t1.retry_count = 5 (actual: 1)"),
        "the failure names the expectation and the actual value: {shown}"
    );
}

/// `--junit` writes one testcase per scenario, a `<failure>` for the failing one, escaped text.
#[test]
fn junit_report_lists_passes_and_failures() {
    let report = std::env::temp_dir().join(format!("wg-sim-junit-{}.xml", std::process::id()));
    let fixture = failing_fixture();
    let passing = repo().join("scenarios/retry_vs_reaper.toml");
    let args =
        ["run", "--real", "--junit", &report.to_string_lossy(), &fixture.to_string_lossy(), &passing.to_string_lossy()];
    let output = run_bounded(&args, 2 * PER_SCENARIO_LIMIT);
    let shown = text(&output);
    assert_eq!(output.status.code(), Some(1), "{shown}");
    let xml = std::fs::read_to_string(&report).expect("the JUnit report is written");
    let _ = std::fs::remove_file(&report);
    assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuite "), "{xml}");
    assert!(xml.contains("tests=\"2\" failures=\"1\""), "{xml}");
    assert_eq!(xml.matches("<testcase ").count(), 2, "{xml}");
    assert!(xml.contains("<testcase classname=\"scenarios\" name=\"failing_scenario\""), "{xml}");
    assert!(xml.contains("<failure message=\"expected t1.retry_count = 5 (actual: 1)"), "{xml}");
    assert!(xml.contains("name=\"retry_vs_reaper\""), "{xml}");
    assert!(xml.trim_end().ends_with("</testsuite>"), "{xml}");
}

/// A malformed scenario file stops the run before anything starts: exit 2, file and line named.
#[test]
fn a_malformed_scenario_exits_2() {
    let bad = std::env::temp_dir().join(format!("wg-sim-bad-{}.toml", std::process::id()));
    std::fs::write(&bad, "[world]\nbogus = 1\n").unwrap();
    let output = run_bounded(&["run", "--real", &bad.to_string_lossy()], PER_SCENARIO_LIMIT);
    let _ = std::fs::remove_file(&bad);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains(":2:1: unknown field `bogus`"), "{}", text(&output));
}
