//! Real ports and command implementations of the `wg` binary.

pub mod app;
pub mod commands;
pub mod config;
pub mod output;
pub mod real;
pub mod service;
pub mod smoke;
