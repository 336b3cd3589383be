//! The commit protocol: how one transaction's new `graph.jsonl` and `service/registry.json` land
//! together, and how the next holder of both locks completes a commit a crashed writer left half
//! done.
//!
//! Two renames are not one atomic step. A commit that changes both files therefore goes through a
//! commit record, `.wg/wg-recover-commit.json` (a "hot journal", the idea of SQLite's):
//!
//! 1. each new content is written to a temp file beside its target (`.<name>.tmp.<pid>`) and
//!    fsynced;
//! 2. the record is written to its own temp file and fsynced, the temps' folders are fsynced, and
//!    the record is renamed into place: this rename is the commit point, so the record is either
//!    absent or whole. It names each (temp, target) pair with the length and 64-bit FNV-1a hash of
//!    the target's content before the commit (as the transaction read it: see [`render_record`])
//!    and of its new content;
//! 3. each temp is renamed onto its target, both folders are fsynced;
//! 4. the record is removed and its folder fsynced.
//!
//! Whoever next holds both locks runs [`recover`] before reading: with a record present, each
//! target already holding its new content is done, and each one still holding its old content is
//! replaced by its temp if the temp holds the new content. Anything else means a program that does
//! not know this record (upstream's `wg`, a person) changed a target or a temp after the crash;
//! then nothing is touched and the transaction stops with an error saying what was found.
//!
//! A commit is a list of [`Step`]s run in order. Stopping after any of them leaves the files
//! exactly as a crash there would, which is how the tests below crash a commit at every step.

use super::WgPaths;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use wg_core::ports::{FileError, StoreError};

/// The record's format; a record of another version is refused rather than guessed at.
const RECORD_VERSION: u32 = 1;

/// Length and 64-bit FNV-1a hash of a file's content: enough to tell, after a crash, which of the
/// contents a record names a file holds, if any. It guards against crashes and other tools, not
/// against forgery.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub length_bytes: u64,
    #[serde(with = "hex_u64")]
    pub fnv1a_64: u64,
}

impl Fingerprint {
    const EMPTY: Fingerprint = Fingerprint { length_bytes: 0, fnv1a_64: FNV_OFFSET_BASIS };

    pub fn of(bytes: &[u8]) -> Fingerprint {
        Fingerprint::EMPTY.extended(bytes)
    }

    /// The fingerprint of this content followed by `bytes`.
    fn extended(self, bytes: &[u8]) -> Fingerprint {
        Fingerprint { length_bytes: self.length_bytes + bytes.len() as u64, fnv1a_64: fnv1a_64(self.fnv1a_64, bytes) }
    }
}

/// Fingerprints what is written to it, so that a file is hashed without being held in memory.
impl Write for Fingerprint {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        *self = self.extended(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a, 64 bits, continued from `hash` (start from [`FNV_OFFSET_BASIS`]): one multiply a byte,
/// no dependency, and more than enough to tell two versions of a file apart.
fn fnv1a_64(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |hash, &byte| (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME))
}

/// The hash as 16 hex digits in the record: readable, and exact for any JSON reader (a number
/// above 2^53 is not).
mod hex_u64 {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &u64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format!("{value:016x}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        let text = String::deserialize(deserializer)?;
        u64::from_str_radix(&text, 16).map_err(|error| D::Error::custom(format!("hash {text:?}: {error}")))
    }
}

/// The two files a transaction writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KnownFile {
    Registry,
    Graph,
}

impl KnownFile {
    const ALL: [KnownFile; 2] = [KnownFile::Registry, KnownFile::Graph];

    /// The path relative to `.wg/`, as the record names it.
    fn relative(self) -> &'static str {
        match self {
            KnownFile::Registry => "service/registry.json",
            KnownFile::Graph => "graph.jsonl",
        }
    }

    fn from_relative(text: &str) -> Option<KnownFile> {
        KnownFile::ALL.into_iter().find(|file| file.relative() == text)
    }

    fn path(self, paths: &WgPaths) -> PathBuf {
        match self {
            KnownFile::Registry => paths.registry(),
            KnownFile::Graph => paths.graph(),
        }
    }
}

/// One file's new content, and the content it replaces.
pub struct FileWrite<'a> {
    pub file: KnownFile,
    /// What the transaction read of the file, the content its change was computed from. The
    /// record fingerprints it as the content before the commit.
    pub replaces: Replaced<'a>,
    pub content: Content<'a>,
    /// Where the new content's fingerprint is kept once a record needed it: a store that keeps
    /// what it wrote has it at hand when its next commit replaces that content.
    pub content_fingerprint: &'a FingerprintMemo,
}

/// A content's fingerprint, computed at most once.
pub type FingerprintMemo = OnceLock<Fingerprint>;

/// The content a write replaces, as the transaction read it.
#[derive(Clone, Copy)]
pub enum Replaced<'a> {
    /// There was no file.
    Nothing,
    /// These bytes; their fingerprint goes into the memo when a record first needs it.
    Bytes { bytes: &'a [u8], fingerprint: &'a FingerprintMemo },
    /// Bytes let go of once fingerprinted.
    Fingerprinted(Fingerprint),
}

impl Replaced<'_> {
    /// The same content, fingerprinted now (once: into the memo) if it was not yet, so that its
    /// bytes may go.
    pub fn fingerprinted(self) -> Replaced<'static> {
        match self.fingerprint() {
            Some(fingerprint) => Replaced::Fingerprinted(fingerprint),
            None => Replaced::Nothing,
        }
    }

    fn fingerprint(&self) -> Option<Fingerprint> {
        match self {
            Replaced::Nothing => None,
            Replaced::Bytes { bytes, fingerprint } => Some(*fingerprint.get_or_init(|| Fingerprint::of(bytes))),
            Replaced::Fingerprinted(fingerprint) => Some(*fingerprint),
        }
    }
}

/// A file's new content: bytes, or a writer of them, so that a large file (the graph) goes to
/// its temp file without first being built in memory.
pub enum Content<'a> {
    Bytes(Cow<'a, [u8]>),
    Streamed(&'a dyn Fn(&mut dyn Write) -> std::io::Result<()>),
}

impl Content<'_> {
    fn write_to(&self, out: &mut dyn Write) -> std::io::Result<()> {
        match self {
            Content::Bytes(bytes) => out.write_all(bytes),
            Content::Streamed(write) => write(out),
        }
    }

    fn fingerprint(&self) -> Fingerprint {
        let mut fingerprint = Fingerprint::EMPTY;
        self.write_to(&mut fingerprint).expect("fingerprinting does not fail");
        fingerprint
    }
}

impl std::fmt::Debug for Content<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Content::Bytes(bytes) => write!(f, "{} bytes", bytes.len()),
            Content::Streamed(_) => f.write_str("streamed"),
        }
    }
}

/// The folder a file is in (`.` for a bare name, whose parent is the empty path).
fn folder_of(path: &Path) -> &Path {
    path.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

fn file_name(path: &Path) -> &str {
    path.file_name().and_then(|name| name.to_str()).unwrap_or("file")
}

/// Temp files of `name` are `.<name>.tmp.<pid>`: the pid keeps two writers that do not share a
/// lock (the service record, `wg init`) apart and tells whose a leftover was.
fn temp_prefix(name: &str) -> String {
    format!(".{name}.tmp.")
}

fn temp_path(target: &Path) -> PathBuf {
    folder_of(target).join(format!("{}{}", temp_prefix(file_name(target)), std::process::id()))
}

/// Whether `name` is a temp file name of the file `target_name` (a pid after the prefix).
fn is_temp_name_of(name: &str, target_name: &str) -> bool {
    name.strip_prefix(&temp_prefix(target_name))
        .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|byte| byte.is_ascii_digit()))
}

/// Removes temp files a writer killed mid-commit left: the targets' and the record's. Only a
/// holder of both locks writes them and we hold both, so any one present now is stale; [`recover`]
/// runs first, so none that a record names is still needed. Best effort: a leftover only costs
/// space, and the next transaction tries again.
pub fn remove_stale_temporaries(paths: &WgPaths) {
    let targets = [paths.graph(), paths.registry(), paths.commit_record()];
    for target in &targets {
        let Ok(entries) = fs::read_dir(folder_of(target)) else { continue };
        for entry in entries.flatten() {
            if entry.file_name().to_str().is_some_and(|name| is_temp_name_of(name, file_name(target))) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// One step of a commit or a recovery. Each leaves the files in a state a crash may leave.
#[derive(Debug)]
enum Step<'a> {
    /// Creates `temp` holding `bytes` and fsyncs it; errors name `target`, the file it replaces.
    WriteTemp {
        temp: PathBuf,
        target: PathBuf,
        content: Content<'a>,
    },
    Rename {
        from: PathBuf,
        to: PathBuf,
    },
    /// Makes the renames and removals in a folder durable.
    SyncFolder(PathBuf),
    Remove(PathBuf),
}

impl Step<'_> {
    /// Runs the step; on failure, says what could not be done.
    fn run(&self) -> Result<(), FileError> {
        match self {
            Step::WriteTemp { temp, target, content } => {
                write_and_sync(temp, content).map_err(|error| FileError::new("write", target, &error))
            }
            Step::Rename { from, to } => fs::rename(from, to)
                .map_err(|error| FileError::new(format!("rename {} onto", from.display()), to, &error)),
            Step::SyncFolder(folder) => File::open(folder)
                .and_then(|opened| opened.sync_all())
                .map_err(|error| FileError::new("sync the folder", folder, &error)),
            Step::Remove(path) => fs::remove_file(path).map_err(|error| FileError::new("remove", path, &error)),
        }
    }
}

fn write_and_sync(path: &Path, content: &Content<'_>) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::with_capacity(1 << 16, File::create(path)?);
    content.write_to(&mut out)?;
    out.into_inner().map_err(std::io::IntoInnerError::into_error)?.sync_all()
}

/// The steps of one commit or recovery, and where it becomes irrevocable.
#[derive(Debug)]
pub struct Plan<'a> {
    steps: Vec<Step<'a>>,
    /// The step that decides the commit (the rename of the record, or of the only temp): a failure
    /// up to and including it leaves the old files, and the plan removes its temps. `None`: decided
    /// before the plan started (a recovery).
    commit_step: Option<usize>,
    /// What a failure after the commit step means for the caller, appended to the error.
    after_commit: String,
}

impl Plan<'_> {
    pub fn run(&self) -> Result<(), StoreError> {
        for (index, step) in self.steps.iter().enumerate() {
            if let Err(source) = step.run() {
                return Err(self.failure(index, source));
            }
        }
        Ok(())
    }

    fn failure(&self, index: usize, source: FileError) -> StoreError {
        let then = if self.commit_step.is_some_and(|commit_step| index <= commit_step) {
            self.remove_temporaries();
            "nothing was written".to_string()
        } else {
            self.after_commit.clone()
        };
        StoreError::File { source, then: Some(then) }
    }

    /// Best effort: a temp left here is stale, and the next transaction removes it.
    fn remove_temporaries(&self) {
        for step in &self.steps {
            if let Step::WriteTemp { temp, .. } = step {
                let _ = fs::remove_file(temp);
            }
        }
    }
}

/// Replaces `target` with `bytes` so that a crash at any moment leaves the old or the new file:
/// temp file, fsync, rename, fsync of the folder.
pub fn single_file_plan<'a>(target: &Path, content: Content<'a>) -> Plan<'a> {
    let temp = temp_path(target);
    let steps = vec![
        Step::WriteTemp { temp: temp.clone(), target: target.to_path_buf(), content },
        Step::Rename { from: temp, to: target.to_path_buf() },
        Step::SyncFolder(folder_of(target).to_path_buf()),
    ];
    let after_commit = format!("{} holds the new content, but may lose it in a power cut", target.display());
    Plan { steps, commit_step: Some(1), after_commit }
}

/// How a transaction's changed files are written; `None` when nothing changed. Call it holding
/// both locks, held since the transaction read what each write [replaces](FileWrite::replaces).
pub fn commit_plan<'a>(paths: &WgPaths, writes: Vec<FileWrite<'a>>) -> Option<Plan<'a>> {
    match writes.len() {
        0 => None,
        // One rename is atomic by itself: a record would add three fsyncs and make nothing safer.
        // Most commands change one file (`wg add` the graph, a heartbeat the registry).
        1 => {
            let write = writes.into_iter().next().expect("one write");
            Some(single_file_plan(&write.file.path(paths), write.content))
        }
        _ => Some(journaled_plan(paths, writes)),
    }
}

/// The folders of `files`, each once, in order.
fn folders_of(files: impl IntoIterator<Item = PathBuf>) -> Vec<PathBuf> {
    let mut folders: Vec<PathBuf> = Vec::new();
    for file in files {
        let folder = folder_of(&file).to_path_buf();
        if !folders.contains(&folder) {
            folders.push(folder);
        }
    }
    folders
}

/// Several files as one commit, through the record (see the module's documentation). The renames
/// run in the order of `writes`.
fn journaled_plan<'a>(paths: &WgPaths, writes: Vec<FileWrite<'a>>) -> Plan<'a> {
    let record = paths.commit_record();
    let record_temp = temp_path(&record);
    let record_folder = folder_of(&record).to_path_buf();
    let pairs: Vec<(PathBuf, PathBuf)> = writes
        .iter()
        .map(|write| {
            let target = write.file.path(paths);
            (temp_path(&target), target)
        })
        .collect();
    let target_folders = folders_of(pairs.iter().map(|(_, target)| target.clone()));

    let record_bytes = render_record(&writes, &pairs);
    let mut steps = Vec::new();
    for (write, (temp, target)) in writes.into_iter().zip(&pairs) {
        steps.push(Step::WriteTemp { temp: temp.clone(), target: target.clone(), content: write.content });
    }
    let record_content = Content::Bytes(Cow::Owned(record_bytes));
    steps.push(Step::WriteTemp { temp: record_temp.clone(), target: record.clone(), content: record_content });
    // A temp's name must be on disk before the record that names it. The record's own folder is
    // synced right after its rename, which makes the temps there durable with it.
    let other_folders = target_folders.iter().filter(|folder| **folder != record_folder);
    steps.extend(other_folders.map(|folder| Step::SyncFolder(folder.clone())));
    let commit_step = steps.len();
    steps.push(Step::Rename { from: record_temp, to: record.clone() });
    steps.push(Step::SyncFolder(record_folder.clone()));
    for (temp, target) in &pairs {
        steps.push(Step::Rename { from: temp.clone(), to: target.clone() });
    }
    // Every rename on disk before the record goes: else a power cut could keep the removal and
    // lose a rename, which is the half commit this protocol exists to prevent.
    steps.extend(target_folders.iter().map(|folder| Step::SyncFolder(folder.clone())));
    steps.extend(record_removal(&record));
    let after_commit = pending_note(&record);
    Plan { steps, commit_step: Some(commit_step), after_commit }
}

fn record_removal<'a>(record: &Path) -> [Step<'a>; 2] {
    [Step::Remove(record.to_path_buf()), Step::SyncFolder(folder_of(record).to_path_buf())]
}

fn pending_note(record: &Path) -> String {
    format!(
        "the change is recorded in {} and the next wg command that takes the locks (any command that \
         writes, or the service's next sweep) completes it; fix the cause, then run one",
        record.display()
    )
}

/// The record on disk: which temp replaces which target, and the fingerprints that let the next
/// lock holder tell how far the commit got.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommitRecord {
    version: u32,
    files: Vec<RecordEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordEntry {
    /// Relative to `.wg/`: `graph.jsonl` or `service/registry.json`.
    target: String,
    /// A file name in the target's folder: `.<name>.tmp.<pid>`.
    temp: String,
    /// The target's content just before the commit, the one the change was computed from; `null`:
    /// it did not exist (a registry before the first agent).
    before: Option<Fingerprint>,
    after: Fingerprint,
}

/// The record of `writes`. A target's content before the commit is fingerprinted from what the
/// transaction read of it ([`FileWrite::replaces`]), not read from disk again. Recovery stays as
/// safe: whoever commits has held both locks since it read the files, so no writer that honours
/// them (we, upstream's `wg`) changed a target since, and the bytes read are the target's content
/// at the commit point, exactly what reading it back would give. A writer that ignores the locks
/// (a person's editor) and rewrote a target between our read and our commit makes the record's
/// "before" differ from the target: after a crash, recovery then finds the target [`Rewritten`]
/// and stops with the record as evidence, where reading back would have rolled forward over that
/// write (which the commit itself would overwrite too, had it not crashed); so no recovery that
/// was refused before proceeds now.
///
/// [`Rewritten`]: Finding::Rewritten
fn render_record(writes: &[FileWrite<'_>], pairs: &[(PathBuf, PathBuf)]) -> Vec<u8> {
    let files = writes
        .iter()
        .zip(pairs)
        .map(|(write, (temp, _))| RecordEntry {
            target: write.file.relative().to_string(),
            temp: file_name(temp).to_string(),
            before: write.replaces.fingerprint(),
            after: *write.content_fingerprint.get_or_init(|| write.content.fingerprint()),
        })
        .collect();
    let mut bytes =
        serde_json::to_vec_pretty(&CommitRecord { version: RECORD_VERSION, files }).expect("a record serializes");
    bytes.push(b'\n');
    bytes
}

/// A record entry checked against what a record may name: one of the two known files, and a temp
/// beside it. A record naming anything else is not ours, and nothing is renamed on its word.
#[derive(Debug)]
struct RecordedFile {
    target: PathBuf,
    temp: PathBuf,
    before: Option<Fingerprint>,
    after: Fingerprint,
}

fn check_entry(paths: &WgPaths, entry: &RecordEntry) -> Result<RecordedFile, String> {
    let file = KnownFile::from_relative(&entry.target).ok_or_else(|| {
        format!("names the target {:?}, which is neither graph.jsonl nor service/registry.json", entry.target)
    })?;
    let target = file.path(paths);
    if !is_temp_name_of(&entry.temp, file_name(&target)) {
        return Err(format!(
            "names {:?} as the temp file of {}, which is not one of its temp names",
            entry.temp, entry.target
        ));
    }
    let temp = folder_of(&target).join(&entry.temp);
    Ok(RecordedFile { target, temp, before: entry.before, after: entry.after })
}

fn parse_record(paths: &WgPaths, bytes: &[u8]) -> Result<Vec<RecordedFile>, String> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|error| format!("does not parse ({error})"))?;
    // The version first, so that a later format is named as such, not as unknown fields.
    let version = value.get("version").and_then(serde_json::Value::as_u64);
    if version != Some(u64::from(RECORD_VERSION)) {
        let found = version.map_or("no format version".to_string(), |version| format!("format version {version}"));
        return Err(format!("has {found}; this wg reads version {RECORD_VERSION}"));
    }
    let record: CommitRecord = serde_json::from_value(value).map_err(|error| format!("does not parse ({error})"))?;
    if record.files.is_empty() {
        return Err("names no file".to_string());
    }
    let files: Vec<RecordedFile> =
        record.files.iter().map(|entry| check_entry(paths, entry)).collect::<Result<_, _>>()?;
    let mut targets: Vec<&PathBuf> = files.iter().map(|file| &file.target).collect();
    targets.sort();
    targets.dedup();
    if targets.len() != files.len() {
        return Err("names the same target twice".to_string());
    }
    Ok(files)
}

/// The record, if a crashed writer left one. One that does not parse or names files it may not
/// is an error that stops the transaction before anything is written.
fn read_record(paths: &WgPaths) -> Result<Option<Vec<RecordedFile>>, StoreError> {
    let path = paths.commit_record();
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(FileError::new("read", &path, &error).into()),
    };
    // An `Io` error rather than `Corrupt`: the command line adds "fix or remove that line" to the
    // latter, and this file has no line to fix.
    parse_record(paths, &bytes).map(Some).map_err(|problem| {
        StoreError::Io(format!(
            "{} {problem}. It is the commit record of a wg that crashed or failed while writing graph.jsonl \
             and service/registry.json; no wg command writes while it is there, and nothing was changed. \
             Check the two files; to keep them as they are, delete {} (the next wg command then removes \
             the temp files it names)",
            path.display(),
            path.display()
        ))
    })
}

/// How far a recorded commit got, for one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Finding {
    /// The target holds the new content.
    Landed,
    /// The target holds the old content and the temp the new: the rename is still to do.
    Pending,
    /// The target holds neither: a program that does not know the record wrote it since.
    Rewritten,
    /// The target holds the old content but the temp is gone or holds something else.
    TempLost,
}

impl Finding {
    fn completes(self) -> bool {
        matches!(self, Finding::Landed | Finding::Pending)
    }
}

/// The fingerprint of a file's content, read in chunks; `None` when there is no such file.
fn fingerprint_file(path: &Path) -> Result<Option<Fingerprint>, StoreError> {
    let cannot_read = |error: std::io::Error| StoreError::from(FileError::new("read", path, &error));
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(cannot_read(error)),
    };
    let mut fingerprint = Fingerprint::EMPTY;
    std::io::copy(&mut file, &mut fingerprint).map_err(cannot_read)?;
    Ok(Some(fingerprint))
}

fn find(file: &RecordedFile) -> Result<Finding, StoreError> {
    let target_now = fingerprint_file(&file.target)?;
    if target_now == Some(file.after) {
        return Ok(Finding::Landed);
    }
    if target_now != file.before {
        return Ok(Finding::Rewritten);
    }
    let temp_now = fingerprint_file(&file.temp)?;
    Ok(if temp_now == Some(file.after) { Finding::Pending } else { Finding::TempLost })
}

fn describe(file: &RecordedFile, finding: Finding) -> String {
    let (target, temp) = (file.target.display(), file.temp.display());
    match finding {
        Finding::Landed => format!("{target} already holds the new content"),
        Finding::Pending => format!("{target} still holds the old content and {temp} the new"),
        Finding::Rewritten => format!(
            "{target} holds neither the content the commit replaced nor its new content (another program wrote it \
             after the crash)"
        ),
        Finding::TempLost => format!("{target} still holds the old content, but {temp} is missing or altered"),
    }
}

/// Completes a commit a crashed writer left, if any; call it holding both locks, before reading.
///
/// The rule: roll forward only when every target holds either its new content or exactly the
/// content the commit replaced, with the new one waiting in its temp. Otherwise a program that
/// does not know the record (upstream's `wg`, a person, a disk losing data) changed the files
/// since, and rolling forward would overwrite its write while discarding would drop a commit that
/// may be half visible; either can lose work, so nothing is touched, the record and temps stay as
/// evidence, and the error says what was found and how to go on. Losing nothing comes first.
pub fn recover(paths: &WgPaths) -> Result<(), StoreError> {
    match recovery_plan(paths)? {
        Some(plan) => plan.run(),
        None => Ok(()),
    }
}

fn recovery_plan(paths: &WgPaths) -> Result<Option<Plan<'static>>, StoreError> {
    let Some(files) = read_record(paths)? else { return Ok(None) };
    let findings: Vec<Finding> = files.iter().map(find).collect::<Result<_, _>>()?;
    let record = paths.commit_record();
    if !findings.iter().all(|finding| finding.completes()) {
        let found: Vec<String> = files.iter().zip(&findings).map(|(file, &finding)| describe(file, finding)).collect();
        return Err(StoreError::Io(format!(
            "{} records a commit that a wg left unfinished (it crashed or failed), and it cannot be completed \
             as a whole: {}. \
             Nothing was changed, and no wg command writes while the record is there. Check graph.jsonl and \
             service/registry.json; to keep them as they are, delete {} (the next wg command then removes \
             the temp files it names)",
            record.display(),
            found.join("; "),
            record.display()
        )));
    }
    let mut steps: Vec<Step<'static>> = files
        .iter()
        .zip(&findings)
        .filter(|(_, &finding)| finding == Finding::Pending)
        .map(|(file, _)| Step::Rename { from: file.temp.clone(), to: file.target.clone() })
        .collect();
    // All folders, also those of renames the crashed writer did but may not have synced.
    steps.extend(folders_of(files.iter().map(|file| file.target.clone())).into_iter().map(Step::SyncFolder));
    steps.extend(record_removal(&record));
    Ok(Some(Plan { steps, commit_step: None, after_commit: pending_note(&record) }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::system::store::FileStore;
    use wg_core::block_on;
    use wg_core::ports::{State, Store};

    const OLD_GRAPH: &str = "{\"kind\":\"task\",\"id\":\"t1\",\"title\":\"T1\",\"status\":\"open\",\"unknown\":1}\n";
    const NEW_GRAPH: &str = "{\"kind\":\"task\",\"id\":\"t1\",\"title\":\"T1\",\"status\":\"in-progress\",\"assigned\":\"agent-1\",\"unknown\":1}\n";
    const OLD_REGISTRY: &str = "{\n  \"agents\": {},\n  \"next_agent_id\": 1\n}\n";
    const NEW_REGISTRY: &str =
        "{\n  \"agents\": {\n    \"agent-1\": {\"id\": \"agent-1\", \"pid\": 0, \"task_id\": \"t1\", \
                                \"started_at\": \"2026-01-01T00:00:00+00:00\", \"status\": \"starting\"}\n  },\n  \
                                \"next_agent_id\": 2\n}\n";

    /// Both files' bytes, `None` for a missing file.
    #[derive(Debug, PartialEq)]
    struct Files {
        graph: Option<Vec<u8>>,
        registry: Option<Vec<u8>>,
    }

    impl Files {
        fn of(graph: &str, registry: Option<&str>) -> Files {
            Files { graph: Some(graph.as_bytes().to_vec()), registry: registry.map(|text| text.as_bytes().to_vec()) }
        }
    }

    /// A `.wg/` holding the old files.
    struct Fixture {
        _root: tempfile::TempDir,
        paths: WgPaths,
        old_registry: Option<&'static str>,
    }

    impl Fixture {
        fn new() -> Fixture {
            Fixture::with_old_registry(Some(OLD_REGISTRY))
        }

        fn with_old_registry(old_registry: Option<&'static str>) -> Fixture {
            let root = tempfile::tempdir().expect("a temp folder");
            let paths = WgPaths::new(root.path().join(".wg"));
            fs::create_dir_all(paths.service_dir()).expect("create .wg/service");
            fs::write(paths.graph(), OLD_GRAPH).expect("write the graph");
            if let Some(registry) = old_registry {
                fs::write(paths.registry(), registry).expect("write the registry");
            }
            Fixture { _root: root, paths, old_registry }
        }

        fn old(&self) -> Files {
            Files::of(OLD_GRAPH, self.old_registry)
        }

        fn new_files() -> Files {
            Files::of(NEW_GRAPH, Some(NEW_REGISTRY))
        }

        fn writes(&self) -> Vec<FileWrite<'static>> {
            vec![
                FileWrite {
                    file: KnownFile::Registry,
                    replaces: match self.old_registry {
                        Some(text) => Replaced::Bytes { bytes: text.as_bytes(), fingerprint: a_memo() },
                        None => Replaced::Nothing,
                    },
                    content: Content::Bytes(Cow::Borrowed(NEW_REGISTRY.as_bytes())),
                    content_fingerprint: a_memo(),
                },
                FileWrite {
                    file: KnownFile::Graph,
                    replaces: Replaced::Bytes { bytes: OLD_GRAPH.as_bytes(), fingerprint: a_memo() },
                    content: Content::Bytes(Cow::Borrowed(NEW_GRAPH.as_bytes())),
                    content_fingerprint: a_memo(),
                },
            ]
        }

        fn files(&self) -> Files {
            Files { graph: fs::read(self.paths.graph()).ok(), registry: fs::read(self.paths.registry()).ok() }
        }

        /// What a fresh store's transaction that changes nothing sees and leaves.
        fn next_transaction(&self) -> Result<State, StoreError> {
            block_on(FileStore::new(self.paths.clone(), false).transact(|state| state.clone()))
        }

        /// The record and temp files left in `.wg/` and `.wg/service/`.
        fn leftovers(&self) -> Vec<String> {
            [self.paths.dir.clone(), self.paths.service_dir()]
                .iter()
                .flat_map(|folder| fs::read_dir(folder).expect("list a folder").flatten())
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .filter(|name| name.contains(".tmp.") || name == "wg-recover-commit.json")
                .collect()
        }
    }

    /// An empty memo that lives as long as the test binary: plans here borrow for `'static`.
    fn a_memo() -> &'static FingerprintMemo {
        Box::leak(Box::default())
    }

    #[test]
    fn a_record_takes_fingerprints_kept_from_before_and_keeps_those_it_computes() {
        let fixture = Fixture::new();
        let (replaced, written) = (a_memo(), a_memo());
        // What an earlier commit computed for these bytes: used as is, not computed again.
        let planted = Fingerprint { length_bytes: 1, fnv1a_64: 7 };
        replaced.set(planted).expect("empty");
        let mut writes = fixture.writes();
        writes[1].replaces = Replaced::Bytes { bytes: OLD_GRAPH.as_bytes(), fingerprint: replaced };
        writes[1].content_fingerprint = written;
        let pairs: Vec<(PathBuf, PathBuf)> = writes
            .iter()
            .map(|write| (temp_path(&write.file.path(&fixture.paths)), write.file.path(&fixture.paths)))
            .collect();
        let record: CommitRecord = serde_json::from_slice(&render_record(&writes, &pairs)).expect("a record");
        assert_eq!(record.files[1].before, Some(planted));
        assert_eq!(written.get(), Some(&Fingerprint::of(NEW_GRAPH.as_bytes())), "kept for the next commit");
        assert_eq!(record.files[1].after, Fingerprint::of(NEW_GRAPH.as_bytes()));
        assert_eq!(record.files[0].before, Some(Fingerprint::of(OLD_REGISTRY.as_bytes())));
    }

    /// Runs the first `count` steps, as a writer killed right after them would have.
    fn run_first(plan: &Plan<'_>, count: usize) {
        for step in &plan.steps[..count] {
            step.run().expect("a step runs");
        }
    }

    fn two_file_plan(fixture: &Fixture) -> Plan<'static> {
        commit_plan(&fixture.paths, fixture.writes()).expect("two files changed")
    }

    #[test]
    fn fnv1a_64_matches_the_published_test_vectors() {
        assert_eq!(Fingerprint::of(b"").fnv1a_64, 0xcbf2_9ce4_8422_2325);
        assert_eq!(Fingerprint::of(b"a").fnv1a_64, 0xaf63_dc4c_8601_ec8c);
        assert_eq!(Fingerprint::of(b"foobar").fnv1a_64, 0x8594_4171_f739_67e8);
        assert_eq!(Fingerprint::of(b"foo").extended(b"bar"), Fingerprint::of(b"foobar"));
    }

    #[test]
    fn a_two_file_commit_stopped_after_any_step_leaves_both_files_old_or_both_new() {
        let step_count = two_file_plan(&Fixture::new()).steps.len();
        for stop_after in 0..=step_count {
            let fixture = Fixture::new();
            let plan = two_file_plan(&fixture);
            run_first(&plan, stop_after);
            let decided = plan.commit_step.is_some_and(|commit_step| stop_after > commit_step);
            let seen = fixture.next_transaction();
            assert!(seen.is_ok(), "stopped after {stop_after} steps: {seen:?}");
            let expected = if decided { Fixture::new_files() } else { fixture.old() };
            assert_eq!(fixture.files(), expected, "stopped after {stop_after} of {step_count} steps");
            assert_eq!(fixture.leftovers(), Vec::<String>::new(), "stopped after {stop_after} steps");
        }
    }

    #[test]
    fn a_commit_creating_the_registry_stopped_after_any_step_leaves_both_files_old_or_both_new() {
        let step_count = two_file_plan(&Fixture::with_old_registry(None)).steps.len();
        for stop_after in 0..=step_count {
            let fixture = Fixture::with_old_registry(None);
            let plan = two_file_plan(&fixture);
            run_first(&plan, stop_after);
            let decided = plan.commit_step.is_some_and(|commit_step| stop_after > commit_step);
            fixture.next_transaction().expect("the next transaction runs");
            let expected = if decided { Fixture::new_files() } else { fixture.old() };
            assert_eq!(fixture.files(), expected, "stopped after {stop_after} of {step_count} steps");
            assert_eq!(fixture.leftovers(), Vec::<String>::new(), "stopped after {stop_after} steps");
        }
    }

    #[test]
    fn a_recovery_stopped_after_any_step_is_completed_by_the_next_transaction() {
        let plan = two_file_plan(&Fixture::new());
        let commit_step = plan.commit_step.expect("a commit point");
        // The record is there from the commit step's rename until its removal.
        let removal = plan.steps.iter().position(|step| matches!(step, Step::Remove(_))).expect("a removal");
        for crash_after in commit_step + 1..=removal {
            let recovery_steps = {
                let fixture = Fixture::new();
                run_first(&two_file_plan(&fixture), crash_after);
                recovery_plan(&fixture.paths).expect("a whole record").expect("a record").steps.len()
            };
            for stop_after in 0..=recovery_steps {
                let fixture = Fixture::new();
                run_first(&two_file_plan(&fixture), crash_after);
                let recovery = recovery_plan(&fixture.paths).expect("a whole record").expect("a record");
                run_first(&recovery, stop_after);
                fixture.next_transaction().expect("the next transaction runs");
                let at = format!("commit stopped after {crash_after}, recovery after {stop_after}");
                assert_eq!(fixture.files(), Fixture::new_files(), "{at}");
                assert_eq!(fixture.leftovers(), Vec::<String>::new(), "{at}");
            }
        }
    }

    #[test]
    fn a_one_file_commit_stopped_after_any_step_leaves_the_old_or_the_new_file() {
        let plan_for =
            |fixture: &Fixture| commit_plan(&fixture.paths, fixture.writes().split_off(1)).expect("one file");
        let step_count = plan_for(&Fixture::new()).steps.len();
        for stop_after in 0..=step_count {
            let fixture = Fixture::new();
            let plan = plan_for(&fixture);
            run_first(&plan, stop_after);
            fixture.next_transaction().expect("the next transaction runs");
            let renamed = plan.commit_step.is_some_and(|commit_step| stop_after > commit_step);
            let graph = if renamed { NEW_GRAPH } else { OLD_GRAPH };
            assert_eq!(fixture.files(), Files::of(graph, Some(OLD_REGISTRY)), "stopped after {stop_after} steps");
            assert_eq!(fixture.leftovers(), Vec::<String>::new(), "stopped after {stop_after} steps");
        }
    }

    /// A record in place and both temps written, the targets untouched: a crash right after the
    /// commit point.
    fn crash_at_the_commit_point(fixture: &Fixture) {
        let plan = two_file_plan(fixture);
        run_first(&plan, plan.commit_step.expect("a commit point") + 1);
        assert!(fixture.paths.commit_record().exists());
        assert_eq!(fixture.files(), fixture.old());
    }

    #[test]
    fn a_record_with_both_temps_present_and_the_targets_old_is_rolled_forward_by_the_next_transaction() {
        let fixture = Fixture::new();
        crash_at_the_commit_point(&fixture);
        let state = fixture.next_transaction().expect("the next transaction runs");
        assert_eq!(
            state.graph.task("t1").map(|task| task.status.clone()),
            Some(wg_core::model::TaskStatus::InProgress)
        );
        assert!(state.registry.agent("agent-1").is_some(), "the transaction reads the completed commit");
        assert_eq!(fixture.files(), Fixture::new_files());
        assert_eq!(fixture.leftovers(), Vec::<String>::new());
    }

    fn assert_stopped(fixture: &Fixture, error: &StoreError, expected_files: &Files, mentions: &[&str]) {
        let message = error.to_string();
        for words in mentions {
            assert!(message.contains(words), "{words:?} not in: {message}");
        }
        assert_eq!(&fixture.files(), expected_files, "nothing changed");
        assert!(fixture.paths.commit_record().exists(), "the record stays as evidence");
    }

    #[test]
    fn a_target_another_program_rewrote_after_the_crash_is_left_alone_and_reported() {
        let fixture = Fixture::new();
        crash_at_the_commit_point(&fixture);
        let foreign = "{\"kind\":\"task\",\"id\":\"t9\",\"title\":\"added by upstream wg\",\"status\":\"open\"}\n";
        fs::write(fixture.paths.graph(), foreign).expect("another program writes");
        let error = fixture.next_transaction().expect_err("the transaction stops");
        let expected = Files::of(foreign, Some(OLD_REGISTRY));
        assert_stopped(&fixture, &error, &expected, &["wg-recover-commit.json", "another program", "delete"]);
        let again = fixture.next_transaction().expect_err("every transaction stops until someone decides");
        assert_eq!(again, error);
    }

    #[test]
    fn a_target_rewritten_between_the_read_and_a_crashed_commit_is_not_rolled_forward_over() {
        let fixture = Fixture::new();
        // A writer that takes no lock, after the transaction read the graph and before its commit.
        let foreign = OLD_GRAPH.replace("open", "done");
        fs::write(fixture.paths.graph(), &foreign).expect("another program writes");
        let plan = two_file_plan(&fixture);
        run_first(&plan, plan.commit_step.expect("a commit point") + 1);
        let error = fixture.next_transaction().expect_err("the transaction stops");
        let expected = Files::of(&foreign, Some(OLD_REGISTRY));
        assert_stopped(&fixture, &error, &expected, &["another program", "delete"]);
    }

    #[test]
    fn a_record_whose_temp_is_gone_is_reported_and_nothing_changes() {
        let fixture = Fixture::new();
        crash_at_the_commit_point(&fixture);
        let registry_temp = temp_path(&fixture.paths.registry());
        fs::remove_file(&registry_temp).expect("remove the temp");
        let error = fixture.next_transaction().expect_err("the transaction stops");
        assert_stopped(&fixture, &error, &fixture.old(), &["registry.json", "missing or altered", "delete"]);
        assert!(temp_path(&fixture.paths.graph()).exists(), "the other temp stays as evidence");
    }

    #[test]
    fn a_record_that_does_not_parse_stops_the_transaction_and_changes_nothing() {
        let fixture = Fixture::new();
        fs::write(fixture.paths.commit_record(), "{\"version\": 1, \"files\": [").expect("plant a torn record");
        let error = fixture.next_transaction().expect_err("the transaction stops");
        assert_stopped(&fixture, &error, &fixture.old(), &["wg-recover-commit.json does not parse", "delete"]);
    }

    #[test]
    fn a_record_naming_a_file_other_than_the_graph_or_the_registry_is_refused() {
        let fixture = Fixture::new();
        let outside = fixture.paths.dir.join("config.toml");
        fs::write(&outside, "kept").expect("write a file");
        fs::write(fixture.paths.dir.join(".config.toml.tmp.1"), "replaced").expect("write a temp");
        let fingerprint = |text: &str| serde_json::to_value(Fingerprint::of(text.as_bytes())).expect("serializes");
        let record = serde_json::json!({"version": 1, "files": [
            {"target": "config.toml", "temp": ".config.toml.tmp.1", "before": fingerprint("kept"), "after": fingerprint("replaced")}
        ]});
        fs::write(fixture.paths.commit_record(), record.to_string()).expect("plant a record");
        let error = fixture.next_transaction().expect_err("the transaction stops");
        assert_stopped(&fixture, &error, &fixture.old(), &["neither graph.jsonl nor service/registry.json"]);
        assert_eq!(fs::read_to_string(outside).expect("read"), "kept");
    }

    #[test]
    fn a_record_of_another_format_version_is_refused() {
        let fixture = Fixture::new();
        fs::write(fixture.paths.commit_record(), "{\"version\": 2, \"files\": [], \"later\": true}").expect("plant");
        let error = fixture.next_transaction().expect_err("the transaction stops");
        assert_stopped(&fixture, &error, &fixture.old(), &["has format version 2; this wg reads version 1"]);
    }

    #[test]
    fn a_commit_that_fails_before_its_record_lands_removes_its_temps_and_writes_nothing() {
        let fixture = Fixture::new();
        let plan = two_file_plan(&fixture);
        // A folder where the record's temp file goes: creating the file fails.
        let obstacle = temp_path(&fixture.paths.commit_record());
        fs::create_dir(&obstacle).expect("create the obstacle");
        let error = plan.run().expect_err("the commit fails");
        assert!(error.to_string().ends_with("; nothing was written"), "{error}");
        let StoreError::File { source, then } = &error else { panic!("a file's error: {error:?}") };
        assert_eq!((source.action.as_str(), &source.path), ("write", &fixture.paths.commit_record()));
        assert_eq!((source.kind, then.as_deref()), (ErrorKind::IsADirectory, Some("nothing was written")));
        fs::remove_dir(&obstacle).expect("remove the obstacle");
        assert_eq!(fixture.files(), fixture.old());
        assert_eq!(fixture.leftovers(), Vec::<String>::new(), "its temps are removed");
    }

    #[test]
    fn a_commit_that_fails_after_its_record_landed_says_so_and_the_next_transaction_completes_it() {
        let fixture = Fixture::new();
        let plan = two_file_plan(&fixture);
        // A non-empty folder where the graph is: the graph's rename fails, after the registry's.
        fs::remove_file(fixture.paths.graph()).expect("remove the graph");
        fs::create_dir_all(fixture.paths.graph().join("in-the-way")).expect("create the obstacle");
        let error = plan.run().expect_err("the commit fails");
        assert!(error.to_string().contains("the change is recorded in"), "{error}");
        assert!(error.to_string().contains("wg-recover-commit.json"), "{error}");
        fs::remove_dir_all(fixture.paths.graph()).expect("remove the obstacle");
        fs::write(fixture.paths.graph(), OLD_GRAPH).expect("put the old graph back");
        fixture.next_transaction().expect("the next transaction runs");
        assert_eq!(fixture.files(), Fixture::new_files());
        assert_eq!(fixture.leftovers(), Vec::<String>::new());
    }

    #[test]
    fn a_transaction_that_leaves_an_in_progress_task_to_nobody_stops_before_writing() {
        let fixture = Fixture::new();
        let store = FileStore::new(fixture.paths.clone(), false);
        let broken = std::panic::catch_unwind(|| {
            block_on(store.transact(|state| {
                state.graph.task_mut("t1").expect("t1").status = wg_core::model::TaskStatus::InProgress;
            }))
        });
        let message = broken.expect_err("the store's commit asserts");
        let message = message.downcast_ref::<String>().expect("a formatted message");
        assert!(message.contains("a commit never writes an in-progress task without a running agent"), "{message}");
        assert_eq!(fixture.files(), fixture.old(), "nothing was written");
    }

    #[test]
    fn a_commit_that_changes_one_file_writes_no_record() {
        let fixture = Fixture::new();
        let plan = commit_plan(&fixture.paths, {
            let mut writes = fixture.writes();
            writes.truncate(1);
            writes
        })
        .expect("one file");
        assert!(!plan
            .steps
            .iter()
            .any(|step| matches!(step, Step::WriteTemp { target, .. } if *target == fixture.paths.commit_record())));
        plan.run().expect("the commit runs");
        assert_eq!(fixture.files(), Files::of(OLD_GRAPH, Some(NEW_REGISTRY)));
        assert_eq!(fixture.leftovers(), Vec::<String>::new());
    }
}
