//! The deterministic simulator of wg-recover (docs/design.md, Determinism): the real core operations
//! run as actors of a single-threaded executor against simulated ports, under a seeded
//! scheduler with injected faults, with the invariants checked after every step. ARCHITECTURE.md
//! has the map, and what each module may import.
//!
//! One run:
//! - [`world`]: the simulated ports (clock, process table, store), each its own module, wired
//!   together; it records what the checkers must see and never runs them.
//! - [`actors`]: service loops, commands and agent behaviours as futures.
//! - [`decision`]: one step's decision (an actor runs, or a fault), one entry of a trace.
//! - [`schedule`]: where decisions come from: seeded (random walk, PCT), a trace, or a chooser.
//! - `faults`: which faults can be injected at a step, and injecting one.
//! - [`checks`]: the invariants S1-S8, L1-L2 and expectations, on what the world recorded.
//! - `quiescence`: when a run may end early.
//! - [`timeline`]: a run's steps as records and lines.
//! - [`executor`]: the run loop: phases, polling, checks after each step, end checks.
//!
//! Around it:
//! - [`scenario`]: the scenario file format (shared with the real-process runner).
//! - [`runner`]: many seeds, fuzzing, shrinking, traces and failure reports.
//! - [`campaign`]: many seeds on several threads, with a time budget.
//! - [`session`]: a `wg-sim run` or `fuzz` over many scenarios: budgets, traces, the summary.
//! - [`trace`]: trace files (a failing seed's shrunk decisions).
//! - [`report`]: failure records, failure blocks, the grouped report.
//! - [`shard`]: splitting a seed range over machines, their JSONL outputs, merging them.
//! - [`junit`]: JUnit XML for CI.
//! - [`html`]: a failure drawn as a swimlane timeline.
//! - [`progress`]: the progress display of a long campaign on a terminal.
//! - [`coverage`]: which orders of conflicting commits random runs have shown.
//! - [`explore`]: every schedule within bounds (`wg-sim check`).

pub mod actors;
pub mod campaign;
pub mod checks;
pub mod coverage;
pub mod decision;
pub mod executor;
pub mod explore;
mod faults;
pub mod html;
pub mod junit;
mod planted;
pub mod progress;
mod quiescence;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod schedule;
pub mod session;
pub mod shard;
pub mod timeline;
pub mod trace;
pub mod world;
