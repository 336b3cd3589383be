//! Shared by the simulator's tests: loading the scenario folder, and the planted-bug table.
// Each test binary uses a different part of this module.
#![allow(dead_code)]

pub mod planted;

use std::path::{Path, PathBuf};
use wg_sim::scenario::{self, Scenario};

pub fn scenarios_folder() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

pub fn load(name: &str) -> Scenario {
    let path = scenarios_folder().join(format!("{name}.toml"));
    scenario::parse(&path).unwrap_or_else(|error| panic!("{error}"))
}
