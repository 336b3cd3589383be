//! The deterministic simulator of wg-recover (docs/design.md, Determinism): the real core operations
//! run as actors of a single-threaded executor against simulated ports, under a seeded
//! scheduler with injected faults, with the invariants checked after every step.
//!
//! - [`scenario`]: the scenario file format (shared with the real-process runner).
//! - [`world`]: the simulated clock, process table and store (the ports).
//! - [`actors`]: service loops, commands and agent behaviours as futures.
//! - [`executor`]: the scheduler, faults, phases and one run.
//! - [`checks`]: the invariants S1-S8, L1-L2 and expectations.
//! - [`runner`]: many seeds, fuzzing, shrinking, traces and failure reports.
//! - [`campaign`]: many seeds on several threads, with a time budget.
//! - [`coverage`]: which orders of conflicting commits random runs have shown.
//! - [`explore`]: every schedule within bounds (`wg-sim check`).

pub mod actors;
pub mod campaign;
pub mod checks;
pub mod coverage;
pub mod executor;
pub mod explore;
pub mod runner;
pub mod scenario;
pub mod world;
