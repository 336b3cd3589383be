//! What a command prints: one human text and one JSON value, chosen by `--json`; errors print
//! once, at the top, with what to do next, and map to the exit codes documented in `--help`.

use serde_json::Value;
use std::borrow::Cow;
use std::fmt;
use std::io::{self, Write};
use std::process::ExitCode;
use wg_core::ops::OpError;
use wg_core::ports::StoreError;

pub struct Output {
    pub human: String,
    json: Json,
    /// The exit code after printing: 0, or an answer such as [`EXIT_NOT_RUNNING`].
    pub exit_code: u8,
}

/// The JSON answer, or how to build it: `wg list` of a large graph would spend most of its time
/// and memory building a JSON value nobody asked for.
enum Json {
    Built(Value),
    Deferred(Box<dyn Fn() -> Value>),
}

impl Output {
    pub fn new(human: impl Into<String>, json: Value) -> Self {
        Output { human: human.into(), json: Json::Built(json), exit_code: 0 }
    }

    /// An output whose JSON is built only if `--json` asks for it.
    pub fn deferred(human: impl Into<String>, json: impl Fn() -> Value + 'static) -> Self {
        Output { human: human.into(), json: Json::Deferred(Box::new(json)), exit_code: 0 }
    }

    /// The same output, answered with `exit_code` instead of 0.
    pub fn with_exit_code(self, exit_code: u8) -> Self {
        Output { exit_code, ..self }
    }

    /// Prints the output and says how `wg` exits: see [`exit_after_printing`].
    pub fn print(&self, json: bool) -> ExitCode {
        let printed = if json {
            let json = match &self.json {
                Json::Built(value) => Cow::Borrowed(value),
                Json::Deferred(build) => Cow::Owned(build()),
            };
            write_stdout(&serde_json::to_string_pretty(&*json).expect("JSON values serialize"))
        } else if !self.human.is_empty() {
            write_stdout(self.human.trim_end())
        } else {
            Ok(())
        };
        exit_after_printing(printed, self.exit_code)
    }
}

/// Writes `text` and a newline to stdout, and flushes, so a failed write is seen here.
fn write_stdout(text: &str) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{text}")?;
    stdout.flush()
}

/// The exit code of a command that succeeded (`exit_code`), once its output is printed. A reader that closed
/// the pipe (`wg list | head -1`) is a normal end: exit 0, quietly, as ripgrep does. The command
/// did what was asked, and a 141 would fail `set -o pipefail` scripts for reading only the first
/// line. Any other write error is reported, with exit 1.
pub fn exit_after_printing(printed: io::Result<()>, exit_code: u8) -> ExitCode {
    match printed {
        Ok(()) => ExitCode::from(exit_code),
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => ExitCode::from(exit_code),
        Err(error) => {
            eprintln!("error: the command succeeded, but its output could not be written: {error}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// For `wg-sim`, which prints a report as it goes: a write that failed ends the process here. A
/// reader that closed the pipe (`wg-sim run scenarios/ | head -1`) is a normal, quiet end: nobody
/// reads the rest, so running it is wasted; the exit code is 1 if a failure was printed before,
/// else 0. Any other write error is reported, with exit 2.
pub fn end_if_unwritten(printed: io::Result<()>, failure_printed: bool) {
    match printed {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => std::process::exit(i32::from(failure_printed)),
        Err(error) => {
            eprintln!("wg-sim: cannot write to stdout: {error}");
            std::process::exit(2)
        }
    }
}

/// Exit code 1: the command could not do what was asked. (2 is clap's, for bad usage.)
pub const EXIT_FAILED: u8 = 1;

/// Exit code 3: `wg service status` found no service running (as `systemctl is-active` and LSB
/// init scripts' `status` answer).
pub const EXIT_NOT_RUNNING: u8 = 3;

#[derive(Debug)]
pub struct CliError {
    pub message: String,
}

impl CliError {
    pub fn new(message: impl Into<String>) -> Self {
        CliError { message: message.into() }
    }

    pub fn report(&self, json: bool) -> ExitCode {
        if json {
            let body = serde_json::json!({ "ok": false, "error": self.message });
            // The exit code and stderr carry the failure even when no one reads stdout.
            let _ = write_stdout(&serde_json::to_string_pretty(&body).expect("JSON values serialize"));
        }
        eprintln!("error: {}", self.message);
        ExitCode::from(EXIT_FAILED)
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<OpError> for CliError {
    fn from(error: OpError) -> Self {
        match error {
            OpError::Store(store) => store.into(),
            other => CliError::new(other.to_string()),
        }
    }
}

impl From<StoreError> for CliError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Corrupt { .. } => CliError::new(format!(
                "{error}\n  nothing was written; fix or remove that line, then run the command again"
            )),
            _ => CliError::new(error.to_string()),
        }
    }
}
