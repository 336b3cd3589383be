//! The simulator's planted-bug hook, the same `planted!` as the core's (`wg_core`'s
//! `ops/planted.rs`, which explains the idea): `planted!(settings, Bug => branch)` runs `branch`
//! when `settings` plant `Bug`, and expands to nothing without the `planted-bugs` feature.
//!
//! The simulator hooks one bug, in its process port: `SignalWithoutIdentity` (signalling a pid
//! without asking whose it is now, `world/processes.rs`). The campaigns that must find each bug
//! are one table, `tests/common/planted.rs`.

#[cfg(feature = "planted-bugs")]
macro_rules! planted {
    ($settings:expr, $bug:ident => $branch:expr) => {
        if $settings.planted_bug == Some(wg_core::settings::PlantedBug::$bug) {
            $branch;
        }
    };
}

#[cfg(not(feature = "planted-bugs"))]
macro_rules! planted {
    ($settings:expr, $bug:ident => $branch:expr) => {};
}

pub(crate) use planted;
