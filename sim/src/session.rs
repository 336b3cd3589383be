//! One `wg-sim run` or `wg-sim fuzz`: scenarios one after another, each a [`campaign`] with its
//! share of the time budget, each failing seed's trace written and turned into a
//! [`FailureRecord`], and the totals for the summary line. The binary only parses arguments and
//! prints.

use crate::campaign::{self, Budget, Outcome};
use crate::executor::RunOptions;
use crate::progress::{rate_per_s, Progress};
use crate::report::FailureRecord;
use crate::scenario::Scenario;
use crate::trace;
use std::num::NonZeroUsize;
use std::ops::Range;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Which failing seeds a scenario reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hunt {
    /// The lowest failing seed (`run`): the campaign stops claiming seeds once one fails.
    Lowest,
    /// Every failing seed of the range (`fuzz`).
    Every,
}

/// What a session runs, and where its traces go.
pub struct Plan<'a> {
    pub hunt: Hunt,
    /// The seeds to run of each scenario.
    pub seeds: &'a dyn Fn(&Scenario) -> Range<u64>,
    pub jobs: NonZeroUsize,
    /// A wall budget for all scenarios together.
    pub time: Option<Duration>,
    /// Adjusts each seed's options (scheduler, swarm faults).
    pub tune: &'a (dyn Fn(&mut RunOptions) + Sync),
    /// The folder failing traces are written to.
    pub out: PathBuf,
}

/// What one scenario did.
#[derive(Debug)]
pub struct ScenarioResult {
    pub name: String,
    pub path: PathBuf,
    /// The seeds it was given; `seeds.start + seeds_run` is where it stopped.
    pub seeds: Range<u64>,
    pub seeds_run: u64,
    pub elapsed: Duration,
    pub records: Vec<FailureRecord>,
    /// The `--time` budget ended it before its seeds did.
    pub stopped_by_time: bool,
    /// Which orderings of conflicting commits its seeds showed, and how that grew.
    pub coverage: crate::coverage::Summary,
}

impl ScenarioResult {
    /// `ok   <name>  <seeds> seeds in <s>s (<rate> seeds/s)`, with `fuzz`'s range and count of
    /// failing seeds when `range` is true.
    pub fn line(&self, range: bool) -> String {
        let verdict = if self.records.is_empty() { "ok  " } else { "FAIL" };
        let mut line = format!(
            "{verdict} {:<32} {} seeds in {:.2}s ({:.0} seeds/s)",
            self.name,
            self.seeds_run,
            self.elapsed.as_secs_f64(),
            rate_per_s(self.seeds_run, self.elapsed)
        );
        if range {
            let ran_to = self.seeds.start + self.seeds_run;
            line += &format!(", seeds {}..{ran_to}, {} failing", self.seeds.start, self.records.len());
        }
        if self.stopped_by_time {
            line += "; stopped by --time";
        }
        line + &format!("\n     {}", self.coverage)
    }
}

/// Totals over the scenarios of one session, for its last line.
#[derive(Debug)]
pub struct Summary {
    pub scenarios: usize,
    pub seeds_run: u64,
    pub failures: u64,
    pub elapsed: Duration,
    pub jobs: NonZeroUsize,
}

impl Summary {
    /// `total: scenarios <n>, seeds <n> in <s>s (<rate> seeds/s), failures <n>, jobs <n>`.
    pub fn line(&self) -> String {
        format!(
            "total: scenarios {}, seeds {} in {:.2}s ({:.0} seeds/s), failures {}, jobs {}",
            self.scenarios,
            self.seeds_run,
            self.elapsed.as_secs_f64(),
            rate_per_s(self.seeds_run, self.elapsed),
            self.failures,
            self.jobs
        )
    }
}

/// Runs `scenarios` in order, calling `on_done` as each ends (to print it at once); returns every
/// scenario's result and the totals. An error is a trace that could not be written.
pub fn run(
    scenarios: &[Scenario],
    plan: &Plan<'_>,
    progress: &Progress,
    mut on_done: impl FnMut(&ScenarioResult),
) -> Result<(Vec<ScenarioResult>, Summary), String> {
    let started = Instant::now();
    let end = plan.time.map(|time| started + time);
    let mut results = Vec::with_capacity(scenarios.len());
    for (index, scenario) in scenarios.iter().enumerate() {
        let seeds = (plan.seeds)(scenario);
        let deadline = end.map(|end| campaign::share_of(end, Instant::now(), scenarios.len() - index));
        let budget = Budget { seeds: seeds.clone(), jobs: plan.jobs, deadline };
        progress.scenario_started(&scenario.name, &seeds);
        let scenario_started = Instant::now();
        let on_progress = |counts| progress.update(counts);
        let outcome: Outcome = match plan.hunt {
            Hunt::Lowest => campaign::first_failure(scenario, &budget, plan.tune, on_progress),
            Hunt::Every => campaign::every_failure(scenario, &budget, plan.tune, on_progress),
        };
        let elapsed = scenario_started.elapsed();
        let mut records = Vec::with_capacity(outcome.failures.len());
        for found in &outcome.failures {
            let file = trace::path_in(&plan.out, scenario, found.seed);
            trace::write(&file, scenario, found.seed, &found.shrunk_trace).map_err(|error| {
                format!(
                    "cannot write the trace of seed {} to {}: {error}; pass --out to pick another folder",
                    found.seed,
                    file.display()
                )
            })?;
            records.push(FailureRecord::new(scenario, found, &file));
        }
        let result = ScenarioResult {
            name: scenario.name.clone(),
            path: scenario.path.clone(),
            seeds,
            seeds_run: outcome.seeds_run,
            elapsed,
            records,
            stopped_by_time: outcome.out_of_time_at.is_some(),
            coverage: outcome.coverage,
        };
        progress.scenario_finished(result.seeds_run, result.records.len() as u64);
        on_done(&result);
        results.push(result);
    }
    let summary = Summary {
        scenarios: results.len(),
        seeds_run: results.iter().map(|result| result.seeds_run).sum(),
        failures: results.iter().map(|result| result.records.len() as u64).sum(),
        elapsed: started.elapsed(),
        jobs: plan.jobs,
    };
    Ok((results, summary))
}
