//! `wg-sim`: run scenario files in the deterministic simulator, fuzz them, replay a failure, merge
//! the outputs of sharded campaigns. The work is in `wg_sim` (session, report, shard, junit,
//! html); this file parses arguments and prints.
//!
//! Exit codes: 0 every run passed; 1 a run failed (the failure block is printed); 2 a scenario
//! file (or trace) is malformed, a mode is not available, or the request would run nothing.

use clap::{Parser, Subcommand, ValueEnum};
use std::num::NonZeroUsize;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use std::time::Instant;
use wg_sim::executor::{self, RunOptions};
use wg_sim::progress::Progress;
use wg_sim::report::{self, FailureRecord};
use wg_sim::scenario::{self, Scenario, SchedulerKind};
use wg_sim::session::{self, Hunt, Plan, ScenarioResult};
use wg_sim::shard::{self, CampaignHeader, Shard};
use wg_sim::{campaign, html, junit, runner, trace};

/// A simulated run allocates and frees many small values; mimalloc does that faster than the
/// system allocator (benches/README.md, "Simulator throughput"). Nothing here depends on which
/// allocator runs: outcomes per seed are the same with either.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "wg-sim",
    version,
    about = "Deterministic simulation of wg-recover's recovery paths.",
    after_help = "\
Exit codes: 0 all runs passed, 1 a run failed (the failure is printed with a replay command),
2 a scenario file or trace is malformed, or the request would run nothing (an empty folder, an
empty seed range). A reader that closes the pipe early (wg-sim run scenarios/ | head -1) ends
the command quietly. Guide: docs/simulation.md."
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
        #[arg(long, conflicts_with_all = ["seeds", "jobs", "time", "out"])]
        real: bool,
        /// Writes a JUnit XML report here: one testcase per scenario, a failure's block and
        /// replay command in its <failure>.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        /// Folder for failing traces [default: wg-sim-failures].
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Runs many seeds of scenario files (or of every *.toml of a folder), with progress, and
    /// reports every failing seed, grouped, and writes its trace.
    Fuzz {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// A range A..B of seeds, for each scenario (B excluded).
        #[arg(long, default_value = "0..1000")]
        seeds: String,
        /// Runs only shard i of n (0-based) of the --seeds range: the i-th of n contiguous
        /// blocks. Merge the shards' --out outputs with `wg-sim merge`.
        #[arg(long, value_name = "i/n", value_parser = Shard::parse)]
        shard: Option<Shard>,
        #[command(flatten)]
        campaign: CampaignArgs,
        #[arg(long, value_enum)]
        scheduler: Option<SchedulerArg>,
        /// Randomises per seed which fault kinds are on.
        #[arg(long)]
        swarm: bool,
        /// Folder for failing traces and the failures as JSONL (failures.jsonl, or
        /// failures.shard-i-of-n.jsonl with --shard; written whenever --out or --shard is given,
        /// else only if a seed failed) [default: wg-sim-failures].
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Writes a JUnit XML report here: one testcase per scenario.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
    },
    /// Explores every schedule of scenario files within bounds, at most K preemptions and N
    /// injected faults each, and stops at the first violation (docs/simulation.md, Exhaustive checking).
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
    /// Replays one seed of a scenario, or a trace file, and prints its timeline.
    Replay {
        /// The scenario file (default, with --trace: the one the trace names).
        scenario: Option<PathBuf>,
        /// The seed (default, with --trace: the trace's).
        #[arg(long)]
        seed: Option<u64>,
        /// A trace file written by `run` or `fuzz`.
        #[arg(long, value_name = "FILE")]
        trace: Option<PathBuf>,
        /// Run the seed twice and compare a hash of the state after every step; report the first
        /// step where the two runs differ (nondeterminism is itself a failure).
        #[arg(long, conflicts_with_all = ["trace", "html"])]
        determinism: bool,
        /// Also draws the run as a self-contained HTML swimlane timeline in this file.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
    },
    /// Combines the --out outputs of the shards of one `fuzz --shard` campaign (files or folders):
    /// checks every shard is there, de-duplicates failures by checker and shrunk trace, prints
    /// the grouped report; exits 1 if any failure.
    Merge {
        #[arg(required = true, value_name = "OUTPUT")]
        outputs: Vec<PathBuf>,
    },
    /// Prints a shell completion script: `wg-sim completions bash > /etc/bash_completion.d/wg-sim`.
    Completions { shell: wg_args::ShellName },
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
        Mode::Run { paths, seeds, campaign, junit, out, .. } => run(&paths, seeds, &campaign, junit, out),
        Mode::Fuzz { paths, seeds, shard, campaign, scheduler, swarm, out, junit } => {
            let fuzz = FuzzArgs { seeds, shard: shard.unwrap_or(Shard::WHOLE), scheduler, swarm, out, junit };
            fuzz_command(&paths, &campaign, &fuzz)
        }
        Mode::Replay { scenario, seed, determinism: true, .. } => check_determinism(scenario.as_deref(), seed),
        Mode::Replay { scenario, seed, trace, html, .. } => replay(scenario, seed, trace.as_deref(), html.as_deref()),
        Mode::Merge { outputs } => merge(&outputs),
        Mode::Completions { shell } => {
            let script = wg_cli::commands::generated::completion_script::<Cli>(shell);
            Ok(wg_cli::output::exit_after_printing(
                std::io::Write::write_all(&mut std::io::stdout(), script.as_bytes()),
                0,
            ))
        }
        Mode::Check { paths, preemptions, faults, time, out } => check(&paths, preemptions, faults, time, &out),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("wg-sim: {message}");
            ExitCode::from(2)
        }
    }
}

/// A failure was printed: the exit code if the reader closes the pipe before the end.
static FAILURE_PRINTED: AtomicBool = AtomicBool::new(false);

/// Prints `text` on stdout (pausing the progress bars); a closed pipe ends the command quietly
/// (`wg_cli::output::end_if_unwritten`).
fn say(progress: &Progress, text: &str) {
    wg_cli::output::end_if_unwritten(progress.print(text), FAILURE_PRINTED.load(Ordering::Relaxed));
}

fn say_line(progress: &Progress, line: &str) {
    say(progress, &format!("{line}\n"));
}

fn load(path: &Path) -> Result<Scenario, String> {
    scenario::parse(path).map_err(|error| error.to_string())
}

fn load_all(paths: &[PathBuf]) -> Result<Vec<Scenario>, String> {
    let files = scenario::scenario_files(paths).map_err(|error| error.to_string())?;
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

fn parse_time(text: &str) -> Result<Duration, wg_core::time::BadDuration> {
    scenario::parse_duration_ms(text).map(Duration::from_millis)
}

fn parse_range(text: &str) -> Result<Range<u64>, String> {
    let (start, end) = text.split_once("..").ok_or_else(|| format!("--seeds {text:?}: expected A..B"))?;
    let number = |n: &str| n.parse::<u64>().map_err(|_| format!("--seeds {text:?}: {n:?} is not a number"));
    let range = number(start)?..number(end)?;
    if range.is_empty() {
        return Err(format!("--seeds {text:?} runs no seed: A must be less than B (B is excluded)"));
    }
    Ok(range)
}

fn out_folder(out: Option<PathBuf>) -> PathBuf {
    out.unwrap_or_else(|| PathBuf::from(trace::DEFAULT_FOLDER))
}

fn run(
    paths: &[PathBuf],
    seeds: Option<u64>,
    campaign: &CampaignArgs,
    junit: Option<PathBuf>,
    out: Option<PathBuf>,
) -> Result<ExitCode, String> {
    let scenarios = load_all(paths)?;
    // With a time budget and no --seeds, the time is the only bound.
    let seeds_of = |scenario: &Scenario| {
        let default_count = if campaign.time.is_some() { u64::MAX } else { scenario.sim.seeds };
        0..seeds.unwrap_or(default_count)
    };
    let plan = Plan {
        hunt: Hunt::Lowest,
        seeds: &seeds_of,
        jobs: campaign.jobs.unwrap_or_else(campaign::default_jobs),
        time: campaign.time,
        tune: &|_| {},
        out: out_folder(out),
    };
    let results = run_session(&scenarios, &plan, false)?;
    write_junit(junit.as_deref(), "wg-sim run", &results)?;
    Ok(exit_code(&results))
}

struct FuzzArgs {
    seeds: String,
    shard: Shard,
    scheduler: Option<SchedulerArg>,
    swarm: bool,
    out: Option<PathBuf>,
    junit: Option<PathBuf>,
}

fn fuzz_command(paths: &[PathBuf], campaign: &CampaignArgs, args: &FuzzArgs) -> Result<ExitCode, String> {
    let whole = parse_range(&args.seeds)?;
    let scenarios = load_all(paths)?;
    let block = args.shard.seeds(&whole);
    if block.is_empty() {
        eprintln!("wg-sim: shard {} of --seeds {} has no seed (more shards than seeds)", args.shard, args.seeds);
    }
    let (scheduler, swarm) = (args.scheduler, args.swarm);
    let tune = move |options: &mut RunOptions| {
        match scheduler {
            Some(SchedulerArg::Random) => options.scheduler = SchedulerKind::Random,
            Some(SchedulerArg::Pct) => options.scheduler = SchedulerKind::Pct { depth: 3 },
            None => {}
        }
        if swarm {
            options.faults = runner::swarm_faults(options.seed);
        }
    };
    let seeds_of = |_: &Scenario| block.clone();
    // Without --out or --shard a passing campaign writes nothing: no folder appears beside a
    // person for a run that found nothing. A shard always writes (merge tells "nothing failed"
    // from "never ran" by it).
    let write_output_always = args.out.is_some() || args.shard != Shard::WHOLE;
    let out = out_folder(args.out.clone());
    let plan = Plan {
        hunt: Hunt::Every,
        seeds: &seeds_of,
        jobs: campaign.jobs.unwrap_or_else(campaign::default_jobs),
        time: campaign.time,
        tune: &tune,
        out: out.clone(),
    };
    let results = run_session(&scenarios, &plan, true)?;
    let header = CampaignHeader {
        seeds: whole,
        shard: args.shard,
        scenarios: scenarios.iter().map(|scenario| scenario.name.clone()).collect(),
        seeds_run: results.iter().map(|result| result.seeds_run).sum(),
        stopped_by_time: results.iter().any(|result| result.stopped_by_time),
    };
    let records: Vec<FailureRecord> = results.iter().flat_map(|result| result.records.clone()).collect();
    if write_output_always || !records.is_empty() {
        let file = out.join(args.shard.file_name());
        shard::write_output(&file, &header, &records).map_err(|error| {
            format!("cannot write the failures to {}: {error}; pass --out to pick another folder", file.display())
        })?;
    }
    write_junit(args.junit.as_deref(), "wg-sim fuzz", &results)?;
    Ok(exit_code(&results))
}

/// Runs the session, printing each scenario's grouped failures and line as it ends, then the
/// summary line.
fn run_session(scenarios: &[Scenario], plan: &Plan<'_>, fuzz_lines: bool) -> Result<Vec<ScenarioResult>, String> {
    let progress = Progress::on_terminal(scenarios.len());
    let (results, summary) = session::run(scenarios, plan, &progress, |result| {
        if !result.records.is_empty() {
            say(&progress, &report::render_grouped(&result.records));
            FAILURE_PRINTED.store(true, Ordering::Relaxed);
        }
        // `run` ends a failing scenario with its block alone (it stops at the first failure).
        if fuzz_lines || result.records.is_empty() {
            say_line(&progress, &result.line(fuzz_lines));
        }
    })?;
    progress.finish();
    say_line(&Progress::hidden(), &summary.line());
    Ok(results)
}

fn exit_code(results: &[ScenarioResult]) -> ExitCode {
    if results.iter().any(|result| !result.records.is_empty()) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// One testcase per scenario; a failing one carries its grouped failure blocks (each with its
/// replay command).
fn write_junit(path: Option<&Path>, suite: &str, results: &[ScenarioResult]) -> Result<(), String> {
    let Some(path) = path else { return Ok(()) };
    let cases: Vec<junit::TestCase> = results
        .iter()
        .map(|result| {
            let outcome = match result.records.first() {
                None => junit::Outcome::Pass,
                Some(first) => junit::Outcome::Failure {
                    message: format!(
                        "{} failing seed(s); seed {}: {}: {}",
                        result.records.len(),
                        first.seed,
                        first.checker,
                        first.detail
                    ),
                    body: report::render_grouped(&result.records),
                },
            };
            junit::TestCase {
                name: result.name.clone(),
                file: result.path.clone(),
                time: result.elapsed,
                outcome,
                system_out: vec![result.line(true)],
            }
        })
        .collect();
    std::fs::write(path, junit::render(suite, &cases))
        .map_err(|error| format!("cannot write the JUnit report {}: {error}; name a writable file", path.display()))
}

fn merge(paths: &[PathBuf]) -> Result<ExitCode, String> {
    let mut outputs = Vec::new();
    for path in paths {
        outputs.extend(shard::read_outputs(path).map_err(|error| error.to_string())?);
    }
    let merged = shard::merge(outputs).map_err(|error| error.to_string())?;
    let progress = Progress::hidden();
    if !merged.records.is_empty() {
        say(&progress, &report::render_grouped(&merged.records));
    }
    let groups = report::group(&merged.records).len();
    let time_note = if merged.stopped_by_time { "; --time stopped some shard before its block ended" } else { "" };
    say_line(
        &progress,
        &format!(
            "merged: shards {}, seeds {}..{}, seeds run {}, failures {} ({} duplicates dropped), distinct {groups}{time_note}",
            merged.shards,
            merged.seeds.start,
            merged.seeds.end,
            merged.seeds_run,
            merged.records.len(),
            merged.duplicates
        ),
    );
    Ok(if merged.records.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
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
        say(&Progress::hidden(), &text);
        FAILURE_PRINTED.fetch_or(failure, Ordering::Relaxed);
        failed |= failure;
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn check_determinism(path: Option<&Path>, seed: Option<u64>) -> Result<ExitCode, String> {
    let path = path.ok_or("--determinism needs a scenario file: wg-sim replay <SCENARIO> --seed N --determinism")?;
    let seed = seed.ok_or("--determinism needs --seed N")?;
    let scenario = load(path)?;
    let progress = Progress::hidden();
    match runner::determinism_check(&scenario, &RunOptions::for_scenario(&scenario, seed)) {
        Ok(()) => {
            say_line(
                &progress,
                &format!(
                    "deterministic: scenario={} seed={seed}: two runs, the same state after every step",
                    scenario.name
                ),
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(difference) => {
            say_line(
                &progress,
                &format!("FAIL scenario={} seed={seed} checker=determinism: {difference}", scenario.name),
            );
            Ok(ExitCode::from(1))
        }
    }
}

fn replay(
    path: Option<PathBuf>,
    seed: Option<u64>,
    trace_file: Option<&Path>,
    html_file: Option<&Path>,
) -> Result<ExitCode, String> {
    let trace = trace_file.map(trace::read).transpose().map_err(|error| error.to_string())?;
    let path = path.or_else(|| trace.as_ref().and_then(|trace| trace.scenario.clone())).ok_or(
        "name the scenario file: wg-sim replay <SCENARIO> --seed N, or --trace F with a trace wg-sim wrote \
         (its first line names the scenario)",
    )?;
    let seed = seed
        .or_else(|| trace.as_ref().and_then(|trace| trace.seed))
        .ok_or("name the seed: --seed N (the trace's first line names none: it was not written by wg-sim run/fuzz)")?;
    let scenario = load(&path).map_err(|error| match trace_file {
        Some(file) => {
            format!("{error}\n  (the scenario the trace {} names; name another as the first argument)", file.display())
        }
        None => error,
    })?;
    let options = RunOptions::for_scenario(&scenario, seed);
    let report = match trace {
        Some(trace) => runner::replay(&scenario, &options, trace.decisions, true),
        None => executor::run(&scenario, &RunOptions { record_timeline: true, ..options }),
    };
    let progress = Progress::hidden();
    say_line(&progress, &format!("replay scenario={} seed={seed} steps={}", scenario.name, report.trace.len()));
    for line in &report.timeline {
        say_line(&progress, &format!("  {line}"));
    }
    if let Some(file) = html_file {
        let title = format!("{} seed {seed}", scenario.name);
        std::fs::write(file, html::render(&title, &report))
            .map_err(|error| format!("cannot write {}: {error}; name a writable file", file.display()))?;
        eprintln!("wg-sim: drew the run in {}", file.display());
    }
    match &report.failure {
        Some(failure) => {
            say_line(
                &progress,
                &format!(
                    "FAIL checker={} step={} tick={}: {}",
                    failure.checker,
                    failure.step,
                    wg_sim::timeline::format_tick(failure.tick_ms),
                    failure.detail
                ),
            );
            Ok(ExitCode::from(1))
        }
        None if report.invalid => {
            Err("the trace does not fit this scenario (a decision named an actor that could not run)".into())
        }
        None => {
            say_line(&progress, "ok");
            Ok(ExitCode::SUCCESS)
        }
    }
}
