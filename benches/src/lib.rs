//! Benchmarks live in `benches/benches/` (issue 6).
