//! Shared by the simulator's tests: loading the scenario folder.
// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use wg_sim::scenario::{self, Scenario};

pub fn scenarios_folder() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

pub fn load(name: &str) -> Scenario {
    let path = scenarios_folder().join(format!("{name}.toml"));
    scenario::parse(&path).unwrap_or_else(|error| panic!("{error}"))
}

/// The planted-bug campaigns: which bug, in which scenario, found by which checker, within how
/// many seeds. The same campaigns must find nothing without the bug.
///
/// Bug 4 (split reap) used to be found by S6 (a dead entry beside an in-progress task). Since
/// 3dc0e4b that state is legitimate and transient: `wg agents kill` leaves it on purpose and the
/// reaper's orphan sweep settles it. The planted bug's second transaction now re-queues without
/// checking the task is still the dead agent's, and S3 catches it when a retry re-queued the
/// task in between (a second count with no re-queue); S6 or S1 would catch a dispatch in between.
pub const CAMPAIGNS: [(&str, &str, u64); 5] = [
    ("retry_vs_reaper", "S6", 200),
    ("retry_while_done", "S4", 200),
    ("two_retries", "S3", 200),
    ("retry_vs_reaper", "S3", 200),
    ("pid_reuse_not_signalled", "S2", 200),
];

/// The planted bugs (feature `planted-bugs`), in the order of [`CAMPAIGNS`]: bug `i` is found by
/// campaign `i`.
#[cfg(feature = "planted-bugs")]
pub const BUGS: [wg_core::settings::PlantedBug; 5] = [
    wg_core::settings::PlantedBug::UnconditionalRetry,
    wg_core::settings::PlantedBug::ReaperUnchecked,
    wg_core::settings::PlantedBug::DoubleCountRetries,
    // Found by S3 since the orphan sweep (3dc0e4b): see CAMPAIGNS.
    wg_core::settings::PlantedBug::SplitReap,
    wg_core::settings::PlantedBug::SignalWithoutIdentity,
];
