//! The state a long-running store read last, reused while neither file changed.
//!
//! The service sweeps every poll interval and after every wake-up; most sweeps find nothing to
//! do. Re-reading and re-checking a 27 MB graph each time cost half a core while nothing
//! happened. A transaction (both locks held) instead compares what the files are now (device,
//! inode, size, modification and change times) with what they were when the cached state was
//! read, and reads again only when something differs. Our own commits rename a new file into
//! place (a new inode); a writer that rewrites a file in place changes its size or times.
//!
//! One gap remains, the one git calls "racily clean": a file rewritten in place with the same
//! size within the file system's timestamp granularity keeps all five. So a state read less than
//! [`SETTLE`] after its file last changed is not kept: by the next read the times have moved on.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime};
use wg_core::graph::Graph;
use wg_core::registry::Registry;

/// How long after a file's last change a read of it is trusted to stay current while the stamp
/// does not change: far above any file system's timestamp granularity.
const SETTLE: Duration = Duration::from_secs(1);

/// What a file is, as far as telling a change goes; `None` for a missing file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamp {
    device: u64,
    inode: u64,
    size: u64,
    modified_ns: i128,
    changed_ns: i128,
}

impl FileStamp {
    fn of(path: &Path) -> std::io::Result<Option<FileStamp>> {
        let meta = match fs::metadata(path) {
            Ok(meta) => meta,
            Err(error) if error.kind() == ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        };
        let ns = |seconds: i64, nanos: i64| i128::from(seconds) * 1_000_000_000 + i128::from(nanos);
        Ok(Some(FileStamp {
            device: meta.dev(),
            inode: meta.ino(),
            size: meta.size(),
            modified_ns: ns(meta.mtime(), meta.mtime_nsec()),
            changed_ns: ns(meta.ctime(), meta.ctime_nsec()),
        }))
    }

    /// Whether the file changed so recently that a same-size rewrite could still keep this stamp.
    fn is_settling(&self, now: SystemTime) -> bool {
        let now_ns = now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |since| since.as_nanos() as i128);
        now_ns - self.modified_ns.max(self.changed_ns) < SETTLE.as_nanos() as i128
    }
}

/// The stamps of both files of a state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FilesStamp {
    graph: Option<FileStamp>,
    registry: Option<FileStamp>,
}

impl FilesStamp {
    /// Call it before reading the files: a change after it then shows at the next comparison.
    pub fn of(graph: &Path, registry: &Path) -> std::io::Result<FilesStamp> {
        Ok(FilesStamp { graph: FileStamp::of(graph)?, registry: FileStamp::of(registry)? })
    }
}

/// The graph and registry as read, each with what its file was then. Each is kept on its own: a
/// commit that replaced only the registry (recording a pid, a heartbeat) leaves the graph as read.
#[derive(Default)]
pub struct StateCache {
    graph: Option<(Option<FileStamp>, Graph)>,
    registry: Option<(Option<FileStamp>, Registry)>,
}

impl StateCache {
    /// The kept graph and registry whose files are still as `now` says they were; the cache is
    /// empty afterwards (the transaction owns them now).
    pub fn take_current(&mut self, now: &FilesStamp) -> (Option<Graph>, Option<Registry>) {
        let graph = self.graph.take().filter(|(stamp, _)| *stamp == now.graph).map(|(_, graph)| graph);
        let registry = self.registry.take().filter(|(stamp, _)| *stamp == now.registry).map(|(_, registry)| registry);
        (graph, registry)
    }

    /// Keeps what was read when the files were as `stamp` says (`None`: not to be kept, the
    /// transaction replaced that file), unless a file changed too recently to trust its stamp.
    pub fn keep(&mut self, stamp: FilesStamp, graph: Option<Graph>, registry: Option<Registry>) {
        let now = SystemTime::now();
        let trusted = |file: Option<FileStamp>| !file.is_some_and(|file| file.is_settling(now));
        self.graph = graph.filter(|_| trusted(stamp.graph)).map(|graph| (stamp.graph, graph));
        self.registry = registry.filter(|_| trusted(stamp.registry)).map(|registry| (stamp.registry, registry));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a_graph() -> Option<Graph> {
        Some(Graph::parse(b"").unwrap())
    }

    fn a_registry() -> Option<Registry> {
        Some(Registry::empty())
    }

    /// Whether the cache gives back (graph, registry) for the files as they are now.
    fn current(cache: &mut StateCache, graph: &Path, registry: &Path) -> (bool, bool) {
        let (graph, registry) = cache.take_current(&FilesStamp::of(graph, registry).unwrap());
        (graph.is_some(), registry.is_some())
    }

    fn backdate(path: &Path) {
        let file = fs::File::options().write(true).open(path).unwrap();
        file.set_modified(SystemTime::now() - Duration::from_secs(10)).unwrap();
    }

    #[test]
    fn a_kept_state_is_reused_only_while_neither_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let (graph, registry) = (dir.path().join("graph.jsonl"), dir.path().join("registry.json"));
        fs::write(&graph, "{}\n").unwrap();
        backdate(&graph);
        let mut cache = StateCache::default();
        // ctime moves with every write and cannot be set back: wait it out.
        std::thread::sleep(SETTLE);
        let stamp = FilesStamp::of(&graph, &registry).unwrap();
        cache.keep(stamp, a_graph(), a_registry());
        assert_eq!(current(&mut cache, &graph, &registry), (true, true), "nothing changed");
        assert_eq!(current(&mut cache, &graph, &registry), (false, false), "taken: the transaction owns them");
        cache.keep(stamp, a_graph(), a_registry());
        fs::write(&registry, "{}").unwrap();
        assert_eq!(current(&mut cache, &graph, &registry), (true, false), "a registry appeared; the graph is kept");

        let stamp = FilesStamp::of(&graph, &registry).unwrap();
        cache.keep(stamp, a_graph(), a_registry());
        assert_eq!(current(&mut cache, &graph, &registry), (true, false), "the registry was just written");
        cache.keep(stamp, None, a_registry());
        assert_eq!(current(&mut cache, &graph, &registry), (false, false), "a graph the transaction replaced");
    }

    #[test]
    fn a_same_size_rewrite_in_place_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let (graph, registry) = (dir.path().join("graph.jsonl"), dir.path().join("registry.json"));
        fs::write(&graph, "{\"a\":1}\n").unwrap();
        std::thread::sleep(SETTLE);
        let mut cache = StateCache::default();
        cache.keep(FilesStamp::of(&graph, &registry).unwrap(), a_graph(), a_registry());
        fs::write(&graph, "{\"a\":2}\n").unwrap();
        backdate(&graph);
        assert!(!current(&mut cache, &graph, &registry).0, "the change time moved");
    }
}
