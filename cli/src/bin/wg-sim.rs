//! `wg-sim`: run scenario files in the deterministic simulator, fuzz them, replay a failure.
//!
//! Exit codes: 0 every run passed; 1 a run failed (the failure block is printed); 2 a scenario
//! file (or trace) is malformed, or a mode is not available.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use wg_sim::executor::{self, RunOptions};
use wg_sim::runner;
use wg_sim::scenario::{self, Scenario, SchedulerKind};

#[derive(Parser)]
#[command(
    name = "wg-sim",
    about = "Deterministic simulation of wg-recover's recovery paths.",
    after_help = "\
Exit codes: 0 all runs passed, 1 a run failed (the failure is printed with a replay command),
2 a scenario file or trace is malformed."
)]
struct Cli {
    #[command(subcommand)]
    command: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Runs scenario files (or every *.toml of a folder) across seeds 0..N.
    Run {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Seeds per scenario (default: the scenario's `[sim] seeds`).
        #[arg(long)]
        seeds: Option<u64>,
        /// Runs each scenario once against real processes, the real `wg` (next to this binary)
        /// and a temp `.wg/`; faults only the simulator can make are skipped, visibly.
        #[arg(long)]
        real: bool,
        /// With --real: writes a JUnit report here.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
    },
    /// Runs many seeds of one scenario, with progress, and writes failing traces.
    Fuzz {
        scenario: PathBuf,
        /// A range A..B of seeds.
        #[arg(long, default_value = "0..1000")]
        seeds: String,
        #[arg(long, value_enum)]
        scheduler: Option<SchedulerArg>,
        /// Randomises per seed which fault kinds are on.
        #[arg(long)]
        swarm: bool,
        /// Stops after this long (e.g. 60s), whatever the seed range.
        #[arg(long)]
        time: Option<String>,
        /// Folder for failing traces.
        #[arg(long, default_value = "wg-sim-failures")]
        out: PathBuf,
    },
    /// Replays one seed (or a trace) and prints its timeline.
    Replay {
        scenario: PathBuf,
        #[arg(long)]
        seed: u64,
        #[arg(long)]
        trace: Option<PathBuf>,
        /// Run the seed twice and compare a hash of the state after every step; report the first
        /// step where the two runs differ (nondeterminism is itself a failure).
        #[arg(long)]
        determinism: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum SchedulerArg {
    Random,
    Pct,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Mode::Run { paths, seeds, real, junit } => run(&paths, seeds, real, junit),
        Mode::Fuzz { scenario, seeds, scheduler, swarm, time, out } => {
            fuzz(&scenario, &seeds, scheduler, swarm, time, &out)
        }
        Mode::Replay { scenario, seed, determinism: true, .. } => check_determinism(&scenario, seed),
        Mode::Replay { scenario, seed, trace, .. } => replay(&scenario, seed, trace.as_deref()),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("wg-sim: {message}");
            ExitCode::from(2)
        }
    }
}

fn load(path: &Path) -> Result<Scenario, String> {
    scenario::parse(path).map_err(|error| error.to_string())
}

fn run(paths: &[PathBuf], seeds: Option<u64>, real: bool, junit: Option<PathBuf>) -> Result<ExitCode, String> {
    if real {
        return Ok(wg_cli::smoke::run_real(paths, junit.as_deref()));
    }
    let files = scenario::scenario_files(paths)?;
    let scenarios = files.iter().map(|file| load(file)).collect::<Result<Vec<_>, _>>()?;
    let mut failed = false;
    for scenario in &scenarios {
        let count = seeds.unwrap_or(scenario.sim.seeds);
        let started = Instant::now();
        match runner::first_failure(scenario, 0..count, |_| {}) {
            Some(found) => {
                failed = true;
                let path = runner::default_trace_path(None, scenario, found.seed);
                runner::write_trace(&path, scenario, found.seed, &found.shrunk_trace).map_err(|e| e.to_string())?;
                print!("{}", runner::render_failure(scenario, &found, &path));
            }
            None => println!("ok   {:<32} {count} seeds in {:.2}s", scenario.name, started.elapsed().as_secs_f64()),
        }
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn parse_range(text: &str) -> Result<std::ops::Range<u64>, String> {
    let (start, end) = text.split_once("..").ok_or_else(|| format!("--seeds {text:?}: expected A..B"))?;
    let number = |n: &str| n.parse::<u64>().map_err(|_| format!("--seeds {text:?}: {n:?} is not a number"));
    Ok(number(start)?..number(end)?)
}

fn fuzz(
    path: &Path,
    seeds: &str,
    scheduler: Option<SchedulerArg>,
    swarm: bool,
    time: Option<String>,
    out: &Path,
) -> Result<ExitCode, String> {
    let scenario = load(path)?;
    let seeds = parse_range(seeds)?;
    let budget = time.map(|t| scenario::parse_duration_ms(&t).map(Duration::from_millis)).transpose()?;
    let started = Instant::now();
    let mut last_progress = Instant::now();
    let (mut ran, mut failures) = (0u64, 0u64);
    for seed in seeds.clone() {
        if budget.is_some_and(|budget| started.elapsed() >= budget) {
            break;
        }
        let mut options = RunOptions::for_scenario(&scenario, seed);
        match scheduler {
            Some(SchedulerArg::Random) => options.scheduler = SchedulerKind::Random,
            Some(SchedulerArg::Pct) => options.scheduler = SchedulerKind::Pct { depth: 3 },
            None => {}
        }
        if swarm {
            options.faults = runner::swarm_faults(seed);
        }
        ran += 1;
        if executor::run(&scenario, &options).failure.is_some() {
            failures += 1;
            let found = runner::run_and_shrink(&scenario, &options).expect("it failed a moment ago");
            let trace_path = runner::default_trace_path(Some(out), &scenario, seed);
            runner::write_trace(&trace_path, &scenario, seed, &found.shrunk_trace).map_err(|e| e.to_string())?;
            print!("{}", runner::render_failure(&scenario, &found, &trace_path));
        }
        if last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            let rate = ran as f64 / started.elapsed().as_secs_f64();
            eprintln!("fuzz {}: {ran} seeds, {rate:.0} seeds/s, {failures} failures", scenario.name);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "fuzz {}: {ran} seeds ({}..{}) in {elapsed:.2}s = {:.0} seeds/s, {failures} failures",
        scenario.name,
        seeds.start,
        seeds.start + ran,
        ran as f64 / elapsed.max(1e-9)
    );
    Ok(if failures > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn check_determinism(path: &Path, seed: u64) -> Result<ExitCode, String> {
    let scenario = load(path)?;
    match runner::determinism_check(&scenario, &RunOptions::for_scenario(&scenario, seed)) {
        Ok(()) => {
            println!(
                "deterministic: scenario={} seed={seed}: two runs, the same state after every step",
                scenario.name
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(difference) => {
            println!("FAIL scenario={} seed={seed} checker=determinism: {difference}", scenario.name);
            Ok(ExitCode::from(1))
        }
    }
}

fn replay(path: &Path, seed: u64, trace: Option<&Path>) -> Result<ExitCode, String> {
    let scenario = load(path)?;
    let options = RunOptions::for_scenario(&scenario, seed);
    let decisions = match trace {
        Some(trace) => Some(runner::read_trace(trace)?.1),
        None => None,
    };
    let report = match decisions {
        Some(decisions) => runner::replay(&scenario, &options, decisions, true),
        None => executor::run(&scenario, &RunOptions { record_timeline: true, ..options }),
    };
    println!("replay scenario={} seed={seed} steps={}", scenario.name, report.trace.len());
    for line in &report.timeline {
        println!("  {line}");
    }
    match &report.failure {
        Some(failure) => {
            println!(
                "FAIL checker={} step={} tick={}: {}",
                failure.checker,
                failure.step,
                executor::format_tick(failure.tick_ms),
                failure.detail
            );
            Ok(ExitCode::from(1))
        }
        None if report.invalid => {
            Err("the trace does not fit this scenario (a decision named an actor that could not run)".into())
        }
        None => {
            println!("ok");
            Ok(ExitCode::SUCCESS)
        }
    }
}
