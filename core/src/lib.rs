//! The pure core of wg-recover: the model of a workgraph `.wg/`, the ports through which it
//! touches the world, the operations (retry, kill, reaper, dispatcher, ...) and the invariants.
//!
//! Nothing here does I/O, reads the wall clock or starts a thread (`clippy.toml` enforces it):
//! production and the simulator run the very same functions behind different ports.

pub mod block_on;
mod commit_check;
pub mod graph;
pub mod identity;
pub mod invariants;
pub mod model;
pub mod ops;
pub mod ports;
pub mod registry;
pub mod settings;
pub mod time;

pub use block_on::block_on;
