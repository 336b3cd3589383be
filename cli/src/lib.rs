//! Real ports and command implementations of the `wg` binary.
