//! What a command prints: one human text and one JSON value, chosen by `--json`; errors print
//! once, at the top, with what to do next, and map to the exit codes documented in `--help`.

use serde_json::Value;
use std::fmt;
use std::process::ExitCode;
use wg_core::ops::OpError;
use wg_core::ports::StoreError;

pub struct Output {
    pub human: String,
    pub json: Value,
}

impl Output {
    pub fn new(human: impl Into<String>, json: Value) -> Self {
        Output { human: human.into(), json }
    }

    pub fn print(&self, json: bool) {
        if json {
            println!("{}", serde_json::to_string_pretty(&self.json).expect("JSON values serialize"));
        } else if !self.human.is_empty() {
            println!("{}", self.human.trim_end());
        }
    }
}

/// Exit code 1: the command could not do what was asked. (2 is clap's, for bad usage.)
pub const EXIT_FAILED: u8 = 1;

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
            println!("{}", serde_json::to_string_pretty(&body).expect("JSON values serialize"));
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
            StoreError::Io(_) => CliError::new(error.to_string()),
        }
    }
}
