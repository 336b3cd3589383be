//! `graph.jsonl`, read and written losslessly, in about the file's size.
//!
//! The file's text is kept whole. Each line is checked once when read (JSON, and for a task line
//! the whole task schema, by [`line_check`]) and indexed by a small head: where it is, and for a
//! task its id, status and what the dispatcher reads to decide whether to start it. A whole
//! [`Task`] is parsed only when an operation asks for that task, and kept. A task changed through
//! [`Graph::task_mut`] is serialized again on write; every other line is copied back byte for
//! byte, so another tool's formatting, field order and unknown kinds of line survive our writes.
//!
//! What was read never changes, so it is shared: a clone of a graph (each transaction starts from
//! one) copies a pointer and the few tasks changed since the read, not the text, its index or the
//! tasks parsed so far, and every clone sees the tasks any of them parsed.

mod line_check;

use crate::model::{Task, TaskStatus};
use line_check::TaskLineView;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Write};
use std::ops::Range;
use std::sync::{Arc, OnceLock};

/// A line of the file: where its text is, and which task it holds, if any. Offsets are 32-bit
/// (files up to 4 GiB): a graph has a line per task, and this is most of its memory after the text.
#[derive(Clone, Debug, PartialEq)]
struct Line {
    /// Byte range in the text read.
    start: u32,
    end: u32,
    /// Its slot, or [`NO_TASK`].
    task: u32,
}

impl Line {
    fn new(span: Range<usize>, task: Option<u32>) -> Line {
        Line { start: span.start as u32, end: span.end as u32, task: task.unwrap_or(NO_TASK) }
    }

    fn span(&self) -> Range<usize> {
        self.start as usize..self.end as usize
    }

    fn task(&self) -> Option<u32> {
        (self.task != NO_TASK).then_some(self.task)
    }
}

/// One task as read: its head from the file, and the whole task once someone asked for it.
#[derive(Clone, Debug)]
struct ReadSlot {
    line: u32,
    head: Head,
    /// Parsed at most once for every graph sharing this read.
    parsed: OnceLock<Arc<Task>>,
}

/// What scans read of a task without parsing it: the truth for a task not changed since the read.
#[derive(Clone, Debug)]
struct Head {
    status: TaskStatus,
    start: StartFacts,
    /// The slots of its `after` ids in [`Read::after_slots`].
    after: Range<u32>,
}

/// Whether the dispatcher may start a task now, apart from its dependencies.
#[derive(Clone, Copy, Debug)]
struct StartFacts {
    runnable: bool,
    paused: bool,
    not_before_ms: Option<i64>,
}

impl StartFacts {
    fn of(task: &Task) -> StartFacts {
        StartFacts {
            runnable: is_runnable(task.exec.as_deref()),
            paused: task.extra.get("paused").and_then(|value| value.as_bool()) == Some(true),
            not_before_ms: task.crash_loop.as_ref().and_then(|crash_loop| crash_loop.not_before_ms),
        }
    }

    /// Runnable by the shell executor, not paused, not in a crash-loop backoff.
    fn allow_start(&self, now_ms: i64) -> bool {
        self.runnable && !self.paused && crate::model::backoff_pending(self.not_before_ms, now_ms).is_none()
    }
}

fn is_runnable(exec: Option<&str>) -> bool {
    exec.is_some_and(|exec| !exec.trim().is_empty())
}

/// An `after` id no task of the graph has (yet).
const NO_TASK: u32 = u32::MAX;

/// The file as read, checked and indexed; never changed afterwards.
#[derive(Debug, Default)]
struct Read {
    text: String,
    lines: Vec<Line>,
    slots: Vec<ReadSlot>,
    index: BTreeMap<Box<str>, u32>,
    /// The dependency slots of every head, each head naming its range.
    after_slots: Vec<u32>,
    /// The slots of each status as read, in file order: the service scans for in-progress and
    /// open tasks every sweep, and a pass over every slot of a large graph is most of its idle cost.
    by_status: BTreeMap<TaskStatus, Vec<u32>>,
    trailing_newline: bool,
}

#[derive(Clone, Default)]
pub struct Graph {
    read: Arc<Read>,
    /// Tasks changed or added since the read, by slot: written from here, not copied from the
    /// text. Added tasks take the slots after the read ones, and their lines follow the file's.
    changed: BTreeMap<u32, Arc<Task>>,
    /// The ids of added tasks, and their slots.
    added: BTreeMap<Box<str>, u32>,
}

impl fmt::Debug for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Graph")
            .field("lines", &(self.read.lines.len() + self.added.len()))
            .field("tasks", &self.task_count())
            .field("changed", &self.is_changed())
            .finish_non_exhaustive()
    }
}

/// Two graphs are equal when they hold the same lines and would write the same file, changed in
/// the same places.
impl PartialEq for Graph {
    fn eq(&self, other: &Graph) -> bool {
        let same_read = Arc::ptr_eq(&self.read, &other.read)
            || (self.read.trailing_newline == other.read.trailing_newline
                && self.read.lines.len() == other.read.lines.len()
                && self.read.lines.iter().zip(&other.read.lines).all(|(mine, theirs)| {
                    mine.task.eq(&theirs.task) && self.read.text[mine.span()] == other.read.text[theirs.span()]
                }));
        // Equal reads give equal slot numbers, so the changes compare slot by slot.
        same_read && self.changed == other.changed
    }
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

/// [`Graph::add_task`] found a task with the new task's id.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a task with id {id:?} already exists")]
pub struct DuplicateTask {
    pub id: String,
}

impl GraphParseError {
    /// The store's error for this graph read from `file`: nothing was written.
    pub fn in_file(self, file: String) -> crate::ports::StoreError {
        crate::ports::StoreError::Corrupt { file, line: Some(self.line), message: self.message }
    }
}

impl Graph {
    /// Parses the bytes of `graph.jsonl`. Any bad line is an error naming it; nothing is guessed.
    pub fn parse(bytes: &[u8]) -> Result<Graph, GraphParseError> {
        Graph::from_bytes(bytes.to_vec())
    }

    /// [`Graph::parse`], keeping `bytes` as the graph's text instead of a copy of them.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Graph, GraphParseError> {
        if bytes.len() >= NO_TASK as usize {
            let message = format!("the file is {} bytes; wg reads graphs of up to 4 GiB", bytes.len());
            return Err(GraphParseError { line: 1, message });
        }
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(error) => return Err(first_error_before_invalid_utf8(error.as_bytes(), error.utf8_error())),
        };
        let indexed = Indexer::default().index(&text)?;
        let read = Read {
            trailing_newline: text.is_empty() || text.ends_with('\n'),
            text,
            lines: indexed.lines,
            slots: indexed.slots,
            index: indexed.index,
            after_slots: indexed.after_slots,
            by_status: indexed.by_status,
        };
        Ok(Graph { read: Arc::new(read), changed: BTreeMap::new(), added: BTreeMap::new() })
    }

    /// The file's new text: untouched lines verbatim, changed and new tasks serialized.
    pub fn render(&self) -> String {
        let mut out = Vec::with_capacity(self.read.text.len() + 256);
        self.render_to(&mut out).expect("writing to memory does not fail");
        String::from_utf8(out).expect("the text and serialized tasks are UTF-8")
    }

    /// Writes the file's new text to `out`: untouched runs of lines are copied in one piece.
    pub fn render_to(&self, out: &mut dyn Write) -> io::Result<()> {
        self.render_laid_out(out, None)
    }

    /// [`Graph::render_to`], pushing each line written, where it is in the output, to `layout`.
    fn render_laid_out(&self, out: &mut dyn Write, mut layout: Option<&mut Vec<Line>>) -> io::Result<()> {
        let read = &*self.read;
        let mut copier = RunCopier { text: read.text.as_bytes(), run: 0..0, written: 0, out };
        let mut lay_out = |start: usize, end: usize, task: Option<u32>| {
            if let Some(layout) = layout.as_mut() {
                layout.push(Line::new(start..end, task));
            }
        };
        for (position, line) in read.lines.iter().enumerate() {
            if position > 0 {
                copier.newline_after(&read.lines[position - 1])?;
            }
            let start = copier.position();
            match line.task().and_then(|slot| self.changed.get(&slot)) {
                Some(task) => copier.owned(task_line(task).as_bytes())?,
                None => copier.text(line.span())?,
            }
            lay_out(start, copier.position(), line.task());
        }
        // Added tasks follow the file's lines, each on a line of its own.
        let added = self.changed.range(read.slots.len() as u32..);
        for (position, (&slot, task)) in added.enumerate() {
            match (position, read.lines.last()) {
                (0, Some(last)) => copier.newline_after(last)?,
                (0, None) => {}
                _ => copier.owned(b"\n")?,
            }
            let start = copier.position();
            copier.owned(task_line(task).as_bytes())?;
            lay_out(start, copier.position(), Some(slot));
        }
        if self.trailing_newline() {
            match (self.added.is_empty(), read.lines.last()) {
                (true, Some(last)) => copier.newline_after(last)?,
                (true, None) => {}
                (false, _) => copier.owned(b"\n")?,
            }
        }
        copier.flush()
    }

    /// The graph as a fresh read of what [`Graph::render`] writes for it would be: nothing
    /// changed, its text that rendered text. For a store that keeps what it committed instead of
    /// reading it back. No line is checked again: an untouched line was checked when read, and a
    /// changed one is serialized from a `Task`, which is valid by its type; the changed tasks are
    /// kept as parsed, and so is every task of the old read already parsed. A graph that alone
    /// holds its read (no clone shares it) hands its index over instead of copying it.
    pub fn into_saved(self) -> Graph {
        let mut text = Vec::with_capacity(self.read.text.len() + 512 * self.changed.len());
        let mut lines = Vec::with_capacity(self.read.lines.len() + self.added.len());
        self.render_laid_out(&mut text, Some(&mut lines)).expect("writing to memory does not fail");
        let text = String::from_utf8(text).expect("the text and serialized tasks are UTF-8");
        let Graph { mut read, changed, added } = self;
        let (mut index, mut by_status) = match Arc::get_mut(&mut read) {
            Some(owned) => (std::mem::take(&mut owned.index), std::mem::take(&mut owned.by_status)),
            None => (read.index.clone(), read.by_status.clone()),
        };
        let read = &*read;
        let slot_count = (read.slots.len() + added.len()) as u32;
        index.extend(added.iter().map(|(id, &slot)| (id.clone(), slot)));
        let mut slots = Vec::with_capacity(slot_count as usize);
        let mut after_slots = Vec::with_capacity(read.after_slots.len());
        let resolve = |ids: &[String], after_slots: &mut Vec<u32>| {
            let start = after_slots.len() as u32;
            after_slots.extend(ids.iter().map(|id| index.get(id.as_str()).copied().unwrap_or(NO_TASK)));
            start..after_slots.len() as u32
        };
        for slot in 0..slot_count {
            let line = match read.slots.get(slot as usize) {
                Some(read_slot) => read_slot.line,
                None => (read.lines.len() + (slot as usize - read.slots.len())) as u32,
            };
            let saved_slot = match (changed.get(&slot), read.slots.get(slot as usize)) {
                (Some(task), was_read) => {
                    if let Some(was_read) = was_read {
                        move_slot(&mut by_status, slot, &was_read.head.status, &task.status);
                    } else {
                        insert_slot(by_status.entry(task.status.clone()).or_default(), slot);
                    }
                    let head = Head {
                        status: task.status.clone(),
                        start: StartFacts::of(task),
                        after: resolve(&task.after, &mut after_slots),
                    };
                    ReadSlot { line, head, parsed: OnceLock::from(Arc::clone(task)) }
                }
                (None, Some(read_slot)) => {
                    let old_after =
                        &read.after_slots[read_slot.head.after.start as usize..read_slot.head.after.end as usize];
                    // An `after` id missing when read may be a task added since.
                    let after = if !added.is_empty() && old_after.contains(&NO_TASK) {
                        resolve(&read_task(read, slot).after, &mut after_slots)
                    } else {
                        let start = after_slots.len() as u32;
                        after_slots.extend_from_slice(old_after);
                        start..after_slots.len() as u32
                    };
                    ReadSlot { line, head: Head { after, ..read_slot.head.clone() }, parsed: read_slot.parsed.clone() }
                }
                (None, None) => unreachable!("every added slot holds its task in `changed`"),
            };
            slots.push(saved_slot);
        }
        let saved = Read {
            trailing_newline: text.is_empty() || text.ends_with('\n'),
            text,
            lines,
            slots,
            index,
            after_slots,
            by_status,
        };
        Graph { read: Arc::new(saved), changed: BTreeMap::new(), added: BTreeMap::new() }
    }

    /// The text this graph was read from (for a saved graph, the text it wrote): what the file
    /// held, for telling whether it still does.
    pub fn text_as_read(&self) -> &str {
        &self.read.text
    }

    pub fn task(&self, id: &str) -> Option<&Task> {
        Some(self.task_in(self.slot_of(id)?))
    }

    /// A task to change; the line will be serialized again on commit.
    pub fn task_mut(&mut self, id: &str) -> Option<&mut Task> {
        let slot = self.slot_of(id)?;
        if !self.changed.contains_key(&slot) {
            // The task as read stays shared with other graphs (and is what the commit check
            // compares against): the write below changes a copy.
            let as_read = Arc::clone(read_task(&self.read, slot));
            self.changed.insert(slot, as_read);
        }
        Some(Arc::make_mut(self.changed.get_mut(&slot).expect("inserted above")))
    }

    /// The task to change, only if `condition` holds for it; otherwise the line stays untouched.
    pub fn task_mut_if(&mut self, id: &str, condition: impl FnOnce(&Task) -> bool) -> Option<&mut Task> {
        if condition(self.task(id)?) {
            self.task_mut(id)
        } else {
            None
        }
    }

    /// Tasks in file order. Parses every task: scans that look for a status or for ready tasks
    /// have cheaper ways ([`Graph::tasks_with_status`], [`Graph::ready_tasks`]).
    pub fn tasks(&self) -> impl Iterator<Item = &Task> {
        (0..self.slot_count()).map(|slot| self.task_in(slot))
    }

    /// Tasks of one status, in file order; only those are parsed.
    pub fn tasks_with_status<'a>(&'a self, status: &'a TaskStatus) -> impl Iterator<Item = &'a Task> + 'a {
        self.slots_maybe_with(status).filter(move |&slot| self.status_in(slot) == status).map(|slot| self.task_in(slot))
    }

    /// In file order, every slot that may have `status` now: those read with it and those changed.
    fn slots_maybe_with(&self, status: &TaskStatus) -> impl Iterator<Item = u32> + '_ {
        let read: &[u32] = self.read.by_status.get(status).map_or(&[], Vec::as_slice);
        // Borrowed while nothing changed: the service and the simulator scan every transaction.
        let slots: Cow<'_, [u32]> = if self.changed.is_empty() {
            Cow::Borrowed(read)
        } else {
            let mut merged: Vec<u32> = read.iter().chain(self.changed.keys()).copied().collect();
            merged.sort_unstable();
            merged.dedup();
            Cow::Owned(merged)
        };
        (0..slots.len()).map(move |position| slots[position])
    }

    /// Whether the dispatcher may start `task` now: open, runnable by the shell executor, not
    /// paused, not in a crash-loop backoff, and every dependency done.
    pub fn is_ready(&self, task: &Task, now_ms: i64) -> bool {
        task.status == TaskStatus::Open
            && StartFacts::of(task).allow_start(now_ms)
            && task.after.iter().all(|id| self.slot_of(id).is_some_and(|slot| self.is_done(slot)))
    }

    /// The tasks [`Graph::is_ready`] holds for, in file order; only those are parsed.
    pub fn ready_tasks(&self, now_ms: i64) -> impl Iterator<Item = &Task> {
        self.slots_maybe_with(&TaskStatus::Open)
            .filter(move |&slot| self.is_ready_in(slot, now_ms))
            .map(|slot| self.task_in(slot))
    }

    /// [`Graph::is_ready`] for the task `id`, without parsing it; false for no such task.
    pub fn is_ready_id(&self, id: &str, now_ms: i64) -> bool {
        self.slot_of(id).is_some_and(|slot| self.is_ready_in(slot, now_ms))
    }

    /// The status of the task `id`, without parsing it.
    pub fn status_of(&self, id: &str) -> Option<&TaskStatus> {
        self.slot_of(id).map(|slot| self.status_in(slot))
    }

    /// Each task's line as it would be written, in file order, without parsing the tasks: for
    /// readers that want a few fields of every task (`wg list`).
    pub fn task_lines(&self) -> impl Iterator<Item = Cow<'_, str>> {
        (0..self.slot_count()).map(|slot| match self.changed.get(&slot) {
            Some(task) => Cow::Owned(task_line(task)),
            None => {
                let read = &*self.read;
                Cow::Borrowed(&read.text[read.lines[read.slots[slot as usize].line as usize].span()])
            }
        })
    }

    pub fn task_count(&self) -> usize {
        self.read.index.len() + self.added.len()
    }

    /// Appends a new task; refuses a duplicate id.
    pub fn add_task(&mut self, task: Task) -> Result<(), DuplicateTask> {
        if self.slot_of(&task.id).is_some() {
            return Err(DuplicateTask { id: task.id });
        }
        let slot = self.slot_count();
        self.added.insert(task.id.clone().into_boxed_str(), slot);
        self.changed.insert(slot, Arc::new(task));
        Ok(())
    }

    /// Whether any line differs from what was read.
    pub fn is_changed(&self) -> bool {
        !self.changed.is_empty()
    }

    /// Whether the file ends with a line end: as read, and always once a task was added.
    fn trailing_newline(&self) -> bool {
        self.read.trailing_newline || !self.added.is_empty()
    }

    /// Read and added tasks: slots are numbered from 0 in file order.
    fn slot_count(&self) -> u32 {
        (self.read.slots.len() + self.added.len()) as u32
    }

    fn slot_of(&self, id: &str) -> Option<u32> {
        self.read.index.get(id).or_else(|| self.added.get(id)).copied()
    }

    /// Each task changed or added since the graph was read, as it was read (`None` for an added
    /// one) and as it is now, in file order.
    pub fn changed_tasks(&self) -> impl Iterator<Item = (Option<&Task>, &Task)> {
        self.changed.iter().map(|(&slot, now)| {
            let was_read = (slot as usize) < self.read.slots.len();
            (was_read.then(|| &**read_task(&self.read, slot)), &**now)
        })
    }

    fn task_in(&self, slot: u32) -> &Task {
        if let Some(task) = self.changed.get(&slot) {
            return task;
        }
        read_task(&self.read, slot)
    }

    fn status_in(&self, slot: u32) -> &TaskStatus {
        match self.changed.get(&slot) {
            Some(task) => &task.status,
            None => &self.read.slots[slot as usize].head.status,
        }
    }

    fn is_ready_in(&self, slot: u32, now_ms: i64) -> bool {
        if let Some(task) = self.changed.get(&slot) {
            return self.is_ready(task, now_ms);
        }
        let head = &self.read.slots[slot as usize].head;
        head.status == TaskStatus::Open
            && head.start.allow_start(now_ms)
            && self.read.after_slots[head.after.start as usize..head.after.end as usize]
                .iter()
                .all(|&dependency| dependency != NO_TASK && self.is_done(dependency))
    }

    fn is_done(&self, slot: u32) -> bool {
        *self.status_in(slot) == TaskStatus::Done
    }
}

/// Moves `slot` from the list of tasks read with status `from` to that of `to`, in file order.
fn move_slot(by_status: &mut BTreeMap<TaskStatus, Vec<u32>>, slot: u32, from: &TaskStatus, to: &TaskStatus) {
    if from == to {
        return;
    }
    if let Some(slots) = by_status.get_mut(from) {
        if let Ok(position) = slots.binary_search(&slot) {
            slots.remove(position);
        }
        if slots.is_empty() {
            by_status.remove(from);
        }
    }
    insert_slot(by_status.entry(to.clone()).or_default(), slot);
}

/// Adds `slot` to a list of slots in file order.
fn insert_slot(slots: &mut Vec<u32>, slot: u32) {
    if let Err(position) = slots.binary_search(&slot) {
        slots.insert(position, slot);
    }
}

/// A task as read, parsed once for every graph that shares the read.
fn read_task(read: &Read, slot: u32) -> &Arc<Task> {
    let read_slot = &read.slots[slot as usize];
    read_slot.parsed.get_or_init(|| Arc::new(parse_task(read, read_slot)))
}

/// The whole task of a line checked when read.
fn parse_task(read: &Read, slot: &ReadSlot) -> Task {
    let raw = &read.text[read.lines[slot.line as usize].span()];
    let mut task: Task = serde_json::from_str(raw).expect("a task line checked when read parses as a task");
    task.extra.remove("kind");
    task
}

/// Writes pieces of the text and owned bytes, merging adjacent pieces of the text into one write.
struct RunCopier<'a> {
    text: &'a [u8],
    run: Range<usize>,
    /// Bytes written to `out` so far.
    written: usize,
    out: &'a mut dyn Write,
}

impl RunCopier<'_> {
    /// Where the next byte goes in the output, counting the run not written yet.
    fn position(&self) -> usize {
        self.written + self.run.len()
    }

    fn text(&mut self, span: Range<usize>) -> io::Result<()> {
        if self.run.end != span.start || self.run.is_empty() {
            self.flush()?;
            self.run = span.start..span.start;
        }
        self.run.end = span.end;
        Ok(())
    }

    fn owned(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.flush()?;
        self.written += bytes.len();
        self.out.write_all(bytes)
    }

    /// The line end after `line` of the text: its own when it had one.
    fn newline_after(&mut self, line: &Line) -> io::Result<()> {
        let span = line.span();
        if span.end < self.text.len() && self.text[span.end] == b'\n' {
            self.text(span.end..span.end + 1)
        } else {
            self.owned(b"\n")
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.run.is_empty() {
            self.out.write_all(&self.text[self.run.clone()])?;
            self.written += self.run.len();
        }
        self.run = 0..0;
        Ok(())
    }
}

/// The lines of a text, checked and indexed.
#[derive(Default)]
struct Indexer {
    lines: Vec<Line>,
    slots: Vec<ReadSlot>,
    index: BTreeMap<Box<str>, u32>,
    after_slots: Vec<u32>,
    by_status: BTreeMap<TaskStatus, Vec<u32>>,
    /// `after` ids not seen yet when their task was read: (position in `after_slots`, id).
    forward: Vec<(usize, Box<str>)>,
}

impl Indexer {
    fn index(mut self, text: &str) -> Result<Indexer, GraphParseError> {
        if text.is_empty() {
            return Ok(self);
        }
        let body = text.strip_suffix('\n').unwrap_or(text);
        // Sized once: growing by doubling would leave up to half of each vector unused.
        let lines = body.bytes().filter(|&byte| byte == b'\n').count() + 1;
        self.lines.reserve_exact(lines);
        self.slots.reserve_exact(lines);
        let mut start = 0;
        for (number, raw) in body.split('\n').enumerate() {
            let span = start..start + raw.len();
            start = span.end + 1;
            self.push_line(raw, span).map_err(|message| GraphParseError { line: number + 1, message })?;
        }
        for (position, id) in std::mem::take(&mut self.forward) {
            if let Some(&slot) = self.index.get(&id) {
                self.after_slots[position] = slot;
            }
        }
        self.slots.shrink_to_fit();
        self.after_slots.shrink_to_fit();
        Ok(self)
    }

    fn push_line(&mut self, text: &str, span: Range<usize>) -> Result<(), String> {
        if text.trim().is_empty() {
            self.lines.push(Line::new(span, None));
            return Ok(());
        }
        let view = if text.starts_with(TASK_LINE_START) {
            // How upstream and we write a task: one pass, checking the line as a task.
            task_view(text)?
        } else {
            // Anything else takes two passes, neither building a value: the head checks the whole
            // line and names its kind, then only a task line is checked as a task.
            let head: LineHead = serde_json::from_str(text).map_err(|e| match e.classify() {
                serde_json::error::Category::Data => "not a JSON object".to_string(),
                _ => format!("not valid JSON: {e}"),
            })?;
            if head.kind.as_deref() != Some("task") {
                self.lines.push(Line::new(span, None));
                return Ok(());
            }
            task_view(text)?
        };
        if let Some(&first) = self.index.get(view.id.as_ref()) {
            let first_line = self.slots[first as usize].line + 1;
            return Err(format!("duplicate task id {:?} (first on line {first_line})", view.id));
        }
        let after_start = self.after_slots.len();
        for id in &view.after {
            match self.index.get(id.as_ref()) {
                Some(&slot) => self.after_slots.push(slot),
                None => {
                    self.forward.push((self.after_slots.len(), id.as_ref().into()));
                    self.after_slots.push(NO_TASK);
                }
            }
        }
        let head = Head {
            status: TaskStatus::parse(&view.status),
            start: StartFacts {
                runnable: is_runnable(view.exec.as_deref()),
                paused: view.paused.0,
                not_before_ms: view.crash_loop.as_ref().and_then(|crash_loop| crash_loop.not_before_ms),
            },
            after: after_start as u32..self.after_slots.len() as u32,
        };
        let slot = self.slots.len() as u32;
        self.by_status.entry(head.status.clone()).or_default().push(slot);
        self.index.insert(view.id.as_ref().into(), slot);
        self.slots.push(ReadSlot { line: self.lines.len() as u32, head, parsed: OnceLock::new() });
        self.lines.push(Line::new(span, Some(slot)));
        Ok(())
    }
}

/// How a task line starts when upstream's `wg` or we wrote it.
const TASK_LINE_START: &str = r#"{"kind":"task","#;

fn task_view(text: &str) -> Result<TaskLineView<'_>, String> {
    serde_json::from_str(text).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => format!("not a valid task: {e}"),
        _ => format!("not valid JSON: {e}"),
    })
}

/// The error of the first bad line of a file that is not all UTF-8: a line before the invalid
/// byte may already be bad in another way.
fn first_error_before_invalid_utf8(bytes: &[u8], error: std::str::Utf8Error) -> GraphParseError {
    let valid = error.valid_up_to();
    let line_start = bytes[..valid].iter().rposition(|&byte| byte == b'\n').map_or(0, |newline| newline + 1);
    let before = std::str::from_utf8(&bytes[..line_start]).expect("checked valid up to here");
    if let Err(earlier) = Indexer::default().index(before) {
        return earlier;
    }
    GraphParseError {
        line: bytes[..line_start].iter().filter(|&&byte| byte == b'\n').count() + 1,
        message: format!("not valid UTF-8 (byte {} of the line)", valid - line_start + 1),
    }
}

/// Just enough of a line to know what it is; every other field is skipped (but still checked to
/// be valid JSON).
#[derive(serde::Deserialize)]
struct LineHead<'a> {
    #[serde(borrow, default)]
    kind: Option<Cow<'a, str>>,
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

    const READINESS: &str = concat!(
        r#"{"kind":"task","id":"a","status":"done"}"#,
        "\n",
        r#"{"kind":"task","id":"b","status":"open","after":["a"],"exec":"true"}"#,
        "\n",
        r#"{"kind":"task","id":"c","status":"open","after":["d"],"exec":"true"}"#,
        "\n",
        r#"{"id":"d","kind":"task","status":"done"}"#,
        "\n",
        r#"{"kind":"task","id":"e","status":"open","exec":"true","paused":true}"#,
        "\n",
        r#"{"kind":"task","id":"f","status":"open","exec":"true","crash_loop":{"not_before_ms":100}}"#,
        "\n",
        r#"{"kind":"task","id":"g","status":"open","exec":"  "}"#,
        "\n",
        r#"{"kind":"task","id":"h","status":"open","exec":"true","after":["nowhere"]}"#,
    );

    fn ready_ids(graph: &Graph, now_ms: i64) -> Vec<String> {
        graph.ready_tasks(now_ms).map(|task| task.id.clone()).collect()
    }

    #[test]
    fn ready_tasks_from_the_heads_agree_with_is_ready_on_parsed_tasks() {
        for now_ms in [50, 200] {
            let graph = Graph::parse(READINESS.as_bytes()).unwrap();
            let from_heads = ready_ids(&graph, now_ms);
            let parsed = Graph::parse(READINESS.as_bytes()).unwrap();
            let from_tasks: Vec<String> =
                parsed.tasks().filter(|task| parsed.is_ready(task, now_ms)).map(|task| task.id.clone()).collect();
            assert_eq!(from_heads, from_tasks, "at {now_ms}");
            assert_eq!(ready_ids(&parsed, now_ms), from_tasks, "the same graph, every task parsed");
        }
        assert_eq!(ready_ids(&Graph::parse(READINESS.as_bytes()).unwrap(), 200), ["b", "c", "f"]);
    }

    #[test]
    fn scans_see_changes_made_through_task_mut_and_add_task() {
        let mut graph = Graph::parse(READINESS.as_bytes()).unwrap();
        graph.task_mut("a").unwrap().status = TaskStatus::Open;
        assert_eq!(ready_ids(&graph, 50), ["c"], "b waits for a again");
        let mut nowhere = Task::new("nowhere", "N");
        nowhere.status = TaskStatus::Done;
        graph.add_task(nowhere).unwrap();
        assert_eq!(ready_ids(&graph, 50), ["c"], "h named a task missing when read: still not started");
        let open: Vec<&str> = graph.tasks_with_status(&TaskStatus::Open).map(|task| task.id.as_str()).collect();
        assert_eq!(open, ["a", "b", "c", "e", "f", "g", "h"]);
    }

    #[test]
    fn changed_tasks_are_listed_once_with_how_they_read_and_an_added_one_without() {
        let mut graph = Graph::parse(UPSTREAM.as_bytes()).unwrap();
        graph.task_mut("b").unwrap().status = TaskStatus::Open;
        graph.task_mut("b").unwrap().retry_count = 2;
        graph.add_task(Task::new("c", "C")).unwrap();
        let changed: Vec<(Option<&TaskStatus>, &str)> =
            graph.changed_tasks().map(|(before, now)| (before.map(|task| &task.status), now.id.as_str())).collect();
        assert_eq!(changed, [(Some(&TaskStatus::Failed), "b"), (None, "c")]);
        let duplicate = graph.add_task(Task::new("a", "again")).unwrap_err();
        assert_eq!(duplicate.to_string(), r#"a task with id "a" already exists"#);
    }

    #[test]
    fn a_task_added_to_a_file_without_a_final_newline_goes_on_its_own_line() {
        let mut graph = Graph::parse(READINESS.as_bytes()).unwrap();
        graph.add_task(Task::new("z", "Z")).unwrap();
        let text = graph.render();
        assert!(text.starts_with(READINESS), "the old lines are untouched");
        assert_eq!(
            &text[READINESS.len()..],
            "\n{\"kind\":\"task\",\"id\":\"z\",\"title\":\"Z\",\"status\":\"open\"}\n"
        );
    }

    #[test]
    fn a_clone_shares_what_was_read_and_parsed_but_not_later_changes() {
        let original = Graph::parse(UPSTREAM.as_bytes()).unwrap();
        let parsed_in_original: *const Task = original.task("b").unwrap();
        let mut copy = original.clone();
        assert!(std::ptr::eq(copy.task("b").unwrap(), parsed_in_original), "parsed once for both");
        copy.task_mut("b").unwrap().status = TaskStatus::Open;
        copy.add_task(Task::new("c", "C")).unwrap();
        assert_eq!(original.task("b").unwrap().status, TaskStatus::Failed, "the original keeps its task");
        assert!(original.task("c").is_none() && !original.is_changed());
        assert_eq!(original.render(), UPSTREAM);
        assert_ne!(copy, original);
        let mut same_change = original.clone();
        same_change.task_mut("b").unwrap().status = TaskStatus::Open;
        same_change.add_task(Task::new("c", "C")).unwrap();
        assert_eq!(same_change, copy, "equal when changed alike");
        assert_eq!(Graph::parse(copy.render().as_bytes()).unwrap().task("b").unwrap().status, TaskStatus::Open);
    }

    #[test]
    fn graphs_read_from_the_same_text_are_equal_and_unchanged_tasks_are_not_written_again() {
        let (first, second) = (Graph::parse(UPSTREAM.as_bytes()).unwrap(), Graph::parse(UPSTREAM.as_bytes()).unwrap());
        assert_eq!(first, second);
        let mut touched = first.clone();
        touched.task_mut("a");
        assert_ne!(touched, second, "a task taken for change is written again");
        assert!(touched.is_changed());
    }

    #[test]
    fn tasks_added_to_an_empty_graph_each_get_a_line() {
        let mut graph = Graph::parse(b"").unwrap();
        graph.add_task(Task::new("x", "X")).unwrap();
        graph.add_task(Task::new("y", "Y")).unwrap();
        assert!(graph.add_task(Task::new("x", "again")).is_err(), "ids are unique across added tasks");
        let text = graph.render();
        let ids: Vec<String> = Graph::parse(text.as_bytes()).unwrap().tasks().map(|task| task.id.clone()).collect();
        assert_eq!(ids, ["x", "y"]);
        assert!(text.ends_with("}\n") && !text.starts_with('\n'), "{text:?}");
    }

    /// Everything a read holds, printed: two reads are alike when these are equal.
    fn read_as_text(graph: &Graph) -> String {
        let read = &*graph.read;
        let slots: Vec<String> = read.slots.iter().map(|slot| format!("{} {:?}", slot.line, slot.head)).collect();
        format!(
            "{:?}\n{:?}\n{slots:?}\n{:?}\n{:?}\n{:?}\n{}",
            read.text, read.lines, read.index, read.after_slots, read.by_status, read.trailing_newline
        )
    }

    #[test]
    fn a_saved_graph_is_what_reading_its_rendered_text_gives_without_parsing_it_again() {
        for original in [READINESS, UPSTREAM, "", "\n"] {
            let mut graph = Graph::parse(original.as_bytes()).unwrap();
            if let Some(task) = graph.task_mut("a") {
                task.status = TaskStatus::InProgress;
            }
            if let Some(task) = graph.task_mut("d") {
                task.status = TaskStatus::Open;
                task.after = vec!["nowhere".to_string()];
            }
            let mut nowhere = Task::new("nowhere", "N");
            nowhere.status = TaskStatus::Done;
            graph.add_task(nowhere).unwrap();
            graph.add_task(Task::new("z", "Z")).unwrap();
            let changed: *const Task = graph.task("z").unwrap();

            let reread = Graph::parse(graph.render().as_bytes()).unwrap();
            // Saved from a read a clone shares (copying its index), and from one it owns.
            let shared = graph.clone().into_saved();
            let owned = graph.into_saved();
            for saved in [&shared, &owned] {
                assert!(!saved.is_changed());
                assert_eq!(read_as_text(saved), read_as_text(&reread), "from {original:?}");
                assert_eq!(saved.render(), reread.render());
                assert!(std::ptr::eq(saved.task("z").unwrap(), changed), "a changed task is kept, not parsed again");
                for now_ms in [50, 200] {
                    assert_eq!(ready_ids(saved, now_ms), ready_ids(&reread, now_ms), "from {original:?}");
                }
            }
        }
    }

    #[test]
    fn unknown_status_is_kept_verbatim() {
        let text = "{\"kind\":\"task\",\"id\":\"a\",\"status\":\"teleported\"}";
        let mut graph = Graph::parse(text.as_bytes()).unwrap();
        graph.task_mut("a").unwrap().title = "A".into();
        assert!(graph.render().contains("\"status\":\"teleported\""));
    }
}
