//! `wg quickstart`: the printed guide. The text lives in `quickstart.txt`, wrapped to 80 columns;
//! `cli/tests/quickstart.rs` checks that every `wg ...` line in it parses.

use crate::output::{CliError, Output};
use serde_json::json;

/// The guide, as `wg quickstart` prints it.
pub const TEXT: &str = include_str!("../quickstart.txt");

pub fn quickstart() -> Result<Output, CliError> {
    Ok(Output::new(TEXT, json!({"ok": true, "text": TEXT})))
}
