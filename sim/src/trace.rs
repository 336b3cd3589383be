//! Trace files: the shrunk decisions of a failing seed as JSONL, with a header that names the
//! scenario file and the seed, so that `wg-sim replay --trace F` needs nothing else.
//!
//! Format: the first line is `{"scenario": "<path as given to wg-sim>", "seed": N}`; every other
//! line is one [`Decision`]. That header has been written since traces existed, so every trace
//! file ever written reads; a file with no header line (decisions only) reads too, and then the
//! caller must name the scenario and the seed.

use crate::executor::Decision;
use crate::scenario::Scenario;
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// The folder failing traces go to unless `--out` names another, for `run` and `fuzz` alike:
/// beside the command, where a person finds it and CI can archive it (the system's temp dir is
/// neither).
pub const DEFAULT_FOLDER: &str = "wg-sim-failures";

/// A trace file as read: what its header says, and its decisions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceFile {
    /// The scenario file, as the command that wrote the trace named it.
    pub scenario: Option<PathBuf>,
    pub seed: Option<u64>,
    pub decisions: Vec<Decision>,
}

/// Where the trace of `seed` of `scenario` goes in `folder`.
pub fn path_in(folder: &Path, scenario: &Scenario, seed: u64) -> PathBuf {
    folder.join(format!("{}-{seed}.jsonl", scenario.name))
}

/// Writes the header and one decision a line, creating the folder if needed.
pub fn write(path: &Path, scenario: &Scenario, seed: u64, trace: &[Decision]) -> std::io::Result<()> {
    if let Some(folder) = path.parent() {
        std::fs::create_dir_all(folder)?;
    }
    let header = serde_json::json!({"scenario": scenario.path.display().to_string(), "seed": seed});
    let mut text = header.to_string();
    text.push('\n');
    for decision in trace {
        text.push_str(&serde_json::to_string(decision).expect("decisions serialize"));
        text.push('\n');
    }
    std::fs::write(path, text)
}

/// Why a trace file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("cannot read the trace {}: {source}", path.display())]
    CannotOpen { path: PathBuf, source: std::io::Error },
    #[error("{}: {source}", path.display())]
    CannotRead { path: PathBuf, source: std::io::Error },
    #[error("{}:{line}: not a trace line ({source}); is this a file wg-sim wrote?", path.display())]
    NotJson { path: PathBuf, line: usize, source: serde_json::Error },
    #[error("{}:{line}: not a decision ({source})", path.display())]
    NotADecision { path: PathBuf, line: usize, source: serde_json::Error },
}

/// Reads a trace written by [`write`] (or a headerless list of decisions).
pub fn read(path: &Path) -> Result<TraceFile, TraceError> {
    let file =
        std::fs::File::open(path).map_err(|source| TraceError::CannotOpen { path: path.to_path_buf(), source })?;
    let mut trace = TraceFile { scenario: None, seed: None, decisions: Vec::new() };
    for (number, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|source| TraceError::CannotRead { path: path.to_path_buf(), source })?;
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(&line).map_err(|source| TraceError::NotJson {
            path: path.to_path_buf(),
            line: number + 1,
            source,
        })?;
        if number == 0 && value.get("k").is_none() {
            trace.seed = value["seed"].as_u64();
            trace.scenario = value["scenario"].as_str().map(PathBuf::from);
            continue;
        }
        let decision = serde_json::from_value(value).map_err(|source| TraceError::NotADecision {
            path: path.to_path_buf(),
            line: number + 1,
            source,
        })?;
        trace.decisions.push(decision);
    }
    Ok(trace)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("wg-sim-trace-{}-{name}", std::process::id()))
    }

    #[test]
    fn reads_the_header_and_the_decisions() {
        let file = scratch("header.jsonl");
        std::fs::write(
            &file,
            "{\"scenario\":\"scenarios/two_retries.toml\",\"seed\":42}\n{\"k\":\"clock-jump\",\"by_ms\":5}\n",
        )
        .unwrap();
        let trace = read(&file).unwrap();
        let _ = std::fs::remove_file(&file);
        assert_eq!(trace.scenario, Some(PathBuf::from("scenarios/two_retries.toml")));
        assert_eq!(trace.seed, Some(42));
        assert_eq!(trace.decisions, vec![Decision::ClockJump { by_ms: 5 }]);
    }

    #[test]
    fn a_trace_without_a_header_reads_with_neither_scenario_nor_seed() {
        let file = scratch("bare.jsonl");
        std::fs::write(&file, "{\"k\":\"reuse-pid\",\"pid\":101}\n").unwrap();
        let trace = read(&file).unwrap();
        let _ = std::fs::remove_file(&file);
        assert_eq!((trace.scenario, trace.seed), (None, None));
        assert_eq!(trace.decisions, vec![Decision::ReusePid { pid: 101 }]);
    }

    #[test]
    fn a_line_that_is_not_json_names_the_file_and_line() {
        let file = scratch("bad.jsonl");
        std::fs::write(&file, "{\"seed\":1}\nnot json\n").unwrap();
        let error = read(&file).unwrap_err();
        let _ = std::fs::remove_file(&file);
        assert!(matches!(error, TraceError::NotJson { line: 2, .. }), "{error:?}");
        assert!(error.to_string().contains("bad.jsonl:2: not a trace line"), "{error}");
    }
}
