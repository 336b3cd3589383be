//! `graph.jsonl`, read and written losslessly.
//!
//! Each line is kept as it was read. A task line that an operation changes (through
//! [`Graph::task_mut`]) is serialized again; every other line is written back byte for byte, so
//! another tool's formatting, field order and unknown kinds of line survive our writes.

use crate::model::Task;
use std::collections::BTreeMap;
use std::fmt;

#[derive(Clone, Debug, PartialEq)]
enum Line {
    /// A task; `raw` is the text as read, `None` once changed or when created by us.
    Task { task: Box<Task>, raw: Option<String> },
    /// Any other line (other kinds, blank lines), kept verbatim.
    Other(String),
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Graph {
    lines: Vec<Line>,
    index: BTreeMap<String, usize>,
    trailing_newline: bool,
}

/// A graph line that does not parse; `line` counts from 1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphParseError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for GraphParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for GraphParseError {}

impl Graph {
    /// Parses the bytes of `graph.jsonl`. Any bad line is an error naming it; nothing is guessed.
    pub fn parse(bytes: &[u8]) -> Result<Graph, GraphParseError> {
        let mut graph = Graph { trailing_newline: bytes.is_empty() || bytes.ends_with(b"\n"), ..Graph::default() };
        if bytes.is_empty() {
            return Ok(graph);
        }
        let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        for (number, raw) in body.split(|byte| *byte == b'\n').enumerate().map(|(index, raw)| (index + 1, raw)) {
            let error = |message: String| GraphParseError { line: number, message };
            let text = std::str::from_utf8(raw)
                .map_err(|e| error(format!("not valid UTF-8 (byte {} of the line)", e.valid_up_to() + 1)))?;
            graph.push_parsed_line(text).map_err(error)?;
        }
        Ok(graph)
    }

    fn push_parsed_line(&mut self, text: &str) -> Result<(), String> {
        if text.trim().is_empty() {
            self.lines.push(Line::Other(text.to_string()));
            return Ok(());
        }
        // Two passes, neither building a `Value`: the head validates the whole line and names its
        // kind without allocating, then only task lines are read into a `Task`.
        let head: LineHead = serde_json::from_str(text).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => "not a JSON object".to_string(),
            _ => format!("not valid JSON: {e}"),
        })?;
        if head.kind.as_deref() != Some("task") {
            self.lines.push(Line::Other(text.to_string()));
            return Ok(());
        }
        let mut task: Task = serde_json::from_str(text).map_err(|e| format!("not a valid task: {e}"))?;
        task.extra.remove("kind");
        if let Some(first) = self.index.get(&task.id) {
            return Err(format!("duplicate task id {:?} (first on line {})", task.id, first + 1));
        }
        self.index.insert(task.id.clone(), self.lines.len());
        self.lines.push(Line::Task { task: Box::new(task), raw: Some(text.to_string()) });
        Ok(())
    }

    /// The file's new text: untouched lines verbatim, changed and new tasks serialized.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (position, line) in self.lines.iter().enumerate() {
            if position > 0 {
                out.push('\n');
            }
            match line {
                Line::Task { raw: Some(raw), .. } | Line::Other(raw) => out.push_str(raw),
                Line::Task { task, raw: None } => out.push_str(&task_line(task)),
            }
        }
        if self.trailing_newline && !self.lines.is_empty() {
            out.push('\n');
        }
        out
    }

    pub fn task(&self, id: &str) -> Option<&Task> {
        match &self.lines[*self.index.get(id)?] {
            Line::Task { task, .. } => Some(task),
            Line::Other(_) => unreachable!("index points at a task line"),
        }
    }

    /// A task to change; the line will be serialized again on commit.
    pub fn task_mut(&mut self, id: &str) -> Option<&mut Task> {
        match &mut self.lines[*self.index.get(id)?] {
            Line::Task { task, raw } => {
                *raw = None;
                Some(task)
            }
            Line::Other(_) => unreachable!("index points at a task line"),
        }
    }

    /// The task to change, only if `condition` holds for it; otherwise the line stays untouched.
    pub fn task_mut_if(&mut self, id: &str, condition: impl FnOnce(&Task) -> bool) -> Option<&mut Task> {
        if condition(self.task(id)?) {
            self.task_mut(id)
        } else {
            None
        }
    }

    /// Tasks in file order.
    pub fn tasks(&self) -> impl Iterator<Item = &Task> {
        self.lines.iter().filter_map(|line| match line {
            Line::Task { task, .. } => Some(&**task),
            Line::Other(_) => None,
        })
    }

    pub fn task_count(&self) -> usize {
        self.index.len()
    }

    /// Appends a new task; refuses a duplicate id.
    pub fn add_task(&mut self, task: Task) -> Result<(), String> {
        if self.index.contains_key(&task.id) {
            return Err(format!("a task with id {:?} already exists", task.id));
        }
        self.index.insert(task.id.clone(), self.lines.len());
        self.lines.push(Line::Task { task: Box::new(task), raw: None });
        self.trailing_newline = true;
        Ok(())
    }

    /// Whether any line differs from what was read.
    pub fn is_changed(&self) -> bool {
        self.lines.iter().any(|line| matches!(line, Line::Task { raw: None, .. }))
    }
}

/// Just enough of a line to know what it is; every other field is skipped (but still checked to
/// be valid JSON).
#[derive(serde::Deserialize)]
struct LineHead<'a> {
    #[serde(borrow, default)]
    kind: Option<std::borrow::Cow<'a, str>>,
}

fn task_line(task: &Task) -> String {
    #[derive(serde::Serialize)]
    struct TaskLine<'a> {
        kind: &'static str,
        #[serde(flatten)]
        task: &'a Task,
    }
    serde_json::to_string(&TaskLine { kind: "task", task }).expect("a task always serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TaskStatus;

    const UPSTREAM: &str = concat!(
        r#"{"kind":"task","id":"a","title":"A","status":"open","priority":10,"paused":true}"#,
        "\n",
        r#"{"kind":"resource","id":"gpu","weird":  [1,2]}"#,
        "\n",
        r#"{"kind":"task","id":"b","title":"B","status":"failed","retry_count":1,"log":[{"timestamp":"t","actor":"x","user":"u","message":"m"}]}"#,
        "\n"
    );

    #[test]
    fn untouched_graph_renders_byte_for_byte() {
        let graph = Graph::parse(UPSTREAM.as_bytes()).unwrap();
        assert_eq!(graph.render(), UPSTREAM);
        assert!(!graph.is_changed());
    }

    #[test]
    fn changing_one_task_keeps_other_lines_and_unknown_fields() {
        let mut graph = Graph::parse(UPSTREAM.as_bytes()).unwrap();
        graph.task_mut("b").unwrap().status = TaskStatus::Open;
        let text = graph.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], UPSTREAM.lines().next().unwrap());
        assert_eq!(lines[1], UPSTREAM.lines().nth(1).unwrap());
        let b: serde_json::Value = serde_json::from_str(lines[2]).unwrap();
        assert_eq!(b["status"], "open");
        assert_eq!(b["kind"], "task");
        assert_eq!(b["log"][0]["actor"], "x", "unknown log field survives");
        assert_eq!(Graph::parse(text.as_bytes()).unwrap().task("b").unwrap().retry_count, 1);
    }

    #[test]
    fn bad_line_is_reported_with_its_number() {
        let text = "{\"kind\":\"task\",\"id\":\"a\",\"status\":\"open\"}\n{\"kind\":\"task\",\"id\":\n";
        assert_eq!(Graph::parse(text.as_bytes()).unwrap_err().line, 2);
    }

    #[test]
    fn invalid_utf8_and_duplicates_are_errors() {
        let mut bytes = b"{\"kind\":\"task\",\"id\":\"a\",\"status\":\"open\"}\n".to_vec();
        bytes.extend_from_slice(b"{\"kind\":\"x\",\"v\":\"\xff\"}\n");
        assert_eq!(Graph::parse(&bytes).unwrap_err().line, 2);
        let dup = "{\"kind\":\"task\",\"id\":\"a\",\"status\":\"open\"}\n{\"kind\":\"task\",\"id\":\"a\",\"status\":\"done\"}";
        let error = Graph::parse(dup.as_bytes()).unwrap_err();
        assert_eq!(error.line, 2);
        assert!(error.message.contains("duplicate"), "{error}");
    }

    #[test]
    fn unknown_status_is_kept_verbatim() {
        let text = "{\"kind\":\"task\",\"id\":\"a\",\"status\":\"teleported\"}";
        let mut graph = Graph::parse(text.as_bytes()).unwrap();
        graph.task_mut("a").unwrap().title = "A".into();
        assert!(graph.render().contains("\"status\":\"teleported\""));
    }
}
