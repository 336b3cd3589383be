//! What can stop the real-process runner from setting up a scenario: the temp `.wg/` it writes
//! and the processes it starts (`wg init`, the agents, the squatters, the service, the steps).
//! The run reports it as the scenario's failure, so each says which file or program it was.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// An I/O call on a file or folder of the run failed.
    #[error("cannot {action} {}: {source}", path.display())]
    File { action: &'static str, path: PathBuf, source: io::Error },
    /// A process could not be spawned.
    #[error("cannot start {program:?}: {source}")]
    CannotStart { program: OsString, source: io::Error },
    /// The `wg` binary under test could not be run.
    #[error("cannot run {}: {source}", program.display())]
    CannotRun { program: PathBuf, source: io::Error },
    #[error("wg init failed: {stderr}")]
    InitFailed { stderr: String },
    /// `wg service run` exited, or wrote no pid file in time; the end of its output says why.
    #[error("wg service run did not start: {output_tail}")]
    ServiceDidNotStart { output_tail: String },
}

impl SetupError {
    pub fn file(action: &'static str, path: &Path, source: io::Error) -> SetupError {
        SetupError::File { action, path: path.to_path_buf(), source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_names_its_file_or_program() {
        let missing = || io::Error::from(io::ErrorKind::NotFound);
        let file = SetupError::file("write", Path::new("/tmp/x/graph.jsonl"), missing());
        assert_eq!(file.to_string(), "cannot write /tmp/x/graph.jsonl: entity not found");
        let start = SetupError::CannotStart { program: "sh".into(), source: missing() };
        assert_eq!(start.to_string(), r#"cannot start "sh": entity not found"#);
    }
}
