//! Campaigns beyond one machine: `wg-sim fuzz --shard i/n` runs one part of a seed range and
//! writes what it found as JSONL; `wg-sim merge` reads the parts back and reports them as one.
//!
//! The split: shard `i` of `n` (0-based, as Kubernetes' `JOB_COMPLETION_INDEX`) runs the `i`-th
//! of `n` contiguous blocks of `A..B`, block `i` being `A + i*len/n .. A + (i+1)*len/n` (integer
//! division, `len = B - A`). The blocks cover the range exactly once, differ in size by at most
//! one seed, and depend on nothing but `A..B` and `i/n`. A seed's result depends only on the
//! scenario, the seed and the options, so the shards together find what one run of `A..B` finds.
//!
//! The output file: a header line `{"kind":"campaign", ...}` saying which shard of which range ran
//! which scenarios and how many seeds, then one `{"kind":"failure", ...}` line per failing seed (a
//! [`FailureRecord`]). It is written even when nothing failed, so a merge can tell a shard that
//! found nothing from a shard that never ran.

use crate::report::FailureRecord;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Shard `index` of `count`, 0-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    /// The whole range: what an unsharded run is.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// Parses `i/n`, `0 <= i < n`.
    pub fn parse(text: &str) -> Result<Shard, BadShard> {
        let usage = || BadShard { text: text.to_string() };
        let (index, count) = text.split_once('/').ok_or_else(usage)?;
        let index: u64 = index.trim().parse().map_err(|_| usage())?;
        let count: u64 = count.trim().parse().map_err(|_| usage())?;
        if count == 0 || index >= count {
            return Err(usage());
        }
        Ok(Shard { index, count })
    }

    /// This shard's block of `seeds` (see the module comment).
    pub fn seeds(&self, seeds: &Range<u64>) -> Range<u64> {
        let len = u128::from(seeds.end.saturating_sub(seeds.start));
        let at = |i: u64| seeds.start + (u128::from(i) * len / u128::from(self.count)) as u64;
        at(self.index)..at(self.index + 1)
    }

    /// The output file's name in a folder: one name per shard, so that shards writing into one
    /// shared folder do not overwrite each other.
    pub fn file_name(&self) -> String {
        if *self == Shard::WHOLE {
            "failures.jsonl".into()
        } else {
            format!("failures.shard-{}-of-{}.jsonl", self.index, self.count)
        }
    }
}

/// A `--shard` that is not `i/n` with `0 <= i < n`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("--shard {text:?}: expected i/n with 0 <= i < n, e.g. 0/4 .. 3/4 for four shards")]
pub struct BadShard {
    pub text: String,
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The header line of an output file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignHeader {
    /// The range given to `--seeds` (the whole range, not this shard's block).
    pub seeds: Range<u64>,
    pub shard: Shard,
    pub scenarios: Vec<String>,
    pub seeds_run: u64,
    /// A `--time` budget stopped some scenario before the end of this shard's block.
    pub stopped_by_time: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
enum Line {
    Campaign(CampaignHeader),
    Failure(Box<FailureRecord>),
}

/// Writes `header` and `records` to `path`.
pub fn write_output(path: &Path, header: &CampaignHeader, records: &[FailureRecord]) -> std::io::Result<()> {
    if let Some(folder) = path.parent() {
        std::fs::create_dir_all(folder)?;
    }
    let mut text = serde_json::to_string(&Line::Campaign(header.clone())).expect("headers serialize");
    text.push('\n');
    for record in records {
        text.push_str(&serde_json::to_string(&Line::Failure(Box::new(record.clone()))).expect("records serialize"));
        text.push('\n');
    }
    std::fs::write(path, text)
}

/// One output file as read.
#[derive(Debug)]
pub struct Output {
    pub file: PathBuf,
    pub header: CampaignHeader,
    pub records: Vec<FailureRecord>,
}

/// Why an output file (or a folder of them) could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadOutputError {
    #[error("cannot read the folder {}: {source}", folder.display())]
    CannotListFolder { folder: PathBuf, source: std::io::Error },
    #[error("{} holds no failures*.jsonl: name the --out folder (or file) of a `wg-sim fuzz` run", .0.display())]
    NoOutputInFolder(PathBuf),
    #[error("cannot read {}: {source}", file.display())]
    CannotRead { file: PathBuf, source: std::io::Error },
    #[error("{}:{line}: not a line of a `wg-sim fuzz --out` file ({source})", file.display())]
    NotALine { file: PathBuf, line: usize, source: serde_json::Error },
    #[error("{}:{line}: a second campaign header", file.display())]
    SecondHeader { file: PathBuf, line: usize },
    #[error("{}: no campaign header on line 1: the shard that wrote it did not finish", .0.display())]
    NoHeader(PathBuf),
}

/// Reads an output file, or every `failures*.jsonl` of a folder.
pub fn read_outputs(path: &Path) -> Result<Vec<Output>, ReadOutputError> {
    if !path.is_dir() {
        return read_output(path).map(|output| vec![output]);
    }
    let entries = std::fs::read_dir(path)
        .map_err(|source| ReadOutputError::CannotListFolder { folder: path.to_path_buf(), source })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|file| {
            let name = file.file_name().and_then(|name| name.to_str()).unwrap_or("");
            name.starts_with("failures") && name.ends_with(".jsonl")
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(ReadOutputError::NoOutputInFolder(path.to_path_buf()));
    }
    files.iter().map(|file| read_output(file)).collect()
}

fn read_output(file: &Path) -> Result<Output, ReadOutputError> {
    let text = std::fs::read_to_string(file)
        .map_err(|source| ReadOutputError::CannotRead { file: file.to_path_buf(), source })?;
    let mut header = None;
    let mut records = Vec::new();
    for (number, line) in text.lines().enumerate().filter(|(_, line)| !line.trim().is_empty()) {
        let parsed: Line = serde_json::from_str(line).map_err(|source| ReadOutputError::NotALine {
            file: file.to_path_buf(),
            line: number + 1,
            source,
        })?;
        match parsed {
            Line::Campaign(found) if header.is_none() && number == 0 => header = Some(found),
            Line::Campaign(_) => {
                return Err(ReadOutputError::SecondHeader { file: file.to_path_buf(), line: number + 1 })
            }
            Line::Failure(record) => records.push(*record),
        }
    }
    let header = header.ok_or_else(|| ReadOutputError::NoHeader(file.to_path_buf()))?;
    Ok(Output { file: file.to_path_buf(), header, records })
}

/// Shard outputs combined: their failures, de-duplicated, and what they covered.
#[derive(Debug)]
pub struct Merged {
    pub seeds: Range<u64>,
    pub shards: u64,
    pub seeds_run: u64,
    pub stopped_by_time: bool,
    /// Failures in (scenario, seed) order; of records with the same scenario, checker and shrunk
    /// trace only the lowest seed is kept (they are the same failure).
    pub records: Vec<FailureRecord>,
    /// How many records were dropped as duplicates.
    pub duplicates: usize,
}

/// Why shard outputs cannot be merged: they are not every shard of one campaign exactly once.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    #[error("no output to merge")]
    NoOutput,
    #[error(
        "{} is shard {} of --seeds {}..{} over {} scenarios, but {} is of --seeds {}..{} in {} shards \
         over {} scenarios: merge the outputs of one campaign",
        file.display(), header.shard, header.seeds.start, header.seeds.end, header.scenarios.len(),
        first_file.display(), first.seeds.start, first.seeds.end, first.shard.count, first.scenarios.len()
    )]
    OtherCampaign { file: PathBuf, header: Box<CampaignHeader>, first_file: PathBuf, first: Box<CampaignHeader> },
    #[error("shard {shard} is given twice ({} and {}): give each shard's output once", first_file.display(), file.display())]
    GivenTwice { shard: Shard, first_file: PathBuf, file: PathBuf },
    #[error(
        "shard {} of --seeds {}..{} missing: its seeds would go unreported; give every shard's output",
        missing.iter().map(Shard::to_string).collect::<Vec<_>>().join(", "), seeds.start, seeds.end
    )]
    Missing { missing: Vec<Shard>, seeds: Range<u64> },
}

/// Checks that `outputs` are the shards of one campaign, every shard exactly once, and combines
/// them. An error says which shard is missing or does not belong.
pub fn merge(outputs: Vec<Output>) -> Result<Merged, MergeError> {
    let first = outputs.first().ok_or(MergeError::NoOutput)?;
    let (seeds, count, scenarios) =
        (first.header.seeds.clone(), first.header.shard.count, first.header.scenarios.clone());
    let mut seen: BTreeMap<u64, PathBuf> = BTreeMap::new();
    for output in &outputs {
        let header = &output.header;
        if header.seeds != seeds || header.shard.count != count || header.scenarios != scenarios {
            return Err(MergeError::OtherCampaign {
                file: output.file.clone(),
                header: Box::new(header.clone()),
                first_file: first.file.clone(),
                first: Box::new(first.header.clone()),
            });
        }
        if let Some(other) = seen.insert(header.shard.index, output.file.clone()) {
            return Err(MergeError::GivenTwice { shard: header.shard, first_file: other, file: output.file.clone() });
        }
    }
    let missing: Vec<Shard> =
        (0..count).filter(|index| !seen.contains_key(index)).map(|index| Shard { index, count }).collect();
    if !missing.is_empty() {
        return Err(MergeError::Missing { missing, seeds });
    }
    let seeds_run = outputs.iter().map(|output| output.header.seeds_run).sum();
    let stopped_by_time = outputs.iter().any(|output| output.header.stopped_by_time);
    let mut all: Vec<FailureRecord> = outputs.into_iter().flat_map(|output| output.records).collect();
    let order: BTreeMap<&str, usize> = scenarios.iter().enumerate().map(|(i, name)| (name.as_str(), i)).collect();
    all.sort_by_key(|record| (order.get(record.scenario.as_str()).copied(), record.seed));
    let before = all.len();
    let mut kept = BTreeSet::new();
    all.retain(|record| {
        // Decisions have no order; their JSON is the same text exactly when they are equal.
        let trace = serde_json::to_string(&record.shrunk_trace).expect("decisions serialize");
        kept.insert((record.scenario.clone(), record.checker.clone(), trace))
    });
    Ok(Merged { seeds, shards: count, seeds_run, stopped_by_time, duplicates: before - all.len(), records: all })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shards_cover_the_range_once_in_near_equal_blocks() {
        for count in 1..=7 {
            let range = 5..103;
            let blocks: Vec<Range<u64>> = (0..count).map(|index| Shard { index, count }.seeds(&range)).collect();
            assert_eq!(blocks.first().unwrap().start, 5);
            assert_eq!(blocks.last().unwrap().end, 103);
            for pair in blocks.windows(2) {
                assert_eq!(pair[0].end, pair[1].start, "{blocks:?}");
            }
            let sizes: Vec<u64> = blocks.iter().map(|b| b.end - b.start).collect();
            assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1, "{sizes:?}");
        }
    }

    #[test]
    fn more_shards_than_seeds_leaves_some_shards_empty() {
        let blocks: Vec<Range<u64>> = (0..4).map(|index| Shard { index, count: 4 }.seeds(&(0..2))).collect();
        assert_eq!(blocks.iter().map(|b| b.end - b.start).sum::<u64>(), 2);
    }

    #[test]
    fn parses_i_of_n_and_refuses_the_rest() {
        assert_eq!(Shard::parse("2/4"), Ok(Shard { index: 2, count: 4 }));
        for bad in ["4/4", "1/0", "1", "a/2", "-1/2"] {
            assert_eq!(Shard::parse(bad), Err(BadShard { text: bad.to_string() }), "{bad}");
        }
    }

    fn output(index: u64, count: u64) -> Output {
        let header = CampaignHeader {
            seeds: 0..10,
            shard: Shard { index, count },
            scenarios: vec!["s".into()],
            seeds_run: 5,
            stopped_by_time: false,
        };
        Output { file: format!("f{index}").into(), header, records: Vec::new() }
    }

    fn failure(seed: u64, checker: &str, by_ms: u64) -> FailureRecord {
        FailureRecord {
            scenario: "s".into(),
            scenario_path: "s.toml".into(),
            seed,
            checker: checker.into(),
            detail: "d".into(),
            step: 1,
            tick_ms: 0,
            original_steps: 2,
            shrunk_trace: vec![crate::executor::Decision::ClockJump { by_ms }],
            timeline: Vec::new(),
            trace_file: format!("s-{seed}.jsonl").into(),
        }
    }

    #[test]
    fn the_same_checker_and_shrunk_trace_is_one_failure_kept_at_its_lowest_seed() {
        let mut first = output(0, 2);
        first.records = vec![failure(4, "S3", 5), failure(2, "S3", 7)];
        let mut second = output(1, 2);
        second.records = vec![failure(1, "S3", 5), failure(6, "S1", 5)];
        let merged = merge(vec![first, second]).unwrap();
        let kept: Vec<(u64, &str)> = merged.records.iter().map(|r| (r.seed, r.checker.as_str())).collect();
        assert_eq!(kept, vec![(1, "S3"), (2, "S3"), (6, "S1")]);
        assert_eq!(merged.duplicates, 1);
    }

    #[test]
    fn a_missing_or_doubled_shard_is_an_error() {
        let refused = |outputs| merge(outputs).unwrap_err().to_string();
        assert_eq!(
            refused(vec![output(0, 2)]),
            "shard 1/2 of --seeds 0..10 missing: its seeds would go unreported; give every shard's output"
        );
        assert_eq!(
            refused(vec![output(0, 2), output(0, 2)]),
            "shard 0/2 is given twice (f0 and f0): give each shard's output once"
        );
        assert_eq!(
            refused(vec![output(0, 2), output(1, 3)]),
            "f1 is shard 1/3 of --seeds 0..10 over 1 scenarios, but f0 is of --seeds 0..10 in 2 shards over 1 \
             scenarios: merge the outputs of one campaign"
        );
        assert_eq!(merge(vec![output(1, 2), output(0, 2)]).unwrap().seeds_run, 10);
    }
}
