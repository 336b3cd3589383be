//! Bad input for the parsers of `graph.jsonl` and `service/registry.json` (issue 7, suite 3).
//!
//! Every file of `tests/corpus/` is either refused with an error that names its line and says
//! what is wrong, or accepted and rendered back byte for byte. A property test feeds arbitrary
//! bytes (and arbitrary mixes of plausible lines) to the graph parser: it never panics, and what
//! parses renders back unchanged. `PROPTEST_CASES=100000` runs a larger search.
// The core itself does no I/O and reads no clock; its tests may read their corpus and time a run.
#![allow(clippy::disallowed_methods)]

use proptest::prelude::*;
use std::path::{Path, PathBuf};
use wg_core::graph::Graph;
use wg_core::model::{AgentStatus, TaskStatus};
use wg_core::registry::Registry;

fn corpus(name: &str) -> Vec<u8> {
    let path: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Parses a corpus graph that must be refused; returns the error, checked to name `line`.
fn refused_graph(name: &str, line: usize, says: &str) -> String {
    let error = Graph::parse(&corpus(name)).expect_err(name);
    assert_eq!(error.line, line, "{name}: {error}");
    let text = error.to_string();
    assert!(text.contains(says), "{name}: the error says {says:?}: {text}");
    assert!(text.len() < 400, "{name}: the error is short enough to read: {} bytes", text.len());
    text
}

#[test]
fn a_truncated_last_line_is_refused_naming_that_line() {
    refused_graph("graph_truncated_last_line.jsonl", 2, "not valid JSON");
}

#[test]
fn invalid_utf8_is_refused_naming_the_line_and_the_byte() {
    let text = refused_graph("graph_invalid_utf8.jsonl", 2, "not valid UTF-8");
    assert!(text.contains("byte 37"), "{text}");
}

#[test]
fn a_duplicate_task_id_is_refused_naming_both_lines() {
    // A line of another kind with the same id is no duplicate; the second task line is.
    let text = refused_graph("graph_duplicate_ids.jsonl", 3, "duplicate task id \"a\"");
    assert!(text.contains("first on line 1"), "{text}");
}

#[test]
fn a_line_that_is_not_an_object_or_a_task_without_status_is_refused() {
    refused_graph("graph_not_an_object.jsonl", 2, "not a JSON object");
    refused_graph("graph_task_without_status.jsonl", 2, "missing field `status`");
}

#[test]
fn unknown_statuses_are_kept_verbatim_and_the_graph_renders_byte_for_byte() {
    let bytes = corpus("graph_unknown_statuses.jsonl");
    let graph = Graph::parse(&bytes).unwrap();
    assert_eq!(graph.task("a").unwrap().status, TaskStatus::Unknown("teleported".into()));
    assert_eq!(graph.task("b").unwrap().status, TaskStatus::Unknown(String::new()));
    assert_eq!(graph.render().as_bytes(), &bytes[..]);
}

#[test]
fn crlf_line_ends_and_blank_lines_survive_untouched() {
    let bytes = corpus("graph_crlf_and_blank_lines.jsonl");
    let graph = Graph::parse(&bytes).unwrap();
    assert_eq!(graph.task_count(), 1);
    assert_eq!(graph.render().as_bytes(), &bytes[..]);
}

#[test]
fn a_task_line_of_10_mb_parses_and_renders_back_byte_for_byte() {
    let title = "x".repeat(10 << 20);
    let text = format!("{{\"kind\":\"task\",\"id\":\"big\",\"title\":\"{title}\",\"status\":\"open\"}}\n");
    let started = std::time::Instant::now();
    let graph = Graph::parse(text.as_bytes()).unwrap();
    assert_eq!(graph.task("big").unwrap().title.len(), 10 << 20);
    assert!(graph.render() == text, "the 10 MB line renders back unchanged");
    eprintln!("10 MB task line: parsed and rendered in {:?}", started.elapsed());
}

#[test]
fn a_garbage_line_of_10_mb_is_refused_with_a_short_error() {
    let mut bytes = b"{\"kind\":\"task\",\"id\":\"a\",\"status\":\"open\"}\n{\"kind\":\"task\",\"id\":\"".to_vec();
    bytes.resize(bytes.len() + (10 << 20), b'y');
    let error = Graph::parse(&bytes).unwrap_err();
    assert_eq!(error.line, 2);
    assert!(error.to_string().len() < 400, "the error does not quote the line: {} bytes", error.to_string().len());
}

#[test]
fn odd_pids_in_the_registry_parse_as_written() {
    // 0, 1, -1 and a pid beyond i32 are kept as written; the process port refuses to signal them.
    let registry = Registry::parse(&corpus("registry_odd_pids.json")).unwrap();
    let pids: Vec<i64> = registry.agents().map(|agent| agent.pid).collect();
    assert_eq!(pids, [0, 1, -1, 99_999_999_999]);
}

#[test]
fn a_pid_that_is_not_a_number_is_refused_with_line_and_column() {
    let error = Registry::parse(&corpus("registry_pid_not_a_number.json")).unwrap_err();
    assert!(error.message.contains("invalid type: string \"12x\""), "{error}");
    assert!(error.message.contains("(column "), "{error}");
    assert_eq!(error.line, Some(1), "the line is a field of the error, for the store's file:line");
}

#[test]
fn a_truncated_registry_or_one_whose_key_and_id_differ_is_refused() {
    let error = Registry::parse(&corpus("registry_truncated.json")).unwrap_err();
    assert!(error.message.contains("EOF"), "{error}");
    let error = Registry::parse(&corpus("registry_key_and_id_differ.json")).unwrap_err();
    assert!(error.message.contains("\"agent-1\" has id \"agent-9\""), "{error}");
    assert_eq!(error.line, None, "a rule of ours, not the JSON parser's: no line");
}

#[test]
fn an_agent_of_a_missing_task_with_an_unknown_status_keeps_every_field() {
    let registry = Registry::parse(&corpus("registry_agent_of_missing_task_unknown_status.json")).unwrap();
    let agent = registry.agent("agent-1").unwrap();
    assert_eq!(agent.status, AgentStatus::Unknown("hibernating".into()));
    assert!(!agent.status.is_running(), "an unknown agent status is never taken for a running agent");
    let rendered: serde_json::Value = serde_json::from_str(&registry.render()).unwrap();
    assert_eq!(rendered["agents"]["agent-1"]["vendor"]["k"], 1);
    assert_eq!(rendered["upstream_field"], true);
    assert_eq!(rendered["agents"]["agent-1"]["task_id"], "no-such-task");
}

#[test]
fn a_graph_of_one_blank_line_renders_back_byte_for_byte() {
    assert_eq!(Graph::parse(b"\n").unwrap().render(), "\n");
}

/// Lines that look like what tools write, and near misses of them.
fn plausible_line() -> impl Strategy<Value = String> {
    let id = "[a-c.]{1,3}";
    prop_oneof![
        (id, "[a-z-]{0,12}").prop_map(|(id, status)| format!(
            "{{\"kind\":\"task\",\"id\":\"{id}\",\"status\":\"{status}\",\"extra\":[1,{{\"k\":null}}]}}"
        )),
        (id, 0u32..5).prop_map(|(id, n)| format!(
            "{{ \"retry_count\": {n}, \"status\": \"open\", \"id\": \"{id}\", \"kind\": \"task\", \"log\": [] }}"
        )),
        "[a-z]{0,6}".prop_map(|kind| format!("{{\"kind\":\"{kind}\",\"id\":\"a\"}}")),
        Just(String::new()),
        Just("  \r".to_string()),
        "\\PC{0,20}",
        "[{}\\[\\]\":,a-z0-9 ]{0,30}",
    ]
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_and_what_parses_renders_back(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(graph) = Graph::parse(&bytes) {
            let rendered = graph.render();
            prop_assert_eq!(rendered.as_bytes(), &bytes[..]);
        }
    }

    #[test]
    fn plausible_graphs_never_panic_and_what_parses_renders_back(
        lines in proptest::collection::vec(plausible_line(), 0..12),
        trailing_newline in any::<bool>(),
    ) {
        let mut text = lines.join("\n");
        if trailing_newline {
            text.push('\n');
        }
        match Graph::parse(text.as_bytes()) {
            Ok(graph) => {
                prop_assert_eq!(graph.render(), text);
                prop_assert!(!graph.is_changed());
            }
            Err(error) => prop_assert!(error.line >= 1 && error.line <= lines.len().max(1)),
        }
    }
}
