//! `wg-sim`: run scenario files in the deterministic simulator, fuzz them, replay a failure.
//!
//! Exit codes: 0 every run passed; 1 a run failed (the failure block is printed); 2 a scenario
//! file (or trace) is malformed, a mode is not available, or the request would run nothing.

use clap::{Parser, Subcommand, ValueEnum};
use std::io::IsTerminal;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use wg_sim::campaign;
use wg_sim::executor::{self, RunOptions};
use wg_sim::runner;
use wg_sim::scenario::{self, Scenario, SchedulerKind};

#[derive(Parser)]
#[command(
    name = "wg-sim",
    version,
    about = "Deterministic simulation of wg-recover's recovery paths.",
    after_help = "\
Exit codes: 0 all runs passed, 1 a run failed (the failure is printed with a replay command),
2 a scenario file or trace is malformed, or the request would run nothing (an empty folder, an
empty seed range)."
)]
struct Cli {
    #[command(subcommand)]
    command: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Runs scenario files (or every *.toml of a folder) across seeds 0..N; reports the lowest
    /// failing seed of each scenario.
    Run {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Seeds per scenario (default: the scenario's `[sim] seeds`). With --time, the most
        /// seeds per scenario (default: no bound but the time).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        seeds: Option<u64>,
        #[command(flatten)]
        campaign: CampaignArgs,
        /// Runs each scenario once against real processes, the real `wg` (next to this binary)
        /// and a temp `.wg/`; faults only the simulator can make are skipped, visibly.
        #[arg(long, conflicts_with_all = ["seeds", "jobs", "time"])]
        real: bool,
        /// With --real: writes a JUnit report here.
        #[arg(long, value_name = "FILE", requires = "real")]
        junit: Option<PathBuf>,
    },
    /// Runs many seeds of scenario files (or of every *.toml of a folder), with progress, and
    /// reports every failing seed (in seed order) and writes its trace.
    Fuzz {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// A range A..B of seeds, for each scenario.
        #[arg(long, default_value = "0..1000")]
        seeds: String,
        #[command(flatten)]
        campaign: CampaignArgs,
        #[arg(long, value_enum)]
        scheduler: Option<SchedulerArg>,
        /// Randomises per seed which fault kinds are on.
        #[arg(long)]
        swarm: bool,
        /// Folder for failing traces.
        #[arg(long, default_value = "wg-sim-failures")]
        out: PathBuf,
    },
    /// Explores every schedule of scenario files within bounds, at most K preemptions and N
    /// injected faults each, and stops at the first violation (docs/simulation-check.md).
    Check {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Per schedule: switches away from an actor that could have gone on.
        #[arg(long, value_name = "K", default_value_t = 2)]
        preemptions: u32,
        /// Per schedule: faults of the scenario's `[sim] faults` kinds, 0 to 6.
        #[arg(long, value_name = "N", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=executor::FAULTS_MAX as i64))]
        faults: u32,
        /// Stops each scenario after its share of D; it is then reported incomplete.
        #[arg(long, value_name = "D", value_parser = parse_time)]
        time: Option<Duration>,
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

/// How many threads, and for how long: shared by `run` and `fuzz`.
#[derive(clap::Args)]
struct CampaignArgs {
    /// Threads running seeds (default: one per core). Results do not depend on it.
    #[arg(long, value_name = "N", value_parser = parse_jobs)]
    jobs: Option<NonZeroUsize>,
    /// A wall-time budget for all scenarios together (e.g. 60s, 2m). Each scenario gets an equal
    /// share of what is left when it starts, so one that finishes its seeds early leaves its time
    /// to the next ones; a seed started in time always finishes.
    #[arg(long, value_name = "D", value_parser = parse_time)]
    time: Option<Duration>,
}

#[derive(Clone, Copy, ValueEnum)]
enum SchedulerArg {
    Random,
    Pct,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Mode::Run { paths, real: true, junit, .. } => Ok(wg_cli::smoke::run_real(&paths, junit.as_deref())),
        Mode::Run { paths, seeds, campaign, .. } => run(&paths, seeds, &campaign),
        Mode::Fuzz { paths, seeds, campaign, scheduler, swarm, out } => {
            fuzz(&paths, &seeds, &campaign, scheduler, swarm, &out)
        }
        Mode::Check { paths, preemptions, faults, time, out } => check(&paths, preemptions, faults, time, &out),
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

fn load_all(paths: &[PathBuf]) -> Result<Vec<Scenario>, String> {
    let files = scenario::scenario_files(paths)?;
    if files.is_empty() {
        return Err(format!("no *.toml scenario file in {}; name a scenario file or a folder of them", show(paths)));
    }
    files.iter().map(|file| load(file)).collect()
}

fn show(paths: &[PathBuf]) -> String {
    paths.iter().map(|path| path.display().to_string()).collect::<Vec<_>>().join(", ")
}

fn parse_jobs(text: &str) -> Result<NonZeroUsize, String> {
    // clap shows the value given beside this message.
    text.parse::<NonZeroUsize>()
        .map_err(|_| "give a number of threads, 1 or more, or leave --jobs out for one per core".into())
}

fn parse_time(text: &str) -> Result<Duration, String> {
    scenario::parse_duration_ms(text).map(Duration::from_millis)
}

fn run(paths: &[PathBuf], seeds: Option<u64>, campaign: &CampaignArgs) -> Result<ExitCode, String> {
    let scenarios = load_all(paths)?;
    let mut clock = BudgetClock::start(campaign, scenarios.len());
    let mut tally = Tally::start();
    for scenario in &scenarios {
        // With a time budget and no --seeds, the time is the only bound.
        let default_count = if campaign.time.is_some() { u64::MAX } else { scenario.sim.seeds };
        let budget = clock.next_budget(0..seeds.unwrap_or(default_count));
        let started = Instant::now();
        let outcome = campaign::first_failure(scenario, &budget, |_| {}, progress_line(&scenario.name));
        let elapsed = started.elapsed();
        tally.add(&outcome);
        match outcome.failures.first() {
            Some(found) => {
                let path = runner::default_trace_path(None, scenario, found.seed);
                print!("{}", render_with_trace(scenario, found, &path)?);
            }
            None => println!("{}{}", scenario_line("ok  ", &scenario.name, &outcome, elapsed), time_note(&outcome)),
        }
        println!("     {}", outcome.coverage);
    }
    println!("{}", tally.line(scenarios.len(), budget_jobs(campaign)));
    Ok(tally.exit_code())
}

fn parse_range(text: &str) -> Result<std::ops::Range<u64>, String> {
    let (start, end) = text.split_once("..").ok_or_else(|| format!("--seeds {text:?}: expected A..B"))?;
    let number = |n: &str| n.parse::<u64>().map_err(|_| format!("--seeds {text:?}: {n:?} is not a number"));
    let range = number(start)?..number(end)?;
    if range.is_empty() {
        return Err(format!("--seeds {text:?} runs no seed: A must be less than B (B is excluded)"));
    }
    Ok(range)
}

fn fuzz(
    paths: &[PathBuf],
    seeds: &str,
    campaign: &CampaignArgs,
    scheduler: Option<SchedulerArg>,
    swarm: bool,
    out: &Path,
) -> Result<ExitCode, String> {
    let seeds = parse_range(seeds)?;
    let scenarios = load_all(paths)?;
    let tune = |options: &mut RunOptions| {
        match scheduler {
            Some(SchedulerArg::Random) => options.scheduler = SchedulerKind::Random,
            Some(SchedulerArg::Pct) => options.scheduler = SchedulerKind::Pct { depth: 3 },
            None => {}
        }
        if swarm {
            options.faults = runner::swarm_faults(options.seed);
        }
    };
    let mut clock = BudgetClock::start(campaign, scenarios.len());
    let mut tally = Tally::start();
    for scenario in &scenarios {
        let budget = clock.next_budget(seeds.clone());
        let started = Instant::now();
        let outcome = campaign::every_failure(scenario, &budget, tune, progress_line(&scenario.name));
        let elapsed = started.elapsed();
        tally.add(&outcome);
        for found in &outcome.failures {
            let path = runner::default_trace_path(Some(out), scenario, found.seed);
            print!("{}", render_with_trace(scenario, found, &path)?);
        }
        let verdict = if outcome.failures.is_empty() { "ok  " } else { "FAIL" };
        let ran_to = seeds.start + outcome.seeds_run;
        let line = scenario_line(verdict, &scenario.name, &outcome, elapsed);
        println!("{line}, seeds {}..{ran_to}, {} failing{}", seeds.start, outcome.failures.len(), time_note(&outcome));
        println!("     {}", outcome.coverage);
    }
    println!("{}", tally.line(scenarios.len(), budget_jobs(campaign)));
    Ok(tally.exit_code())
}

/// Writes the shrunk trace of `found` to `path` and returns its failure block.
fn render_with_trace(scenario: &Scenario, found: &runner::Found, path: &Path) -> Result<String, String> {
    runner::write_trace(path, scenario, found.seed, &found.shrunk_trace).map_err(|error| {
        format!(
            "cannot write the trace of seed {} to {}: {error}; pass --out to pick another folder",
            found.seed,
            path.display()
        )
    })?;
    Ok(runner::render_failure(scenario, found, path))
}

/// `ok   <name>  <seeds> seeds in <s>s (<rate> seeds/s)`.
fn scenario_line(verdict: &str, name: &str, outcome: &campaign::Outcome, elapsed: Duration) -> String {
    format!(
        "{verdict} {name:<32} {} seeds in {:.2}s ({:.0} seeds/s)",
        outcome.seeds_run,
        elapsed.as_secs_f64(),
        rate_per_s(outcome.seeds_run, elapsed)
    )
}

/// Says that the scenario's share of --time, not its seed count, ended it.
fn time_note(outcome: &campaign::Outcome) -> &'static str {
    match outcome.out_of_time_at {
        Some(_) => "; stopped by --time",
        None => "",
    }
}

fn rate_per_s(seeds: u64, elapsed: Duration) -> f64 {
    seeds as f64 / elapsed.as_secs_f64().max(1e-9)
}

fn budget_jobs(campaign: &CampaignArgs) -> NonZeroUsize {
    campaign.jobs.unwrap_or_else(campaign::default_jobs)
}

/// Progress on stderr, at most once a second (the campaign's pace), and only for a person
/// watching: in a log it would be noise.
fn progress_line(name: &str) -> impl Fn(campaign::Progress) + '_ {
    let to_terminal = std::io::stderr().is_terminal();
    move |progress| {
        if to_terminal {
            let rate = rate_per_s(progress.seeds_run, progress.elapsed);
            eprintln!("{name}: {} seeds, {rate:.0} seeds/s, failures {}", progress.seeds_run, progress.failures);
        }
    }
}

/// Hands each scenario its budget: the threads, and its share of the time left.
struct BudgetClock {
    jobs: NonZeroUsize,
    end: Option<Instant>,
    scenarios_left: usize,
}

impl BudgetClock {
    fn start(campaign: &CampaignArgs, scenarios: usize) -> BudgetClock {
        let end = campaign.time.map(|time| Instant::now() + time);
        BudgetClock { jobs: budget_jobs(campaign), end, scenarios_left: scenarios }
    }

    fn next_budget(&mut self, seeds: std::ops::Range<u64>) -> campaign::Budget {
        let deadline = self.end.map(|end| campaign::share_of(end, Instant::now(), self.scenarios_left));
        self.scenarios_left = self.scenarios_left.saturating_sub(1);
        campaign::Budget { seeds, jobs: self.jobs, deadline }
    }
}

/// Totals over the scenarios of one command, for its last line.
struct Tally {
    seeds_run: u64,
    failures: u64,
    started: Instant,
}

impl Tally {
    fn start() -> Tally {
        Tally { seeds_run: 0, failures: 0, started: Instant::now() }
    }

    fn add(&mut self, outcome: &campaign::Outcome) {
        self.seeds_run += outcome.seeds_run;
        self.failures += outcome.failures.len() as u64;
    }

    /// `total: scenarios <n>, seeds <n> in <s>s (<rate> seeds/s), failures <n>, jobs <n>`;
    /// a failure is a failure block printed above.
    fn line(&self, scenarios: usize, jobs: NonZeroUsize) -> String {
        let elapsed = self.started.elapsed();
        format!(
            "total: scenarios {scenarios}, seeds {} in {:.2}s ({:.0} seeds/s), failures {}, jobs {jobs}",
            self.seeds_run,
            elapsed.as_secs_f64(),
            rate_per_s(self.seeds_run, elapsed),
            self.failures
        )
    }

    fn exit_code(&self) -> ExitCode {
        if self.failures > 0 {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        }
    }
}

fn check(
    paths: &[PathBuf],
    preemptions: u32,
    faults: u32,
    time: Option<Duration>,
    out: &Path,
) -> Result<ExitCode, String> {
    let scenarios = load_all(paths)?;
    let end = time.map(|time| Instant::now() + time);
    let mut failed = false;
    for (index, scenario) in scenarios.iter().enumerate() {
        let deadline = end.map(|end| campaign::share_of(end, Instant::now(), scenarios.len() - index));
        let bounds = wg_sim::explore::Bounds { preemptions, faults, deadline, prune: true };
        let (text, failure) = wg_sim::explore::report::check(scenario, &bounds, out)?;
        print!("{text}");
        failed |= failure;
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
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
