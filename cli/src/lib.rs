//! The `wg` and `wg-sim` binaries' library: the production ports on this system (`system`), the
//! commands, the service, and the runner of scenarios against real processes (`smoke`).

pub mod app;
pub mod commands;
pub mod config;
pub mod output;
pub mod service;
pub mod smoke;
pub mod system;
