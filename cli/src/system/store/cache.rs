//! What a long-running store read or committed last, reused while its file still holds it.
//!
//! The service sweeps every poll interval and after every wake-up, and commits at every spawn
//! and every death. Reading and checking both files again in each transaction cost most of its
//! CPU. Instead, each file's state is kept with what the file was then (device, inode, size,
//! modification and change times: its stamp) and what it held (the bytes read, or the bytes our
//! commit wrote), and the next transaction (both locks held) compares.
//!
//! - A different stamp: the file changed. Read and parse it again.
//! - The same stamp, seen when the file had not changed for [`SETTLE`]: trusted alone. Any
//!   later write moves the times past the stamp's, by more than any timestamp granularity.
//! - The same stamp on a file changed less than [`SETTLE`] ago (every file a busy service just
//!   committed): a same-size rewrite in place within the timestamp granularity would keep the
//!   stamp (what git calls "racily clean"), so the stamp alone proves nothing. The file's bytes
//!   are read and compared with the bytes kept: equal, the state is reused without parsing;
//!   different, the file is read and parsed as any changed file. Reading is cheap; parsing and
//!   checking every line is not.
//!
//! So a change by another writer (upstream's `wg`, a person's editor) is always seen by the next
//! transaction, and our own commit is never parsed back.

use std::fs;
use std::io::{BufRead, ErrorKind};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// How long after a file's last change its stamp alone is trusted to tell the next change: far
/// above any file system's timestamp granularity.
const SETTLE: Duration = Duration::from_secs(1);

/// What a file is, as far as telling a change goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamp {
    device: u64,
    inode: u64,
    size: u64,
    modified_ns: i128,
    changed_ns: i128,
}

/// A file's stamp (`None`: no such file) and when it was taken.
#[derive(Clone, Copy, Debug)]
pub struct Look {
    stamp: Option<FileStamp>,
    at: SystemTime,
}

impl Look {
    /// Take it before reading the file: a change after it then shows at the next comparison.
    pub fn at(path: &Path) -> std::io::Result<Look> {
        let at = SystemTime::now();
        let meta = match fs::metadata(path) {
            Ok(meta) => meta,
            Err(error) if error.kind() == ErrorKind::NotFound => return Ok(Look { stamp: None, at }),
            Err(error) => return Err(error),
        };
        let ns = |seconds: i64, nanos: i64| i128::from(seconds) * 1_000_000_000 + i128::from(nanos);
        let stamp = FileStamp {
            device: meta.dev(),
            inode: meta.ino(),
            size: meta.size(),
            modified_ns: ns(meta.mtime(), meta.mtime_nsec()),
            changed_ns: ns(meta.ctime(), meta.ctime_nsec()),
        };
        Ok(Look { stamp: Some(stamp), at })
    }

    /// Whether the file had not changed for [`SETTLE`] when looked at: then a later write, even
    /// a same-size one in place, changes its stamp.
    fn settled(&self) -> bool {
        self.stamp.is_none_or(|stamp| {
            let at_ns = self.at.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |since| since.as_nanos() as i128);
            at_ns - stamp.modified_ns.max(stamp.changed_ns) >= SETTLE.as_nanos() as i128
        })
    }
}

/// A state that knows the bytes of the file it is the state of.
pub trait Content {
    /// The file's bytes; `None`: there was no file.
    fn content(&self) -> Option<&[u8]>;
}

impl Content for wg_core::graph::Graph {
    fn content(&self) -> Option<&[u8]> {
        Some(self.text_as_read().as_bytes())
    }
}

/// One file's kept state.
struct Kept<T> {
    stamp: Option<FileStamp>,
    /// The stamp was seen settled with the file holding `state`'s bytes: it alone tells a change.
    stamp_trusted: bool,
    state: T,
}

/// The state of one file as read or committed last, if any.
pub struct Slot<T> {
    kept: Option<Kept<T>>,
    /// How many times a kept state was given back: a test hook, to tell reuse from a parse.
    reused: usize,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Slot { kept: None, reused: 0 }
    }
}

impl<T: Content> Slot<T> {
    /// The kept state, if the file (as `look` saw it, and by its bytes while its stamp is not
    /// trusted) still holds it; the slot is empty afterwards (the transaction owns the state now).
    pub fn take_current(&mut self, look: &Look, path: &Path) -> std::io::Result<Option<T>> {
        let Some(kept) = self.kept.take() else { return Ok(None) };
        if kept.stamp != look.stamp {
            return Ok(None);
        }
        if !kept.stamp_trusted && !holds(path, kept.state.content())? {
            return Ok(None);
        }
        self.reused += 1;
        Ok(Some(kept.state))
    }

    /// Keeps `state`, whose bytes the file held when `look` was taken (before reading it, or
    /// after our commit wrote them).
    pub fn keep(&mut self, look: &Look, state: T) {
        self.kept = Some(Kept { stamp: look.stamp, stamp_trusted: look.settled(), state });
    }

    #[cfg(test)]
    pub fn reused(&self) -> usize {
        self.reused
    }

    /// The kept state, left in place.
    #[cfg(test)]
    pub fn peek(&self) -> Option<&T> {
        self.kept.as_ref().map(|kept| &kept.state)
    }
}

/// Whether the file at `path` holds exactly `content` (`None`: there is no file). Compared a
/// block at a time, so a large file is never in memory twice.
fn holds(path: &Path, content: Option<&[u8]>) -> std::io::Result<bool> {
    let file = match fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok(content.is_none()),
        Err(error) => return Err(error),
    };
    let Some(mut expected) = content else { return Ok(false) };
    let mut file = std::io::BufReader::with_capacity(1 << 16, file);
    loop {
        let block = file.fill_buf()?;
        if block.is_empty() {
            return Ok(expected.is_empty());
        }
        let Some(head) = expected.get(..block.len()) else { return Ok(false) };
        if head != block {
            return Ok(false);
        }
        let read = block.len();
        expected = &expected[read..];
        file.consume(read);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state holding `bytes` (`None`: no file).
    struct Bytes(Option<Vec<u8>>);

    impl Content for Bytes {
        fn content(&self) -> Option<&[u8]> {
            self.0.as_deref()
        }
    }

    fn bytes(text: &str) -> Bytes {
        Bytes(Some(text.as_bytes().to_vec()))
    }

    fn backdate(path: &Path) {
        let file = fs::File::options().write(true).open(path).unwrap();
        file.set_modified(SystemTime::now() - Duration::from_secs(10)).unwrap();
    }

    #[test]
    fn a_file_is_compared_with_its_kept_bytes_block_by_block_to_the_last_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("graph.jsonl");
        // Larger than one block, and not a whole number of them.
        let content: Vec<u8> = (0..200_003u32).map(|i| b'a' + (i % 26) as u8).collect();
        fs::write(&path, &content).unwrap();
        assert!(holds(&path, Some(&content)).unwrap());
        let mut last_byte_differs = content.clone();
        *last_byte_differs.last_mut().unwrap() = b'!';
        assert!(!holds(&path, Some(&last_byte_differs)).unwrap());
        assert!(!holds(&path, Some(&content[..content.len() - 1])).unwrap(), "the file is longer");
        let mut longer = content.clone();
        longer.push(b'\n');
        assert!(!holds(&path, Some(&longer)).unwrap(), "the file is shorter");
        assert!(!holds(&path, None).unwrap(), "a file where none was kept");
        assert!(holds(&dir.path().join("missing"), None).unwrap());
        assert!(!holds(&dir.path().join("missing"), Some(b"x")).unwrap());
    }

    #[test]
    fn a_file_changed_since_its_state_was_kept_is_not_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("graph.jsonl");
        fs::write(&path, "{\"a\":1}\n").unwrap();
        let mut slot = Slot::default();
        slot.keep(&Look::at(&path).unwrap(), bytes("{\"a\":1}\n"));
        let now = Look::at(&path).unwrap();
        assert!(slot.take_current(&now, &path).unwrap().is_some(), "nothing changed");
        assert!(slot.take_current(&now, &path).unwrap().is_none(), "taken: the transaction owns it");

        slot.keep(&now, bytes("{\"a\":1}\n"));
        fs::write(&path, "{\"a\":22}\n").unwrap();
        assert!(slot.take_current(&Look::at(&path).unwrap(), &path).unwrap().is_none(), "a new size");
        assert_eq!(slot.reused(), 1);
    }

    #[test]
    fn a_same_size_rewrite_that_keeps_the_stamp_is_seen_by_its_bytes_while_the_file_is_young() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("graph.jsonl");
        fs::write(&path, "{\"a\":1}\n").unwrap();
        // Right after our commit: the file is young, and the stamp is all a rewrite would keep.
        let look = Look::at(&path).unwrap();
        assert!(!look.settled());
        let mut slot = Slot::default();
        slot.keep(&look, bytes("{\"a\":1}\n"));
        assert!(slot.take_current(&look, &path).unwrap().is_some(), "the file holds what was kept");
        slot.keep(&look, bytes("{\"a\":1}\n"));
        fs::write(&path, "{\"a\":2}\n").unwrap();
        // The same look stands for a rewrite within the timestamp granularity: the stamp is equal.
        assert!(slot.take_current(&look, &path).unwrap().is_none(), "the bytes differ");
    }

    #[test]
    fn a_settled_stamp_is_trusted_alone_and_a_later_change_moves_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("graph.jsonl");
        fs::write(&path, "{\"a\":1}\n").unwrap();
        backdate(&path);
        // ctime moves with every write and cannot be set back: wait it out.
        std::thread::sleep(SETTLE);
        let look = Look::at(&path).unwrap();
        assert!(look.settled());
        let mut slot = Slot::default();
        // Bytes other than the file's: reused all the same, so the bytes were not read.
        slot.keep(&look, bytes("not what the file holds"));
        assert!(slot.take_current(&look, &path).unwrap().is_some(), "trusted by its stamp alone");
        slot.keep(&look, bytes("{\"a\":1}\n"));
        fs::write(&path, "{\"a\":2}\n").unwrap();
        backdate(&path);
        assert!(slot.take_current(&Look::at(&path).unwrap(), &path).unwrap().is_none(), "the change time moved");
    }

    #[test]
    fn a_missing_file_is_kept_as_missing_until_it_appears() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.json");
        let mut slot = Slot::default();
        slot.keep(&Look::at(&path).unwrap(), Bytes(None));
        assert!(slot.take_current(&Look::at(&path).unwrap(), &path).unwrap().is_some());
        slot.keep(&Look::at(&path).unwrap(), Bytes(None));
        fs::write(&path, "{}").unwrap();
        assert!(slot.take_current(&Look::at(&path).unwrap(), &path).unwrap().is_none());
    }
}
