//! The file store: `.wg/graph.jsonl` and `.wg/service/registry.json`, under workgraph's locks.
//!
//! One transaction = lock `graph.lock`, then `service/.registry.lock` (always in that order, as
//! upstream, so the two tools can run side by side), complete any commit a crashed writer left
//! ([`journal::recover`]), remove stale temp files, read and parse both files (the service's
//! store reuses the state it read last while neither file changed: [`cache`]), run the change,
//! commit what changed as one ([`journal::commit_plan`]: one file by temp, fsync, rename, fsync of
//! the folder; both through a commit record), unlock. A file that does not parse aborts the
//! transaction before anything is written.

mod cache;
pub mod journal;

use cache::{FilesStamp, StateCache};
use journal::{Content, FileWrite, KnownFile};
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
    /// For a store that lives long (the service's): the state read last, reused while the files
    /// stay as they were.
    cache: Option<Mutex<StateCache>>,
}

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
        let mut cache = self.cache.as_ref().map(|cache| cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        // Taken before reading: a change after it shows at the next transaction's comparison.
        let stamp = match cache {
            Some(_) => Some(
                FilesStamp::of(&self.paths.graph(), &self.paths.registry())
                    .map_err(|e| io_error("look at the files of", &self.paths.dir, e))?,
            ),
            None => None,
        };
        let (graph, registry) = match cache.as_mut().zip(stamp.as_ref()) {
            Some((cache, stamp)) => cache.take_current(stamp),
            None => (None, None),
        };
        let graph = match graph {
            Some(graph) => graph,
            None => read_graph(&self.paths)?,
        };
        let registry = match registry {
            Some(registry) => registry,
            None => read_registry(&self.paths)?,
        };
        let mut state = State { graph, registry };
        let result = change(&mut state);
        state.assert_changes_agree();
        commit(&self.paths, &state)?;
        if state.is_changed() && self.wake_service {
            poke(&self.paths.wake_socket());
        }
        if let Some((cache, stamp)) = cache.as_mut().zip(stamp) {
            // A file our commit replaced is read again next time; the other one stays as it was.
            let State { graph, registry } = state;
            cache.keep(stamp, (!graph.is_changed()).then_some(graph), (!registry.is_changed()).then_some(registry));
        }
        Ok(result)
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
    Ok(State { graph: read_graph(paths)?, registry: read_registry(paths)? })
}

fn read_graph(paths: &WgPaths) -> Result<Graph, StoreError> {
    let graph_bytes = fs::read(paths.graph()).map_err(|e| io_error("read", &paths.graph(), e))?;
    Graph::from_bytes(graph_bytes).map_err(|error| error.in_file(paths.graph().display().to_string()))
}

fn read_registry(paths: &WgPaths) -> Result<Registry, StoreError> {
    match fs::read(paths.registry()) {
        Ok(bytes) => Registry::parse(&bytes).map_err(|error| error.in_file(paths.registry().display().to_string())),
        Err(error) if error.kind() == ErrorKind::NotFound => Ok(Registry::empty()),
        Err(error) => Err(io_error("read", &paths.registry(), error)),
    }
}

/// Writes the files `state` changed, as one commit. The graph is streamed into its temp file
/// rather than built in memory: it can be tens of megabytes.
fn commit(paths: &WgPaths, state: &State) -> Result<(), StoreError> {
    let render_graph = |out: &mut dyn std::io::Write| state.graph.render_to(out);
    // The record makes the two renames one commit whatever their order. The order only decides
    // what a reader that takes no lock may glimpse between them: registry first shows a new agent
    // a moment before its task turns in-progress, never a task given to an agent not listed yet.
    let mut writes = Vec::with_capacity(2);
    if state.registry.is_changed() {
        let bytes = Cow::Owned(state.registry.render().into_bytes());
        writes.push(FileWrite { file: KnownFile::Registry, content: Content::Bytes(bytes) });
    }
    if state.graph.is_changed() {
        writes.push(FileWrite { file: KnownFile::Graph, content: Content::Streamed(&render_graph) });
    }
    match journal::commit_plan(paths, writes)? {
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
