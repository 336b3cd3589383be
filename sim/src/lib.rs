//! The deterministic simulator (issue 4). Being built.
