//! The file store: bad input is reported and nothing is written; upstream's files survive.

mod common;

use common::*;
use std::path::Path;

#[test]
fn a_malformed_graph_line_is_reported_with_its_number_and_nothing_is_written() {
    let wg = Workgraph::fresh();
    wg.wg_json(&["add", "First", "--id", "t1"]);
    let mut text = std::fs::read_to_string(wg.graph_path()).unwrap();
    text.push_str("{\"kind\":\"task\",\"id\":\"t2\",\"status\":\n");
    std::fs::write(wg.graph_path(), &text).unwrap();
    for args in [&["add", "Second"][..], &["retry", "t1"], &["done", "t1"], &["list"]] {
        let output = wg.wg(args);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {}", describe(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("graph.jsonl:2"), "{args:?} names file and line: {stderr}");
        assert_eq!(std::fs::read_to_string(wg.graph_path()).unwrap(), text, "{args:?} left the file as it was");
    }
}

#[test]
fn upstream_files_survive_a_retry_except_what_it_changes() {
    let wg = Workgraph::fresh();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/upstream-wg");
    std::fs::remove_dir_all(&wg.dir).unwrap();
    copy_dir(&fixture, &wg.dir);
    let graph_before = std::fs::read_to_string(wg.graph_path()).unwrap();
    let config_before = std::fs::read_to_string(wg.dir.join("config.toml")).unwrap();

    // nightly is failed: retry re-queues it. The other lines must not change at all.
    let result = wg.wg_json(&["retry", "nightly", "--reason", "flaky"]);
    assert_eq!(result["outcome"], "requeued");
    let graph_after = std::fs::read_to_string(wg.graph_path()).unwrap();
    let (before, after): (Vec<&str>, Vec<&str>) = (graph_before.lines().collect(), graph_after.lines().collect());
    assert_eq!(before.len(), after.len());
    for (old, new) in before.iter().zip(&after) {
        if old.contains("\"id\":\"nightly\"") {
            let (old, new): (serde_json::Value, serde_json::Value) =
                (serde_json::from_str(old).unwrap(), serde_json::from_str(new).unwrap());
            for field in ["priority", "paused", "exec_mode", "last_interaction_at", "description", "created_at"] {
                assert_eq!(old[field], new[field], "unknown field {field} survives");
            }
            assert_eq!(old["log"][0], new["log"][0], "old log entries survive");
            assert_eq!(new["status"], "open");
            assert_eq!(new["retry_count"], 2);
        } else {
            assert_eq!(old, new, "untouched lines are byte for byte the same");
        }
    }
    assert_eq!(std::fs::read_to_string(wg.dir.join("config.toml")).unwrap(), config_before);
    assert_eq!(
        std::fs::read_to_string(wg.registry_path()).unwrap(),
        std::fs::read_to_string(fixture.join("service/registry.json")).unwrap(),
        "the registry was not meant to change, so it was not written"
    );
}

#[test]
fn upstream_agent_with_a_foreign_pid_is_not_signalled() {
    let wg = Workgraph::fresh();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/upstream-wg");
    std::fs::remove_dir_all(&wg.dir).unwrap();
    copy_dir(&fixture, &wg.dir);
    // agent-1's pid 48211 belongs to no process of ours (or to one started after its started_at).
    let result = wg.wg_json(&["agents", "kill", "agent-1"]);
    assert!(matches!(result["outcome"].as_str(), Some("already-dead" | "not-ours")), "{result}");
    let listed = wg.wg_json(&["list"]);
    assert_eq!(listed["tasks"].as_array().unwrap().len(), 4);
}
