//! An agent's output: `wg show` names the file of the task's last agent and prints the last 10
//! lines of a failed task's; `wg agents logs` prints an agent's last lines; and the README's
//! Quickstart runs as written from an empty folder.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// A task whose agent prints `line 1` .. `line 15` and exits 2, run by the service until it fails.
fn failed_task_with_output() -> Workgraph {
    let mut wg = Workgraph::fresh();
    let exec = "for i in $(seq 1 15); do echo \"line $i\"; done; exit 2";
    wg.wg_json(&["add", "Noisy", "--id", "t1", "--exec", exec]);
    wg.start_service();
    wait_until("t1 failed", Duration::from_secs(10), || wg.task("t1")["status"] == "failed");
    wg
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn show_of_a_failed_task_names_its_agents_output_and_prints_its_last_10_lines() {
    let wg = failed_task_with_output();
    let output = wg.wg(&["show", "t1"]);
    assert!(output.status.success(), "{}", describe(&output));
    let text = stdout(&output);
    let file = wg.dir.join("agents/agent-1/output.log");
    assert!(text.contains(&format!("output: {} (agent-1)", file.display())), "{text}");
    assert!(text.contains("failure: exit code 2"), "{text}");
    let shown: Vec<&str> = text.lines().map(str::trim).filter(|line| line.starts_with("line ")).collect();
    let expected: Vec<String> = (6..=15).map(|n| format!("line {n}")).collect();
    assert_eq!(shown, expected, "{text}");
    let json = wg.wg_json(&["show", "t1"]);
    assert_eq!(json["output"]["agent"], "agent-1");
    assert_eq!(json["output"]["tail"].as_array().unwrap().len(), 10, "{json}");
}

#[test]
fn show_of_a_running_task_names_the_output_file_without_printing_it() {
    let mut wg = Workgraph::fresh();
    wg.wg_json(&["add", "Slow", "--id", "t1", "--exec", "echo printed-$((1 + 1)); sleep 600"]);
    wg.start_service();
    wait_until("t1 runs", Duration::from_secs(10), || wg.task("t1")["status"] == "in-progress");
    let log = wg.dir.join("agents/agent-1/output.log");
    wait_until("agent-1 prints", Duration::from_secs(10), || {
        std::fs::read_to_string(&log).is_ok_and(|text| text.contains("printed-2"))
    });
    let text = stdout(&wg.wg(&["show", "t1"]));
    assert!(text.contains("agents/agent-1/output.log (agent-1)"), "{text}");
    assert!(!text.contains("printed-2"), "only a failed task's output is printed: {text}");
}

#[test]
fn show_of_a_task_no_agent_ran_says_nothing_about_output() {
    let wg = Workgraph::fresh();
    wg.wg_json(&["add", "Waiting", "--id", "t1"]);
    let text = stdout(&wg.wg(&["show", "t1"]));
    assert!(!text.contains("output"), "{text}");
    assert!(wg.wg_json(&["show", "t1"])["output"].is_null());
}

#[test]
fn agents_logs_prints_the_last_lines_of_an_agents_output() {
    let wg = failed_task_with_output();
    let last_ten = wg.wg(&["agents", "logs", "agent-1"]);
    assert!(last_ten.status.success(), "{}", describe(&last_ten));
    let expected: String = (6..=15).map(|n| format!("line {n}\n")).collect();
    assert_eq!(stdout(&last_ten), expected);
    let last_three = stdout(&wg.wg(&["agents", "logs", "agent-1", "--lines", "3"]));
    assert_eq!(last_three, "line 13\nline 14\nline 15\n");
    let json = wg.wg_json(&["agents", "logs", "agent-1", "-n", "1"]);
    assert_eq!(json["lines"], serde_json::json!(["line 15"]));
}

#[test]
fn agents_logs_of_an_unknown_agent_fails_and_says_where_to_look() {
    let wg = Workgraph::fresh();
    for agent in ["agent-9", "../graph.jsonl"] {
        let output = wg.wg(&["agents", "logs", agent]);
        assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
        assert!(String::from_utf8_lossy(&output.stderr).contains("see `wg agents`"), "{}", describe(&output));
    }
}

#[test]
fn agents_logs_help_says_there_is_no_follow_mode() {
    let output = Command::new(wg_binary()).args(["agents", "logs", "--help"]).output().unwrap();
    assert!(stdout(&output).contains("No follow mode"), "{}", describe(&output));
}

/// The indented lines of the README's Quickstart section, without their `# ...` comments.
fn readme_quickstart() -> Vec<String> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).unwrap();
    let section = readme.split("## Quickstart").nth(1).unwrap().split("\n## ").next().unwrap();
    let commands = section.lines().filter_map(|line| line.strip_prefix("    "));
    // A line that is only a comment continues the comment of the command above it.
    let commands = commands.map(|line| line.split(" #").next().unwrap().trim().to_string());
    commands.filter(|line| !line.is_empty() && !line.starts_with('#')).collect()
}

/// Runs each line with `sh` in an empty folder, `wg` first in `PATH`, as a person would type
/// them: one after the other, each once the previous one has taken effect (after
/// `wg service start`, once the agent has printed its first line).
#[test]
fn the_readme_quickstart_runs_as_written_in_an_empty_folder() {
    let wg = Workgraph::uninitialised();
    let lines = readme_quickstart();
    assert!(lines.len() >= 6 && lines[0] == "wg init", "{lines:?}");
    let bin = Path::new(wg_binary()).parent().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    for line in &lines {
        let output = Command::new("sh")
            .arg("-c")
            .arg(line)
            .current_dir(wg.root.path())
            .env("PATH", &path)
            .env_remove("WG_DIR")
            .env_remove("WG_AGENT_ID")
            .output()
            .unwrap();
        assert!(output.status.success(), "{line}: {}", describe(&output));
        if line.starts_with("wg agents logs") {
            assert!(stdout(&output).contains("checking"), "{line}: {}", describe(&output));
        }
        let prints = |agent: &str| {
            let log = wg.dir.join(format!("agents/{agent}/output.log"));
            wait_until(&format!("{agent} prints"), Duration::from_secs(10), || {
                std::fs::read_to_string(&log).is_ok_and(|text| text.contains("checking"))
            });
        };
        if line == "wg service start" {
            prints("agent-1");
        }
        if line.starts_with("wg retry") {
            assert!(stdout(&output).contains("re-queued (attempt 1)"), "{line}: {}", describe(&output));
            prints("agent-2"); // the service started a new agent: the hung one is recovered
        }
        if line.starts_with("wg agents kill") {
            assert!(stdout(&output).contains("agent-2"), "{line}: {}", describe(&output));
        }
    }
}
