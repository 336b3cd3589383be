//! What `wg-sim` tells a person and a CI system: failures grouped, traces in one folder that
//! replay alone, a summary line, JUnit XML without --real, sharded campaigns whose merge equals
//! the unsharded run, and a closed stdout that ends the command quietly.
//! The fixture `sometimes_failing.toml` fails on about 9 seeds in 300, all the same way.

use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("cli/ is in the workspace").to_path_buf()
}

fn fixture() -> String {
    repo().join("cli/tests/fixtures/sometimes_failing.toml").display().to_string()
}

fn wg_sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wg-sim")).current_dir(repo()).args(args).output().expect("wg-sim runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn shown(output: &Output) -> String {
    format!("{}\n--- stderr:\n{}", stdout(output), String::from_utf8_lossy(&output.stderr))
}

/// The failure lines of a `--out` JSONL file: (scenario, seed, checker, shrunk trace).
fn failures_in(file: &Path) -> BTreeSet<(String, u64, String, String)> {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let mut lines = text.lines();
    let header: Value = serde_json::from_str(lines.next().expect("a header line")).unwrap();
    assert_eq!(header["kind"], "campaign", "{text}");
    lines
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .inspect(|value| assert_eq!(value["kind"], "failure"))
        .map(|value| {
            (
                value["scenario"].as_str().unwrap().to_string(),
                value["seed"].as_u64().unwrap(),
                value["checker"].as_str().unwrap().to_string(),
                value["shrunk_trace"].to_string(),
            )
        })
        .collect()
}

#[test]
fn failures_are_grouped_and_their_traces_replay_alone() {
    let out = tempfile::tempdir().unwrap();
    let out_path = out.path().display().to_string();
    let output = wg_sim(&["fuzz", "--seeds", "0..300", "--out", &out_path, &fixture()]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{}", shown(&output));
    let failures = failures_in(&out.path().join("failures.jsonl"));
    assert!(failures.len() >= 2, "the fixture fails on several seeds: {text}");
    assert_eq!(text.matches("FAIL scenario=").count(), 1, "one block for one way of failing: {text}");
    let others = failures.len() - 1;
    assert!(
        text.contains(&format!("  + {others} more seeds fail the same way ({} seeds in all): ", failures.len())),
        "{text}"
    );
    let last = text.lines().last().unwrap();
    assert!(
        last.starts_with("total: scenarios 1, seeds 300 in ") && last.contains(&format!("failures {}", failures.len())),
        "the summary line ends the output: {last}"
    );
    // Every failing seed's trace is in --out, and replays with nothing but the trace.
    let (_, seed, checker, _) = failures.iter().nth(1).unwrap().clone();
    let trace = out.path().join(format!("sometimes_failing-{seed}.jsonl"));
    let replay = wg_sim(&["replay", "--trace", &trace.display().to_string()]);
    assert_eq!(replay.status.code(), Some(1), "{}", shown(&replay));
    let replayed = stdout(&replay);
    assert!(replayed.starts_with(&format!("replay scenario=sometimes_failing seed={seed} ")), "{replayed}");
    assert!(replayed.contains(&format!("FAIL checker={checker} ")), "{replayed}");
}

#[test]
fn run_writes_its_traces_where_out_says_and_ends_with_a_summary() {
    let out = tempfile::tempdir().unwrap();
    let output = wg_sim(&["run", "--out", &out.path().display().to_string(), &fixture()]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{}", shown(&output));
    let replay_line = text.lines().find(|line| line.starts_with("  replay: ")).expect("a replay command");
    let trace = replay_line.trim_start_matches("  replay: wg-sim replay --trace ");
    assert!(Path::new(trace).starts_with(out.path()), "{replay_line}");
    assert!(Path::new(trace).is_file(), "{replay_line}");
    assert!(text.lines().last().unwrap().starts_with("total: scenarios 1, seeds "), "{text}");
}

#[test]
fn junit_without_real_has_a_testcase_per_scenario_and_the_failure_block() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("sim.xml");
    let passing = repo().join("scenarios/two_retries.toml").display().to_string();
    let out = dir.path().join("traces").display().to_string();
    let args = ["run", "--seeds", "50", "--junit", &report.display().to_string(), "--out", &out, &fixture(), &passing];
    let output = wg_sim(&args);
    assert_eq!(output.status.code(), Some(1), "{}", shown(&output));
    let xml = std::fs::read_to_string(&report).expect("the JUnit report is written");
    let document = roxmltree::Document::parse(&xml).unwrap_or_else(|e| panic!("{e}: {xml}"));
    let suite = document.root_element();
    assert_eq!(suite.tag_name().name(), "testsuite");
    assert_eq!((suite.attribute("tests"), suite.attribute("failures")), (Some("2"), Some("1")), "{xml}");
    let cases: Vec<roxmltree::Node> = suite.children().filter(|node| node.has_tag_name("testcase")).collect();
    let names: Vec<&str> = cases.iter().filter_map(|case| case.attribute("name")).collect();
    assert_eq!(names, ["sometimes_failing", "two_retries"]);
    let failure = cases[0].children().find(|node| node.has_tag_name("failure")).expect("a <failure>");
    assert!(failure.attribute("message").unwrap().contains("expect: t1.retry_count = 1 (actual: 2)"), "{xml}");
    let body = failure.text().unwrap_or("");
    assert!(body.starts_with("FAIL scenario=sometimes_failing seed="), "{body}");
    assert!(body.contains("  replay: wg-sim replay --trace "), "{body}");
    assert!(!cases[1].children().any(|node| node.has_tag_name("failure")), "two_retries passes: {xml}");
}

#[test]
fn the_shards_together_find_what_one_run_finds_and_merge_reports_them() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    let shards = dir.path().join("shards");
    let output = wg_sim(&["fuzz", "--seeds", "0..300", "--out", &whole.display().to_string(), &fixture()]);
    assert_eq!(output.status.code(), Some(1), "{}", shown(&output));
    let expected = failures_in(&whole.join("failures.jsonl"));
    assert!(expected.len() >= 2, "failures to compare");
    let mut union = BTreeSet::new();
    for index in 0..3 {
        let shard = format!("{index}/3");
        let output = wg_sim(&[
            "fuzz",
            "--seeds",
            "0..300",
            "--shard",
            &shard,
            "--out",
            &shards.display().to_string(),
            &fixture(),
        ]);
        assert!(matches!(output.status.code(), Some(0 | 1)), "{}", shown(&output));
        assert!(stdout(&output).contains("seeds 100 in "), "each shard runs a third: {}", shown(&output));
        let found = failures_in(&shards.join(format!("failures.shard-{index}-of-3.jsonl")));
        assert!(found.is_disjoint(&union), "no seed is in two shards");
        union.extend(found);
    }
    assert_eq!(union, expected, "the shards' failures are the unsharded run's");

    let merged = wg_sim(&["merge", &shards.display().to_string()]);
    let text = stdout(&merged);
    assert_eq!(merged.status.code(), Some(1), "a failure fails the merge: {}", shown(&merged));
    assert_eq!(text.matches("FAIL scenario=").count(), 1, "{text}");
    assert!(text.contains("merged: shards 3, seeds 0..300, seeds run 300, failures "), "{text}");

    // A shard left out would leave its seeds unreported: refused.
    let partial = wg_sim(&["merge", &shards.join("failures.shard-0-of-3.jsonl").display().to_string()]);
    assert_eq!(partial.status.code(), Some(2), "{}", shown(&partial));
    assert!(String::from_utf8_lossy(&partial.stderr).contains("shard 1/3, 2/3 of --seeds 0..300 missing"));
}

/// `wg-sim run scenarios/ | head -1`: the reader closes the pipe after one line.
#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wg-sim"))
        .current_dir(repo())
        .args(["run", "--seeds", "200", "scenarios/"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wg-sim starts");
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    // The reader is dropped here: the pipe is closed.
    let output = child.wait_with_output().expect("wg-sim ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(first.starts_with("ok   "), "{first}");
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
