//! `wg init`, `add`, `list`, `show`, `done`, `fail`.

use super::{calling_agent, logs, Ports};
use crate::output::{CliError, Output};
use crate::system::store::{write_atomically, WgPaths};
use serde_json::{json, Value};
use std::borrow::Cow;
use std::fs;
use std::path::Path;
use wg_core::block_on;
use wg_core::graph::Graph;
use wg_core::model::{CrashLoop, Task, TaskStatus};
use wg_core::ops::{add_task, fail_task, finish_task, NewTask};
use wg_core::registry::Registry;
use wg_core::time::format_rfc3339;

pub fn init(dir: &Path) -> Result<Output, CliError> {
    let paths = WgPaths::new(dir);
    if paths.graph().exists() {
        return Ok(Output::new(
            format!("{} is already a workgraph folder; nothing changed", dir.display()),
            json!({"ok": true, "created": false}),
        ));
    }
    fs::create_dir_all(paths.service_dir())
        .map_err(|e| CliError::new(format!("cannot create {}: {e}", dir.display())))?;
    write_atomically(&paths.graph(), b"")?;
    Ok(Output::new(format!("Initialized {}", dir.display()), json!({"ok": true, "created": true})))
}

pub fn add(dir: &Path, new: &NewTask) -> Result<Output, CliError> {
    let ports = Ports::for_command(dir, "add")?;
    let id = block_on(add_task(ports.ctx(), new))?;
    Ok(Output::new(format!("Added task {id}"), json!({"ok": true, "id": id})))
}

pub fn list(dir: &Path) -> Result<Output, CliError> {
    let ports = Ports::for_command(dir, "list")?;
    let state = ports.store.read()?;
    let now_ms = crate::system::clock::epoch_ms_now();
    let mut human = String::new();
    if state.graph.task_count() == 0 {
        human.push_str("No tasks. Add one with `wg add <title> --exec <command>`.\n");
    } else {
        human.push_str(&format!("{:<20} {:<12} TITLE\n", "ID", "STATUS"));
    }
    for line in state.graph.task_lines() {
        let task: Listed = serde_json::from_str(&line).map_err(|e| {
            CliError::new(format!("a task line of graph.jsonl changed while it was read ({e}); run wg list again"))
        })?;
        let agent = task.assigned.as_deref().map(|agent| format!("  [{agent}]")).unwrap_or_default();
        let retries = if task.retry_count > 0 { format!("  retries {}", task.retry_count) } else { String::new() };
        let why = waiting_for(&state.graph, &task, now_ms).map(|why| format!("  ({why})")).unwrap_or_default();
        human.push_str(&format!("{:<20} {:<12} {}{agent}{retries}{why}\n", task.id, task.status, task.title));
    }
    Ok(Output::deferred(human, move || json!({"ok": true, "tasks": state.graph.tasks().collect::<Vec<&Task>>()})))
}

/// The fields `wg list` shows of a task, borrowed from its line: parsing the whole of every task
/// of a large graph would be most of the command's time and memory.
#[derive(serde::Deserialize)]
struct Listed<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(default, borrow)]
    title: Cow<'a, str>,
    #[serde(borrow)]
    status: Cow<'a, str>,
    #[serde(default, borrow)]
    assigned: Option<Cow<'a, str>>,
    #[serde(default)]
    retry_count: u32,
    #[serde(default, borrow)]
    exec: Option<Cow<'a, str>>,
    #[serde(default)]
    crash_loop: Option<CrashLoop>,
    #[serde(default, borrow)]
    after: Vec<Cow<'a, str>>,
}

/// Why an open task is not started, when the service would not start it now: what a user
/// reading `wg list` needs to tell "waiting" from "stuck".
fn waiting_for(graph: &Graph, task: &Listed, now_ms: i64) -> Option<String> {
    if TaskStatus::parse(&task.status) != TaskStatus::Open || graph.is_ready_id(&task.id, now_ms) {
        return None;
    }
    if task.exec.as_deref().is_none_or(|exec| exec.trim().is_empty()) {
        return Some("no --exec: the service never starts it".into());
    }
    let not_before_ms = task.crash_loop.as_ref().and_then(|crash_loop| crash_loop.not_before_ms);
    if let Some(until_ms) = wg_core::model::backoff_pending(not_before_ms, now_ms) {
        return Some(format!(
            "crash loop: backing off until {} (`wg retry` lifts it)",
            short_time(&format_rfc3339(until_ms))
        ));
    }
    let pending: Vec<&str> =
        task.after.iter().filter(|id| graph.status_of(id) != Some(&TaskStatus::Done)).map(|id| id.as_ref()).collect();
    if !pending.is_empty() {
        return Some(format!("waits for {}", pending.join(", ")));
    }
    Some("paused".into())
}

/// A log timestamp to the second, as people read it: `2026-11-26T04:29:09`.
fn short_time(timestamp: &str) -> &str {
    timestamp.get(..19).filter(|head| head.as_bytes().get(10) == Some(&b'T')).unwrap_or(timestamp)
}

pub fn show(dir: &Path, id: &str, tail: Option<usize>) -> Result<Output, CliError> {
    let ports = Ports::for_command(dir, "show")?;
    let state = ports.store.read()?;
    let task =
        state.graph.task(id).ok_or_else(|| CliError::new(format!("no task {id:?} in the graph (see `wg list`)")))?;
    let mut human = format!("{}  {}\n  status: {}\n", task.id, task.title, task.status);
    let mut line = |label: &str, value: Option<String>| {
        if let Some(value) = value {
            human.push_str(&format!("  {label}: {value}\n"));
        }
    };
    line("assigned", task.assigned.clone());
    line("exec", task.exec.clone());
    line("after", (!task.after.is_empty()).then(|| task.after.join(", ")));
    line(
        "retries",
        Some(format!("{}{}", task.retry_count, task.max_retries.map(|max| format!(" of {max}")).unwrap_or_default())),
    );
    line("failure", task.failure_reason.clone());
    if !task.log.is_empty() {
        let skipped = tail.map_or(0, |tail| task.log.len().saturating_sub(tail));
        match skipped {
            0 => human.push_str("  log:\n"),
            _ => human.push_str(&format!("  log ({skipped} earlier entries not shown):\n")),
        }
        for entry in &task.log[skipped..] {
            human.push_str(&format!("    {}  {}: {}\n", short_time(&entry.timestamp), entry.user, entry.message));
        }
    }
    let (output_human, output) = last_output(dir, &state.registry, task);
    human.push_str(&output_human);
    Ok(Output::new(human, json!({"ok": true, "task": task, "output": output})))
}

/// The output of the task's last agent: where it is, and for a failed task its last lines.
fn last_output(dir: &Path, registry: &Registry, task: &Task) -> (String, Value) {
    let Some(agent) = logs::last_agent(registry, &task.id) else { return (String::new(), Value::Null) };
    let path = logs::output_log(dir, &agent.id);
    let mut human = format!("  output: {} ({})\n", path.display(), agent.id);
    let mut body = json!({"agent": agent.id, "file": path});
    if task.status == TaskStatus::Failed {
        match logs::tail(&path, logs::TAIL_LINES) {
            Ok(lines) => {
                human.push_str(&format!("  last {} lines of its output:\n", lines.len()));
                human.extend(lines.iter().map(|line| format!("    {line}\n")));
                body["tail"] = json!(lines);
            }
            Err(error) => human.push_str(&format!("  (cannot read its output: {error})\n")),
        }
    }
    (human, body)
}

pub fn done(dir: &Path, id: &str) -> Result<Output, CliError> {
    let ports = Ports::for_command(dir, "done")?;
    let agent = calling_agent();
    let changed = block_on(finish_task(ports.ctx(), id, agent.as_deref()))?;
    let human = if changed { format!("{id} is done") } else { format!("{id} was already done; nothing changed") };
    Ok(Output::new(human, json!({"ok": true, "task": id, "changed": changed})))
}

pub fn fail(dir: &Path, id: &str, reason: &str) -> Result<Output, CliError> {
    let ports = Ports::for_command(dir, "fail")?;
    let agent = calling_agent();
    block_on(fail_task(ports.ctx(), id, reason, agent.as_deref()))?;
    Ok(Output::new(format!("{id} failed: {reason}"), json!({"ok": true, "task": id})))
}
