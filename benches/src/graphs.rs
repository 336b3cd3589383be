//! Synthetic `graph.jsonl` files shaped like upstream workgraph's own (its repository's
//! `.workgraph/graph.jsonl`): tasks with titles, descriptions, estimates, dependencies, tags,
//! timestamps and logs, plus a line of another kind. Deterministic: the same size gives the
//! same bytes.

use serde_json::{json, Value};
use wg_core::time::format_rfc3339;

/// The id of the one failed task of [`synthetic_graph`], the one the bench retries.
pub const FAILED_TASK_ID: &str = "t-failed";

/// 2026-01-19T00:00:00Z, the day upstream's own graph starts.
const BASE_MS: i64 = 1_768_780_800_000;

/// A graph of `tasks` tasks: one failed ([`FAILED_TASK_ID`], in the middle), two thirds of the
/// rest done with a three-entry log, the others open with a one-entry log.
pub fn synthetic_graph(tasks: usize) -> String {
    assert!(tasks >= 1, "a graph to retry in needs at least the failed task");
    let mut text = String::with_capacity(tasks * 800);
    text.push_str(r#"{"kind":"actor","id":"alice","name":"Alice","capacity":40.0}"#);
    text.push('\n');
    let failed_at = tasks / 2;
    for index in 0..tasks {
        let task = if index == failed_at { failed_task(index) } else { ordinary_task(index) };
        text.push_str(&task.to_string());
        text.push('\n');
    }
    text
}

fn task_id(index: usize) -> String {
    format!("task-{index:06}")
}

fn at(index: usize, offset_s: i64) -> String {
    format_rfc3339(BASE_MS + index as i64 * 7_000 + offset_s * 1000 + (index as i64 * 37) % 1000)
}

fn entry(index: usize, offset_s: i64, actor: &str, message: String) -> Value {
    json!({"timestamp": at(index, offset_s), "actor": actor, "user": actor, "message": message})
}

fn ordinary_task(index: usize) -> Value {
    let done = index % 3 != 2;
    let agent = format!("agent-{}", index % 97 + 1);
    let after: Vec<String> = [1, 3].iter().filter(|&&back| index >= back).map(|back| task_id(index - back)).collect();
    let mut task = json!({
        "kind": "task",
        "id": task_id(index),
        "title": format!("Implement step {index} of the nightly data pipeline"),
        "description": format!(
            "Run the checks for module {index}, fix what fails and record the results in the log. \
             Acceptance: the checks pass twice in a row and the report is attached."
        ),
        "status": if done { "done" } else { "open" },
        "estimate": {"hours": (index % 8 + 1) as f64, "cost": ((index % 8 + 1) * 100) as f64},
        "after": after,
        "tags": ["pipeline", format!("phase{}", index % 5 + 1)],
        "skills": ["rust", "testing"],
        "exec": format!("sh ./steps/run.sh {index}"),
        "created_at": at(index, 0),
    });
    if done {
        task["assigned"] = json!(agent);
        task["started_at"] = json!(at(index, 30));
        task["completed_at"] = json!(at(index, 400));
        task["log"] = json!([
            entry(index, 30, &agent, "Started work".to_string()),
            entry(index, 250, &agent, format!("Checks green: {} passed, 0 failed", 100 + index % 300)),
            entry(index, 400, &agent, "Marked done".to_string()),
        ]);
    } else {
        task["log"] = json!([entry(index, 0, "alice", "Task created".to_string())]);
    }
    task
}

fn failed_task(index: usize) -> Value {
    let agent = "agent-13";
    json!({
        "kind": "task",
        "id": FAILED_TASK_ID,
        "title": "Migrate the nightly pipeline's storage",
        "description": "Move the pipeline's intermediate files to the new bucket; keep the old one readable.",
        "status": "failed",
        "estimate": {"hours": 3.0, "cost": 300.0},
        "after": [task_id(index.saturating_sub(1))],
        "tags": ["pipeline", "storage"],
        "exec": "sh ./steps/migrate.sh",
        "retry_count": 1,
        "failure_reason": "exit code 1: bucket not reachable",
        "created_at": at(index, 0),
        "started_at": at(index, 30),
        "log": [
            entry(index, 30, agent, "Started work".to_string()),
            entry(index, 90, agent, "Bucket not reachable, giving up".to_string()),
            entry(index, 91, agent, "Failed: exit code 1: bucket not reachable".to_string()),
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use wg_core::graph::Graph;
    use wg_core::model::TaskStatus;

    #[test]
    fn synthetic_graph_parses_with_one_failed_task_and_round_trips() {
        let text = synthetic_graph(30);
        let graph = Graph::parse(text.as_bytes()).expect("parses");
        assert_eq!(graph.task_count(), 30);
        assert_eq!(graph.task(FAILED_TASK_ID).expect("failed task").status, TaskStatus::Failed);
        assert_eq!(graph.tasks().filter(|task| task.status == TaskStatus::Failed).count(), 1);
        assert_eq!(graph.render(), text);
    }

    #[test]
    fn synthetic_graph_is_deterministic() {
        assert_eq!(synthetic_graph(50), synthetic_graph(50));
    }
}
