//! The production ports: wall clock, real processes, the files of `.wg/`.

pub mod clock;
pub mod processes;
pub mod store;
