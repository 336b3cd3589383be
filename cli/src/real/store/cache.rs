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
use wg_core::ports::State;

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

    fn is_settling(&self, now: SystemTime) -> bool {
        [self.graph, self.registry].iter().flatten().any(|stamp| stamp.is_settling(now))
    }
}

/// A state as read, and what its files were then.
#[derive(Default)]
pub struct StateCache {
    kept: Option<(FilesStamp, State)>,
}

impl StateCache {
    /// The kept state if the files are still as `now_stamp` says they were; the cache is empty
    /// afterwards (the transaction owns the state now).
    pub fn take_if_current(&mut self, now_stamp: &FilesStamp) -> Option<State> {
        self.kept.take().filter(|(stamp, _)| stamp == now_stamp).map(|(_, state)| state)
    }

    /// Keeps `state`, read when the files were as `stamp` says, unless their last change is too
    /// recent to trust the stamp.
    pub fn keep(&mut self, stamp: FilesStamp, state: State) {
        if !stamp.is_settling(SystemTime::now()) {
            self.kept = Some((stamp, state));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wg_core::graph::Graph;
    use wg_core::registry::Registry;

    fn state() -> State {
        State { graph: Graph::parse(b"").unwrap(), registry: Registry::empty() }
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
        cache.keep(stamp, state());
        assert!(cache.take_if_current(&FilesStamp::of(&graph, &registry).unwrap()).is_some(), "nothing changed");
        cache.keep(stamp, state());
        fs::write(&registry, "{}").unwrap();
        assert!(cache.take_if_current(&FilesStamp::of(&graph, &registry).unwrap()).is_none(), "a registry appeared");

        let stamp = FilesStamp::of(&graph, &registry).unwrap();
        cache.keep(stamp, state());
        assert!(cache.take_if_current(&stamp).is_none(), "just written: not trusted yet");
    }

    #[test]
    fn a_same_size_rewrite_in_place_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let (graph, registry) = (dir.path().join("graph.jsonl"), dir.path().join("registry.json"));
        fs::write(&graph, "{\"a\":1}\n").unwrap();
        std::thread::sleep(SETTLE);
        let mut cache = StateCache::default();
        cache.keep(FilesStamp::of(&graph, &registry).unwrap(), state());
        fs::write(&graph, "{\"a\":2}\n").unwrap();
        backdate(&graph);
        assert!(cache.take_if_current(&FilesStamp::of(&graph, &registry).unwrap()).is_none(), "the change time moved");
    }
}
