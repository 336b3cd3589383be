//! The production ports, on this system: the wall clock, real processes, the files of `.wg/`.
//! ("Real" in this crate means only the scenario runner's real processes: `wg-sim run --real`.)

pub mod clock;
pub mod processes;
pub mod store;
