//! `wg-sim run --real`: the scenario files the simulator runs, once each, against real
//! processes, real signals, the real `wg` binary and a temp `.wg/` (docs/design.md, Scenarios).
//!
//! Per scenario: [`world`] writes `.wg/` and starts the agents already running, [`run`] starts
//! the service and fires the [`steps`] at their times or events while [`checks`] samples the
//! invariants, then checks the expectations; everything started is ended by pid ([`procs`]).

mod checks;
pub mod junit;
mod procs;
mod run;
mod setup_error;
mod steps;
mod world;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use wg_sim::scenario::{self, Scenario};

/// Scenarios that fail in real mode because of a known bug in `wg` (not in this runner): they
/// still run, and their failure is shown, but it does not fail the suite. (name, reason)
pub const EXPECTED_FAIL: &[(&str, &str)] = &[];

/// How long one scenario may run at most, whatever its own horizon says.
pub const WALL_CAP: Duration = Duration::from_secs(20);

pub struct RealOptions {
    /// The `wg` binary the service, the agents and the steps run.
    pub wg_binary: PathBuf,
    pub junit: Option<PathBuf>,
    pub wall_cap: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// What failed, each "expected X, actual Y".
    Fail(Vec<String>),
    /// Failed, and is listed in [`EXPECTED_FAIL`]; `failures` may be empty if it passed.
    ExpectedFail {
        reason: String,
        failures: Vec<String>,
    },
}

pub struct ScenarioReport {
    pub name: String,
    pub file: PathBuf,
    pub verdict: Verdict,
    pub elapsed: Duration,
    /// `skipped: ...` lines: what the simulator can do and this run could not.
    pub skipped: Vec<String>,
    /// What the run did that is worth knowing (faults made real, scaled settings).
    pub notes: Vec<String>,
    /// The temp folder, kept when the scenario failed.
    pub files_kept: Option<PathBuf>,
}

impl ScenarioReport {
    /// The lines printed for this scenario: the verdict first, then details, indented.
    pub fn lines(&self) -> Vec<String> {
        let seconds = self.elapsed.as_secs_f64();
        let mut lines = match &self.verdict {
            Verdict::Pass => vec![format!("PASS {} ({seconds:.2}s)", self.name)],
            Verdict::Fail(failures) => {
                let mut lines = vec![format!("FAIL {}: {} ({seconds:.2}s)", self.name, failures[0])];
                lines.extend(failures[1..].iter().map(|failure| format!("  also: {failure}")));
                lines
            }
            Verdict::ExpectedFail { reason, failures } if failures.is_empty() => {
                vec![format!("XPASS {} ({seconds:.2}s): marked expected-fail ({reason}) but passed", self.name)]
            }
            Verdict::ExpectedFail { reason, failures } => {
                let mut lines =
                    vec![format!("XFAIL {} ({seconds:.2}s): expected-fail in real mode: {reason}", self.name)];
                lines.extend(failures.iter().map(|failure| format!("  failed: {failure}")));
                lines
            }
        };
        lines.extend(self.skipped.iter().map(|line| format!("  skipped: {line}")));
        lines.extend(self.notes.iter().map(|line| format!("  note: {line}")));
        lines.extend(self.files_kept.iter().map(|path| format!("  files: {}", path.display())));
        lines
    }
}

/// `wg-sim run --real`: the `wg` binary next to the running executable.
pub fn run_real(paths: &[PathBuf], junit: Option<&Path>) -> ExitCode {
    let wg_binary = match std::env::current_exe() {
        Ok(exe) => exe.with_file_name("wg"),
        Err(error) => {
            eprintln!("wg-sim: cannot find my own executable: {error}");
            return ExitCode::from(2);
        }
    };
    run_with(&RealOptions { wg_binary, junit: junit.map(Path::to_path_buf), wall_cap: WALL_CAP }, paths)
}

/// Exit code 0 all passed, 1 a scenario failed, 2 a scenario file is malformed (then nothing
/// runs) or the `wg` binary is missing.
pub fn run_with(options: &RealOptions, paths: &[PathBuf]) -> ExitCode {
    let scenarios = match load_all(paths) {
        Ok(scenarios) => scenarios,
        Err(message) => {
            eprintln!("wg-sim: {message}");
            return ExitCode::from(2);
        }
    };
    if !options.wg_binary.is_file() {
        eprintln!("wg-sim: the wg binary is not at {} (build it: cargo build --bin wg)", options.wg_binary.display());
        return ExitCode::from(2);
    }
    let mut reports = Vec::new();
    for scenario in &scenarios {
        let report = run::run_scenario(scenario, options);
        reports.push(report);
        let failed_so_far = reports.iter().any(|report| matches!(report.verdict, Verdict::Fail(_)));
        for line in reports.last().expect("pushed").lines() {
            say(&line, failed_so_far);
        }
    }
    let failed = reports.iter().filter(|report| matches!(report.verdict, Verdict::Fail(_))).count();
    let seconds: f64 = reports.iter().map(|report| report.elapsed.as_secs_f64()).sum();
    say(&format!("{} scenarios, {failed} failed, in {seconds:.2}s (real mode)", reports.len()), failed > 0);
    say(&format!("not checked in real mode: {}", checks::NOT_OBSERVABLE), failed > 0);
    if let Some(path) = &options.junit {
        if let Err(error) = std::fs::write(path, junit::render(&reports)) {
            eprintln!("wg-sim: cannot write {}: {error}", path.display());
            return ExitCode::from(2);
        }
    }
    if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Files as given, folders as their `*.toml` (sorted), each parsed by the simulator's parser.
fn load_all(paths: &[PathBuf]) -> Result<Vec<Scenario>, String> {
    let files = scenario::scenario_files(paths).map_err(|error| error.to_string())?;
    files.iter().map(|file| scenario::parse(file).map_err(|error| error.to_string())).collect()
}

/// Prints one line of the report. A reader that closed the pipe (`wg-sim run --real ... | head -1`)
/// ends the run at once and quietly, as the simulator modes do: each scenario has ended every
/// process it started before its report is printed, so nothing is left behind. The exit code is
/// 1 if a failure was reported before, else 0.
fn say(line: &str, failed_so_far: bool) {
    use std::io::Write;
    crate::output::end_if_unwritten(writeln!(std::io::stdout().lock(), "{line}"), failed_so_far);
}
