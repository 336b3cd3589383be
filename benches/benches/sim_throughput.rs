//! Simulated seeds per second of `scenarios/retry_vs_reaper.toml`: one seed is one whole run
//! of the scenario (safety phase with the scenario's faults, then liveness) through the real
//! core operations, as `wg-sim run` does it, without shrinking (no seed is expected to fail).
//!
//! Criterion reports the time per seed and its throughput in seeds ("elem") per second; the
//! summary line runs the scenario's own seed count once and prints seeds per second.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use std::cell::Cell;
use std::path::Path;
use std::time::{Duration, Instant};
use wg_sim::executor::{self, RunOptions};
use wg_sim::scenario::{self, Scenario};

fn load() -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/retry_vs_reaper.toml");
    scenario::parse(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// Runs one seed; returns whether it passed.
fn run_seed(scenario: &Scenario, seed: u64) -> bool {
    executor::run(scenario, &RunOptions::for_scenario(scenario, seed)).failure.is_none()
}

fn sim_throughput(c: &mut Criterion) {
    let scenario = load();
    let mut group = c.benchmark_group("sim_throughput");
    group.sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(1));
    let next_seed = Cell::new(0u64);
    let mut ran = false;
    group.bench_function("retry_vs_reaper", |bencher| {
        ran = true;
        bencher.iter(|| {
            let seed = next_seed.get();
            next_seed.set(seed + 1);
            black_box(run_seed(&scenario, seed))
        })
    });
    group.finish();
    if !ran {
        return;
    }
    let seeds = scenario.sim.seeds;
    let started = Instant::now();
    let failures = (0..seeds).filter(|&seed| !run_seed(&scenario, seed)).count();
    let elapsed = started.elapsed();
    eprintln!(
        "SUMMARY sim_throughput/retry_vs_reaper: {seeds} seeds (the scenario's own count) in {:.2} s = {:.0} seeds/s \
         on one core; {failures} failed",
        elapsed.as_secs_f64(),
        seeds as f64 / elapsed.as_secs_f64()
    );
}

criterion_group!(benches, sim_throughput);
criterion_main!(benches);
