//! Shared set-up of the criterion benchmarks in `benches/benches/` (issue 6): the real `wg`
//! binary, temp `.wg/` folders, agent processes started and ended by pid, a child's peak memory
//! through `wait4`, synthetic graphs, and the one-line summaries each bench prints.
//!
//! Nothing here signals a process it did not start, nor pid 0 or 1, nor the bench's own group.

pub mod graphs;
pub mod procs;
pub mod summary;
pub mod workgraph;

pub use procs::{AgentProcess, Finished};
pub use summary::Samples;
pub use workgraph::{wg_binary, TempWg};
