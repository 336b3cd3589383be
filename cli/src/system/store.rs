//! The file store: `.wg/graph.jsonl` and `.wg/service/registry.json`, under workgraph's locks.
//!
//! One transaction = lock `graph.lock`, then `service/.registry.lock` (always in that order, as
//! upstream, so the two tools can run side by side), complete any commit a crashed writer left
//! ([`journal::recover`]), remove stale temp files, read and parse both files (the service's
//! store reuses the state it read or committed last while the file still holds it: [`cache`]),
//! run the change, commit what changed as one ([`journal::commit_plan`]: one file by temp, fsync,
//! rename, fsync of the folder; both through a commit record), unlock. A file that does not parse
//! aborts the transaction before anything is written.

mod cache;
pub mod journal;

use cache::{Look, Slot};
use journal::{Content, FileWrite, FingerprintMemo, KnownFile, Replaced};
use nix::fcntl::{Flock, FlockArg};
use std::borrow::Cow;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use wg_core::graph::Graph;
use wg_core::ports::{FileError, State, Store, StoreError};
use wg_core::registry::Registry;

/// The paths of one `.wg/` folder, named once.
#[derive(Clone, Debug)]
pub struct WgPaths {
    pub dir: PathBuf,
}

impl WgPaths {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        WgPaths { dir: dir.into() }
    }
    pub fn graph(&self) -> PathBuf {
        self.dir.join("graph.jsonl")
    }
    pub fn graph_lock(&self) -> PathBuf {
        self.dir.join("graph.lock")
    }
    pub fn service_dir(&self) -> PathBuf {
        self.dir.join("service")
    }
    pub fn registry(&self) -> PathBuf {
        self.service_dir().join("registry.json")
    }
    pub fn registry_lock(&self) -> PathBuf {
        self.service_dir().join(".registry.lock")
    }
    pub fn config(&self) -> PathBuf {
        self.dir.join("config.toml")
    }
    /// The service listens here; any commit pokes it so the dispatcher need not wait for a tick.
    pub fn wake_socket(&self) -> PathBuf {
        self.service_dir().join("wg-recover-wake.sock")
    }
    pub fn service_pid_file(&self) -> PathBuf {
        self.service_dir().join("wg-recover-service.json")
    }
    pub fn service_log(&self) -> PathBuf {
        self.service_dir().join("wg-recover-service.log")
    }
    /// Present only while a commit of both files is under way, or after a writer crashed in one
    /// (see [`journal`]).
    pub fn commit_record(&self) -> PathBuf {
        self.dir.join("wg-recover-commit.json")
    }
}

pub struct FileStore {
    paths: WgPaths,
    /// Whether a commit pokes the running service (everyone but the service itself).
    wake_service: bool,
    lock_timeout: Duration,
    /// For a store that lives long (the service's): the state read or committed last, reused
    /// while the files still hold it.
    cache: Option<Mutex<StateCache>>,
}

/// The registry with what its file held when read or written, which a commit fingerprints and
/// the cache compares.
struct RegistryRead {
    registry: Registry,
    file: Held,
}

impl cache::Content for RegistryRead {
    fn content(&self) -> Option<&[u8]> {
        self.file.bytes.as_deref()
    }
}

/// A file's bytes (`None`: no file) with the memo of their fingerprint, kept together so that a
/// memo always belongs to its bytes.
struct Held {
    bytes: Option<Vec<u8>>,
    fingerprint: FingerprintMemo,
}

impl Held {
    fn new(bytes: Option<Vec<u8>>) -> Held {
        Held { bytes, fingerprint: FingerprintMemo::new() }
    }

    /// What a commit replacing this file replaces.
    fn replaced(&self) -> Replaced<'_> {
        match self.bytes.as_deref() {
            Some(bytes) => Replaced::Bytes { bytes, fingerprint: &self.fingerprint },
            None => Replaced::Nothing,
        }
    }
}

/// A file's state, and the memo of its bytes' fingerprint: the content one commit writes is the
/// content the next one replaces, and hashing it once is enough.
struct Fingerprinted<T> {
    state: T,
    fingerprint: FingerprintMemo,
}

impl<T: cache::Content> Fingerprinted<T> {
    fn new(state: T) -> Self {
        Fingerprinted { state, fingerprint: FingerprintMemo::new() }
    }

    /// What a commit replacing this file replaces.
    fn replaced(&self) -> Replaced<'_> {
        match self.state.content() {
            Some(bytes) => Replaced::Bytes { bytes, fingerprint: &self.fingerprint },
            None => Replaced::Nothing,
        }
    }
}

impl<T: cache::Content> cache::Content for Fingerprinted<T> {
    fn content(&self) -> Option<&[u8]> {
        self.state.content()
    }
}

/// The service store's last state, a file at a time: a commit that replaced only the registry
/// (recording a pid) leaves the graph as it was.
#[derive(Default)]
struct StateCache {
    graph: Slot<Fingerprinted<Graph>>,
    registry: Slot<RegistryRead>,
}

/// The largest graph the service keeps as its commit wrote it. Keeping it means holding the old
/// and the new text at once while saving; above this size the service streams the graph as a
/// command does and reads it back in its next transaction, so its memory stays within twice the
/// file's size (benches/README.md, "Service throughput").
const KEEP_WRITTEN_GRAPH_MAX: usize = 8 << 20;

/// How long a command waits for a lock before saying who holds it.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(30);

impl FileStore {
    /// `WG_LOCK_TIMEOUT_MS` overrides [`LOCK_TIMEOUT`] (tests, and people who would rather fail fast).
    pub fn new(paths: WgPaths, wake_service: bool) -> Self {
        let lock_timeout = std::env::var("WG_LOCK_TIMEOUT_MS")
            .ok()
            .and_then(|text| text.parse().ok())
            .map(Duration::from_millis)
            .unwrap_or(LOCK_TIMEOUT);
        FileStore { paths, wake_service, lock_timeout, cache: None }
    }

    /// The same store, keeping the state it read last for the next transaction while neither
    /// file changes (see [`cache`]): for the service, whose sweeps mostly find nothing new.
    pub fn caching(self) -> Self {
        FileStore { cache: Some(Mutex::new(StateCache::default())), ..self }
    }

    /// Reads both files without locking, for display only. Each file is whole, but the two may
    /// be of different commits: between a commit's two renames, or after a crash there until the
    /// next transaction completes it.
    pub fn read(&self) -> Result<State, StoreError> {
        read_state(&self.paths)
    }

    fn transact_blocking<R>(&self, change: impl FnOnce(&mut State) -> R) -> Result<R, StoreError> {
        if !self.paths.graph().is_file() {
            return Err(StoreError::NotAWorkgraph { graph: self.paths.graph(), dir: self.paths.dir.clone() });
        }
        let _graph_lock = lock(&self.paths.graph_lock(), self.lock_timeout)?;
        fs::create_dir_all(self.paths.service_dir()).map_err(|e| io_error("create", &self.paths.service_dir(), e))?;
        let _registry_lock = lock(&self.paths.registry_lock(), self.lock_timeout)?;
        // Recovery first: the temp files a crashed commit's record names are the only copy of its
        // new content until they are renamed.
        journal::recover(&self.paths)?;
        journal::remove_stale_temporaries(&self.paths);
        match &self.cache {
            Some(cache) => {
                let mut cache = cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                self.transact_keeping(&mut cache, change)
            }
            None => self.transact_once(change),
        }
    }

    /// A transaction that reads both files and keeps nothing: a command's.
    fn transact_once<R>(&self, change: impl FnOnce(&mut State) -> R) -> Result<R, StoreError> {
        let graph = Fingerprinted::new(read_graph(&self.paths)?);
        let RegistryRead { registry, file: registry_read } = read_registry(&self.paths)?;
        let mut state = State { graph: graph.state.clone(), registry };
        let result = change(&mut state);
        state.assert_changes_agree();
        let new_registry = state.registry.is_changed().then(|| Held::new(Some(state.registry.render().into_bytes())));
        let registry_write = new_registry.as_ref().map(|new| registry_write(&registry_read, new));
        // A command exits next: nothing is kept, and the graph is never built in memory.
        commit_streaming_graph(&self.paths, registry_write, &graph, &state.graph)?;
        self.poke_if(state.is_changed());
        Ok(result)
    }

    /// A transaction that starts from what `cache` kept, if the files still hold it, and keeps
    /// what it read or wrote: the service's.
    fn transact_keeping<R>(
        &self,
        cache: &mut StateCache,
        change: impl FnOnce(&mut State) -> R,
    ) -> Result<R, StoreError> {
        let (graph_look, graph, registry_look, registry) = self.current_or_read(cache)?;
        // The registry moves into the transaction: a copy kept here would share its map, and the
        // first change would copy the whole map (every agent that ever ran) rather than one entry.
        let RegistryRead { registry, file: registry_read } = registry;
        let mut state = State { graph: graph.state.clone(), registry };
        let result = change(&mut state);
        state.assert_changes_agree();
        let changed = (state.graph.is_changed(), state.registry.is_changed());
        // What the files hold after the commit, kept for the next transaction: the graph and
        // registry as written, not read back.
        let State { graph: new_graph, registry: new_registry } = state;
        let saved_registry = changed.1.then(|| {
            let file = Held::new(Some(new_registry.render().into_bytes()));
            RegistryRead { registry: new_registry.clone().into_saved(), file }
        });
        let registry_write = saved_registry.as_ref().map(|saved| registry_write(&registry_read, &saved.file));
        let kept_graph = if changed.0 && graph.state.text_as_read().len() > KEEP_WRITTEN_GRAPH_MAX {
            // Saving a graph keeps its old and new text in memory together for a moment; for a
            // large one that is more than the file's size twice over. Stream it as a command
            // does, and let the next transaction read it back.
            commit_streaming_graph(&self.paths, registry_write, &graph, &new_graph)?;
            None
        } else {
            // The graph the file holds after the commit, and what the commit replaces.
            let (graph, graph_replaced) = if changed.0 {
                // Fingerprinted now (unless an earlier commit did) so that the read can go: the
                // save then takes over its index instead of copying it, and memory stays near
                // the file's size.
                let replaced = graph.replaced().fingerprinted();
                drop(graph);
                (Fingerprinted::new(new_graph.into_saved()), replaced)
            } else {
                (graph, Replaced::Nothing)
            };
            let graph_write = changed.0.then(|| FileWrite {
                file: KnownFile::Graph,
                replaces: graph_replaced,
                content: Content::Bytes(Cow::Borrowed(graph.state.text_as_read().as_bytes())),
                content_fingerprint: &graph.fingerprint,
            });
            commit(&self.paths, registry_write, graph_write)?;
            Some(graph)
        };
        // A file we cannot look at now is not kept: the commit happened, and the next
        // transaction reads the file (and says what is wrong with it, if it still cannot).
        match kept_graph {
            Some(graph) if !changed.0 => cache.graph.keep(&graph_look, graph),
            Some(graph) => {
                if let Ok(look_after) = Look::at(&self.paths.graph()) {
                    cache.graph.keep(&look_after, graph);
                }
            }
            None => {}
        }
        match saved_registry {
            Some(saved) => {
                if let Ok(look_after) = Look::at(&self.paths.registry()) {
                    cache.registry.keep(&look_after, saved);
                }
            }
            None => cache.registry.keep(&registry_look, RegistryRead { registry: new_registry, file: registry_read }),
        }
        self.poke_if(changed.0 || changed.1);
        Ok(result)
    }

    /// Wakes the service after a commit, unless we are the service.
    fn poke_if(&self, committed: bool) {
        if committed && self.wake_service {
            poke(&self.paths.wake_socket());
        }
    }

    /// Both files' states, each as the cache kept it if its file still holds it, else read and
    /// parsed; each with the look at its file taken before.
    #[allow(clippy::type_complexity)]
    fn current_or_read(
        &self,
        cache: &mut StateCache,
    ) -> Result<(Look, Fingerprinted<Graph>, Look, RegistryRead), StoreError> {
        let (graph_path, registry_path) = (self.paths.graph(), self.paths.registry());
        let cannot_look = |path: &Path| {
            let path = path.to_path_buf();
            move |error| io_error("look at", &path, error)
        };
        // Each look before its read: a change after it shows at the next comparison.
        let graph_look = Look::at(&graph_path).map_err(cannot_look(&graph_path))?;
        let registry_look = Look::at(&registry_path).map_err(cannot_look(&registry_path))?;
        let graph = match cache.graph.take_current(&graph_look, &graph_path).map_err(cannot_look(&graph_path))? {
            Some(graph) => graph,
            None => Fingerprinted::new(read_graph(&self.paths)?),
        };
        let kept_registry =
            cache.registry.take_current(&registry_look, &registry_path).map_err(cannot_look(&registry_path))?;
        let registry = match kept_registry {
            Some(registry) => registry,
            None => read_registry(&self.paths)?,
        };
        Ok((graph_look, graph, registry_look, registry))
    }
}

impl Store for FileStore {
    async fn transact<R>(&self, change: impl FnOnce(&mut State) -> R) -> Result<R, StoreError> {
        self.transact_blocking(change)
    }
}

fn io_error(action: &str, path: &Path, error: std::io::Error) -> StoreError {
    FileError::new(action, path, &error).into()
}

fn read_state(paths: &WgPaths) -> Result<State, StoreError> {
    Ok(State { graph: read_graph(paths)?, registry: read_registry(paths)?.registry })
}

fn read_graph(paths: &WgPaths) -> Result<Graph, StoreError> {
    let graph_bytes = fs::read(paths.graph()).map_err(|e| io_error("read", &paths.graph(), e))?;
    Graph::from_bytes(graph_bytes).map_err(|error| error.in_file(paths.graph().display().to_string()))
}

fn read_registry(paths: &WgPaths) -> Result<RegistryRead, StoreError> {
    match fs::read(paths.registry()) {
        Ok(bytes) => match Registry::parse(&bytes) {
            Ok(registry) => Ok(RegistryRead { registry, file: Held::new(Some(bytes)) }),
            Err(error) => Err(error.in_file(paths.registry().display().to_string())),
        },
        Err(error) if error.kind() == ErrorKind::NotFound => {
            Ok(RegistryRead { registry: Registry::empty(), file: Held::new(None) })
        }
        Err(error) => Err(io_error("read", &paths.registry(), error)),
    }
}

/// The registry's `new` bytes, replacing what was `read` of it.
fn registry_write<'a>(read: &'a Held, new: &'a Held) -> FileWrite<'a> {
    let content = Content::Bytes(Cow::Borrowed(new.bytes.as_deref().expect("a new registry has bytes")));
    FileWrite { file: KnownFile::Registry, replaces: read.replaced(), content, content_fingerprint: &new.fingerprint }
}

/// Writes the changed files as one commit. The record makes the two renames one commit whatever
/// their order. The order only decides what a reader that takes no lock may glimpse between them:
/// registry first shows a new agent a moment before its task turns in-progress, never a task
/// given to an agent not listed yet.
/// Commits `registry` and `graph` if it changed since `graph_read`, the graph streamed into its
/// temp file, never built in memory. Nothing keeps the new graph, so its fingerprint's memo goes
/// with the commit.
fn commit_streaming_graph(
    paths: &WgPaths,
    registry: Option<FileWrite<'_>>,
    graph_read: &Fingerprinted<Graph>,
    graph: &Graph,
) -> Result<(), StoreError> {
    let render_graph = |out: &mut dyn std::io::Write| graph.render_to(out);
    let graph_memo = FingerprintMemo::new();
    let graph_write = graph.is_changed().then(|| FileWrite {
        file: KnownFile::Graph,
        replaces: graph_read.replaced(),
        content: Content::Streamed(&render_graph),
        content_fingerprint: &graph_memo,
    });
    commit(paths, registry, graph_write)
}

fn commit(paths: &WgPaths, registry: Option<FileWrite<'_>>, graph: Option<FileWrite<'_>>) -> Result<(), StoreError> {
    match journal::commit_plan(paths, registry.into_iter().chain(graph).collect()) {
        Some(plan) => plan.run(),
        None => Ok(()),
    }
}

/// Takes an exclusive `flock`, waiting up to `timeout`; the kernel drops it when we exit, so a
/// crashed holder never leaves a stale lock. On timeout, says which process holds it.
fn lock(path: &Path, timeout: Duration) -> Result<Flock<File>, StoreError> {
    let started = Instant::now();
    let mut pause = Duration::from_micros(250);
    loop {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| io_error("open the lock file", path, e))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => return Ok(locked),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) if started.elapsed() < timeout => {
                // Commands hold the lock for milliseconds: poll often (capped at 2 ms between tries)
                // so a waiting retry is not the slow part of a respawn.
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(2));
            }
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                return Err(StoreError::Locked {
                    path: path.to_path_buf(),
                    waited_ms: timeout.as_millis(),
                    holder: lock_holder(path),
                })
            }
            Err((_, errno)) => {
                let source = FileError {
                    action: "lock".to_string(),
                    path: path.to_path_buf(),
                    kind: std::io::Error::from(errno).kind(),
                    message: errno.to_string(),
                };
                return Err(source.into());
            }
        }
    }
}

/// Who holds the lock on `path`, from `/proc/locks` (the kernel's own record, so it is right
/// even for a holder that is not us and wrote nothing into the file).
fn lock_holder(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let inode = fs::metadata(path).ok()?.ino();
    let locks = fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (pid, device_inode) = (fields.get(4)?, fields.get(5)?);
        let lock_inode: u64 = device_inode.rsplit(':').next()?.parse().ok()?;
        (lock_inode == inode).then(|| {
            let command = fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default().replace('\0', " ");
            format!("pid {pid}: {}", command.trim())
        })
    })
}

/// Replaces `path` with `bytes` so that a crash at any moment leaves the old or the new file; for
/// files written outside a transaction (`wg init`, the service record).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    journal::single_file_plan(path, Content::Bytes(Cow::Borrowed(bytes))).run()
}

/// Wakes the service, if one listens. Best effort: without a service there is nobody to wake.
fn poke(socket: &Path) {
    if let Ok(sender) = UnixDatagram::unbound() {
        let _ = sender.set_nonblocking(true);
        let _ = sender.send_to(b"wake", socket);
    }
}

/// Reads a whole small file, for the service pid file and similar.
pub fn read_small(path: &Path) -> std::io::Result<String> {
    let mut text = String::new();
    File::open(path)?.take(1 << 20).read_to_string(&mut text)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wg_core::block_on;
    use wg_core::model::{Agent, TaskStatus};

    const GRAPH: &str = "{\"kind\":\"task\",\"id\":\"t1\",\"title\":\"T1\",\"status\":\"open\"}\n";

    /// A `.wg/` with a one-task graph and no registry, and the service's (caching) store on it.
    fn service_store() -> (tempfile::TempDir, WgPaths, FileStore) {
        let root = tempfile::tempdir().expect("a temp folder");
        let paths = WgPaths::new(root.path().join(".wg"));
        fs::create_dir_all(paths.service_dir()).expect("create .wg/service");
        fs::write(paths.graph(), GRAPH).expect("write the graph");
        let store = FileStore::new(paths.clone(), false).caching();
        (root, paths, store)
    }

    /// How many transactions reused the kept (graph, registry) instead of parsing the file.
    fn reused(store: &FileStore) -> (usize, usize) {
        let cache = store.cache.as_ref().expect("a caching store").lock().expect("not poisoned");
        (cache.graph.reused(), cache.registry.reused())
    }

    fn commit_a_change(store: &FileStore) {
        block_on(store.transact(|state| {
            state.graph.task_mut("t1").expect("t1").title = "T2".to_string();
            let id = state.registry.allocate_agent_id();
            let entry = serde_json::json!({"id": id, "pid": 0, "task_id": "t1",
                "started_at": "2026-01-01T00:00:00+00:00", "status": "done"});
            state.registry.insert(serde_json::from_value::<Agent>(entry).expect("an agent"));
        }))
        .expect("the commit runs");
    }

    fn fresh_read(paths: &WgPaths) -> State {
        FileStore::new(paths.clone(), false).read().expect("the files read")
    }

    #[test]
    fn the_next_transaction_reuses_what_our_commit_wrote_without_parsing_it() {
        let (_root, paths, store) = service_store();
        commit_a_change(&store);
        assert_eq!(reused(&store), (0, 0), "the first transaction read both files");
        // Right after the commit: the files are young, and their bytes are compared.
        let seen = block_on(store.transact(|state| state.clone())).expect("a transaction runs");
        assert_eq!(reused(&store), (1, 1), "both kept from the commit, not parsed");
        assert_eq!(seen, fresh_read(&paths), "what was kept is what the files hold");
        assert!(!seen.is_changed());
        block_on(store.transact(|state| state.clone())).expect("a transaction runs");
        assert_eq!(reused(&store), (2, 2));
    }

    #[test]
    fn the_fingerprints_kept_for_the_next_commit_are_those_of_what_the_files_hold() {
        let (_root, paths, store) = service_store();
        commit_a_change(&store);
        let cache = store.cache.as_ref().expect("a caching store").lock().expect("not poisoned");
        let graph = cache.graph.peek().expect("the graph is kept");
        let registry = cache.registry.peek().expect("the registry is kept");
        let on_disk = |path: PathBuf| Some(journal::Fingerprint::of(&fs::read(path).expect("read a file")));
        // A two-file commit's record needed both new contents' fingerprints.
        assert_eq!(graph.fingerprint.get().copied(), on_disk(paths.graph()));
        assert_eq!(registry.file.fingerprint.get().copied(), on_disk(paths.registry()));
    }

    #[test]
    fn a_large_graph_is_streamed_and_read_back_not_kept() {
        let (_root, paths, store) = service_store();
        let filler =
            |i: usize| format!("{{\"kind\":\"task\",\"id\":\"f{i}\",\"title\":\"{:0>100}\",\"status\":\"done\"}}\n", i);
        let mut text = GRAPH.to_string();
        let mut i = 0;
        while text.len() <= KEEP_WRITTEN_GRAPH_MAX {
            text.push_str(&filler(i));
            i += 1;
        }
        fs::write(paths.graph(), &text).expect("write a large graph");
        commit_a_change(&store);
        let cache = store.cache.as_ref().expect("a caching store").lock().expect("not poisoned");
        assert!(cache.graph.peek().is_none(), "the graph is not kept");
        assert!(cache.registry.peek().is_some(), "the registry is");
        drop(cache);
        let seen = block_on(store.transact(|state| state.clone())).expect("a transaction runs");
        assert_eq!(seen, fresh_read(&paths), "read back as written");
        assert_eq!(seen.graph.task("t1").expect("t1").title, "T2");
        assert_eq!(reused(&store), (0, 1), "the graph was read again, the registry reused");
    }

    #[test]
    fn a_same_size_rewrite_in_place_right_after_our_commit_is_seen() {
        let (_root, paths, store) = service_store();
        commit_a_change(&store);
        let written = fs::read_to_string(paths.graph()).expect("read the graph");
        let rewritten = written.replace("\"T2\"", "\"T3\"");
        assert_eq!((rewritten.len(), rewritten != written), (written.len(), true));
        // In place (same inode, same size), as an editor or `echo >` would, within the same second.
        fs::write(paths.graph(), &rewritten).expect("rewrite the graph in place");
        let title = block_on(store.transact(|state| state.graph.task("t1").map(|task| task.title.clone())))
            .expect("a transaction runs");
        assert_eq!(title.as_deref(), Some("T3"));
        assert_eq!(reused(&store).0, 0, "the graph was read again");
        let status = block_on(store.transact(|state| state.graph.status_of("t1").cloned())).expect("runs");
        assert_eq!(status, Some(TaskStatus::Open));
        assert_eq!(reused(&store).0, 1, "and kept again as read");
    }
}
