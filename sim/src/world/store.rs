//! The simulated `Store` port: an in-memory store with the file store's semantics. A
//! transaction holds the lock, reads a fresh copy, and commits graph and registry together; a
//! crash lands the write in flight whole or not at all (`Landing`); a commit writes each changed
//! file and reads it back, as the next reader would (S8). Parses are memoised by exact text.

use super::record::{CommitRecord, Record};
use super::{ActorId, ActorKind, Inner, Wait, World};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use wg_core::graph::Graph;
use wg_core::ports::{State, Store, StoreError};
use wg_core::registry::Registry;

/// How long a slow store write holds the lock.
pub const SLOW_WRITE_MS: u64 = 400;

/// How much of a write in flight a crash lets land. The file store commits graph and registry
/// together (a commit record the next lock holder completes), so a crash leaves the whole
/// transaction or none of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Landing {
    Nothing,
    Whole,
}

impl Landing {
    /// A choice derived from a number (a hash), for crashes that are not the scheduler's.
    pub fn from_hash(hash: u64) -> Landing {
        [Landing::Nothing, Landing::Whole][(hash % 2) as usize]
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoreFault {
    Slow,
    Fail,
}

/// The store's state: the committed files, the lock and a write in flight.
pub struct StoreState {
    /// Shared with the commit records that name it (no copy per commit).
    pub committed: Rc<State>,
    /// A copy of `committed` that a transaction left unchanged, for the next one to start from
    /// (a read-only transaction then costs no clone). `None` after each commit.
    pub scratch: Option<State>,
    /// Lines of the graph file as last written (S8: lines are never lost).
    pub graph_lines: usize,
    pub commits: u64,
    pub lock: Option<ActorId>,
    pub pending_write: Option<State>,
    /// The fault the scheduler chose for the transaction the current poll reaches, if any.
    pub poll_fault: Option<StoreFault>,
}

impl StoreState {
    pub fn new(initial: Rc<State>, graph_lines: usize) -> StoreState {
        StoreState {
            committed: initial,
            scratch: None,
            graph_lines,
            commits: 0,
            lock: None,
            pending_write: None,
            poll_fault: None,
        }
    }
}

/// Parsed files by their exact text: many runs (seeds) write the same files, and a parse is the
/// dearest part of a commit. Exact, so a hit is what parsing would give; bounded per thread.
struct ParseCache {
    graphs: HashMap<String, Graph, FastHash>,
    registries: HashMap<String, Registry, FastHash>,
}

/// FNV-1a, 8 bytes at a time: the cache's keys are our own files, no adversary, and SipHash was
/// a visible part of a commit's cost.
#[derive(Clone, Copy, Default)]
struct FastHash;

#[derive(Default)]
struct FastHasher(u64);

impl std::hash::BuildHasher for FastHash {
    type Hasher = FastHasher;

    fn build_hasher(&self) -> FastHasher {
        FastHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
            self.0 = (self.0 ^ word).wrapping_mul(0x0000_0100_0000_01B3).rotate_left(23);
        }
        for byte in chunks.remainder() {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01B3);
        }
    }

    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29)
    }
}

const PARSE_CACHE_MAX: usize = 8_192;

thread_local! {
    static PARSE_CACHE: RefCell<ParseCache> =
        RefCell::new(ParseCache { graphs: HashMap::default(), registries: HashMap::default() });
}

/// One memo table of the cache: text as written → what it parses to. Bounded by
/// [`PARSE_CACHE_MAX`]; cleared whole when full.
fn memoised<T: Clone, E>(
    text: &str,
    table: fn(&mut ParseCache) -> &mut HashMap<String, T, FastHash>,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, E> {
    PARSE_CACHE.with(|cache| {
        if let Some(parsed) = table(&mut cache.borrow_mut()).get(text) {
            return Ok(parsed.clone());
        }
        let parsed = parse(text)?;
        let mut cache = cache.borrow_mut();
        let entries = table(&mut cache);
        if entries.len() >= PARSE_CACHE_MAX {
            entries.clear();
        }
        entries.insert(text.to_string(), parsed.clone());
        Ok(parsed)
    })
}

/// `Graph::parse`, memoised (S8's re-read of every write).
pub fn parse_graph(text: &str) -> Result<Graph, wg_core::graph::GraphParseError> {
    memoised(text, |cache| &mut cache.graphs, |text| Graph::parse(text.as_bytes()))
}

/// `Registry::parse`, memoised.
pub fn parse_registry(text: &str) -> Result<Registry, wg_core::registry::RegistryParseError> {
    memoised(text, |cache| &mut cache.registries, |text| Registry::parse(text.as_bytes()))
}

/// What the next reader of the registry file sees after `registry` is written.
///
/// The registry is serde's own rendering of a plain value, so reading it back gives the value
/// (`wg_core::registry` tests that): a release build takes the value as saved, and skips the
/// pretty-printing and parsing that were a third of a commit's cost. A debug build (every `cargo
/// test`) still writes the text and reads it back, and reports any difference as S8.
fn saved_registry(registry: Registry) -> Result<Registry, String> {
    let saved = registry.into_saved();
    if cfg!(debug_assertions) {
        let read_back = parse_registry(&saved.render()).map_err(|error| format!("service/registry.json: {error}"))?;
        if read_back != saved {
            return Err("service/registry.json: reading it back does not give what was written".into());
        }
    }
    Ok(saved)
}

/// The files as the next reader sees them after `state` (already changed) is written: a file
/// the transaction did not change is the committed one, already read back when it was written,
/// so only a changed file is written and read again. Also returns the graph file's new line
/// count, when it was written. Fails with what did not read back (which breaks S8).
fn write_and_read_back(state: State) -> Result<(State, Option<usize>), String> {
    let State { graph, registry } = state;
    let mut graph_lines = None;
    let graph = if graph.is_changed() {
        let text = graph.render();
        let fresh = parse_graph(&text).map_err(|e| format!("graph.jsonl: {e}"))?;
        graph_lines = Some(text.lines().count());
        fresh
    } else {
        graph
    };
    let registry = if registry.is_changed() { saved_registry(registry)? } else { registry };
    Ok((State { graph, registry }, graph_lines))
}

/// A one-line summary of what a commit changed, for timelines.
pub fn describe_diff(before: &State, after: &State) -> String {
    let mut parts = Vec::new();
    for task in after.graph.tasks() {
        let Some(old) = before.graph.task(&task.id) else {
            parts.push(format!("+task {}", task.id));
            continue;
        };
        let mut changes = Vec::new();
        if old.status != task.status {
            changes.push(format!("{}->{}", old.status, task.status));
        }
        if old.assigned != task.assigned {
            changes.push(format!("assigned {:?}->{:?}", old.assigned, task.assigned));
        }
        if old.retry_count != task.retry_count {
            changes.push(format!("retry_count {}->{}", old.retry_count, task.retry_count));
        }
        if let Some(entry) = task.log.get(old.log.len()) {
            changes.push(format!("log {:?}", entry.message));
        }
        if !changes.is_empty() {
            parts.push(format!("{}: {}", task.id, changes.join(", ")));
        }
    }
    for agent in after.registry.agents() {
        match before.registry.agent(&agent.id) {
            None => parts.push(format!("+{} ({})", agent.id, agent.status)),
            Some(old) if old.status != agent.status || old.pid != agent.pid => parts
                .push(format!("{}: {} pid {} -> {} pid {}", agent.id, old.status, old.pid, agent.status, agent.pid)),
            Some(old) if old.stop_requested != agent.stop_requested => {
                parts.push(format!("{}: stop requested {:?}", agent.id, agent.stop_requested.as_ref().map(|s| &s.by)))
            }
            Some(_) => {}
        }
    }
    if parts.is_empty() {
        "(no visible change)".into()
    } else {
        parts.join("; ")
    }
}

impl World {
    /// Commits `state` (already changed) by `actor`: the write and its re-read, recorded for
    /// the checks ([`CommitRecord`]).
    pub fn commit(&self, inner: &mut Inner, actor: ActorId, state: State) {
        let touched_tasks = state.graph.changed_tasks().map(|(_, now)| now.id.clone()).collect();
        let (fresh, graph_lines) = match write_and_read_back(state) {
            Ok(written) => written,
            Err(what) => {
                inner.records.push(Record::Unreadable(what));
                return;
            }
        };
        assert!(!fresh.is_changed(), "a fresh read is unchanged");
        let store = &mut inner.store;
        if let Some(lines) = graph_lines {
            store.graph_lines = lines;
        }
        if inner.recording {
            inner.notes.push(format!("commit: {}", describe_diff(&store.committed, &fresh)));
        }
        let before = std::mem::replace(&mut store.committed, Rc::new(fresh));
        let after = Rc::clone(&store.committed);
        let kind = inner.actors[actor].kind;
        let graph_lines = store.graph_lines;
        inner.records.push(Record::Commit(CommitRecord { actor, kind, before, after, touched_tasks, graph_lines }));
        store.scratch = None;
        inner.version += 1;
        store.commits += 1;
    }

    /// Drops what a dead actor held: the lock, and a write in flight lands as `landing` says;
    /// the gates of processes it spawned and did not release close (pipe EOF).
    pub fn release_actor(&self, inner: &mut Inner, actor: ActorId, landing: Landing) {
        self.close_gates_of(inner, actor);
        if inner.store.lock == Some(actor) {
            inner.store.lock = None;
            if let Some(state) = inner.store.pending_write.take() {
                match landing {
                    Landing::Nothing => {}
                    Landing::Whole => self.commit(inner, actor, state),
                }
            }
        }
    }
}

impl Store for World {
    async fn transact<R>(&self, change: impl FnOnce(&mut State) -> R) -> Result<R, StoreError> {
        self.suspend(Wait::Lock, "transact").await;
        let (mut state, fault, me) = {
            let mut inner = self.inner.borrow_mut();
            let store = &mut inner.store;
            assert!(store.lock.is_none(), "polled only when the lock is free");
            let state = store.scratch.take().unwrap_or_else(|| State::clone(&store.committed));
            (state, store.poll_fault.take(), inner.current)
        };
        assert!(!state.is_changed(), "each transaction starts from a fresh, unchanged read");
        debug_assert!(state == *self.inner.borrow().store.committed, "the scratch copy is the committed state");
        if fault == Some(StoreFault::Fail) {
            let mut inner = self.inner.borrow_mut();
            inner.timer_waits.starting_timeout |= inner.actors[me].kind == ActorKind::Service;
            inner.store.scratch = Some(state);
            drop(inner);
            self.note(|| "store: write failed (fault)".into());
            return Err(StoreError::Io("simulated store failure: nothing was written".into()));
        }
        let result = change(&mut state);
        state.assert_changes_agree();
        if !state.is_changed() {
            // Nothing changed (every change goes through a method that marks it): still a
            // faithful copy of the committed state.
            self.inner.borrow_mut().store.scratch = Some(state);
            return Ok(result);
        }
        if fault == Some(StoreFault::Slow) {
            {
                let mut inner = self.inner.borrow_mut();
                inner.store.lock = Some(me);
                inner.store.pending_write = Some(state);
            }
            let until = self.now_ms() + SLOW_WRITE_MS as i64;
            self.suspend(Wait::Until(until), "write (slow)").await;
            let mut inner = self.inner.borrow_mut();
            state = inner.store.pending_write.take().expect("the writer holds its pending write");
            inner.store.lock = None;
        }
        let mut inner = self.inner.borrow_mut();
        self.commit(&mut inner, me, state);
        Ok(result)
    }
}
