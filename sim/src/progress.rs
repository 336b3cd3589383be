//! The progress display of a long campaign, on stderr and only when stderr is a terminal: a bar
//! for the whole session (scenarios done, seeds, seeds/s, failures, ETA) and one for the scenario
//! running (its seeds, seeds/s, failures, ETA). In a log or a pipe it shows nothing: the lines on
//! stdout and the summary are the record.
//!
//! Cost: the campaign calls [`Progress::update`] at most every [`crate::campaign::PROGRESS_INTERVAL`]
//! from its waiting thread, never from the threads running seeds, and the bars redraw at most
//! [`REDRAWS_PER_S`] times a second.

use crate::campaign;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const REDRAWS_PER_S: u8 = 10;

pub struct Progress {
    bars: Option<Bars>,
}

struct Bars {
    multi: MultiProgress,
    session: ProgressBar,
    scenario: Mutex<Option<ProgressBar>>,
    started: Instant,
    /// Seeds and failures of the scenarios already finished.
    seeds_before: AtomicU64,
    failures_before: AtomicU64,
}

impl Progress {
    /// Shows nothing.
    pub fn hidden() -> Progress {
        Progress { bars: None }
    }

    /// Bars for `scenarios` scenarios when stderr is a terminal; nothing otherwise.
    pub fn on_terminal(scenarios: usize) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress::hidden();
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(REDRAWS_PER_S));
        let session = multi.add(ProgressBar::new(scenarios as u64));
        session.set_style(
            ProgressStyle::with_template("{prefix:.bold} [{bar:30.cyan/blue}] {pos}/{len} scenarios  {msg}  ETA {eta}")
                .expect("the template is valid")
                .progress_chars("=> "),
        );
        session.set_prefix(format!("{:<32}", "all"));
        Progress {
            bars: Some(Bars {
                multi,
                session,
                scenario: Mutex::new(None),
                started: Instant::now(),
                seeds_before: AtomicU64::new(0),
                failures_before: AtomicU64::new(0),
            }),
        }
    }

    pub fn scenario_started(&self, name: &str, seeds: &Range<u64>) {
        let Some(bars) = &self.bars else { return };
        let count = seeds.end - seeds.start;
        // With --time and no --seeds the range is unbounded: a counter, not a bar.
        let bounded = count < u64::MAX / 2;
        let bar = bars.multi.add(if bounded { ProgressBar::new(count) } else { ProgressBar::new_spinner() });
        let template = if bounded {
            "{prefix} [{bar:30.green/white}] {human_pos}/{human_len} seeds  {msg}  ETA {eta}"
        } else {
            "{prefix} {spinner} {human_pos} seeds  {msg}  (until its share of --time)"
        };
        bar.set_style(ProgressStyle::with_template(template).expect("the template is valid").progress_chars("=> "));
        bar.set_prefix(format!("{name:<32}"));
        bar.set_message("failures 0");
        *bars.scenario.lock().expect("no panic holds it") = Some(bar);
    }

    pub fn update(&self, counts: campaign::Progress) {
        let Some(bars) = &self.bars else { return };
        if let Some(bar) = bars.scenario.lock().expect("no panic holds it").as_ref() {
            bar.set_position(counts.seeds_run);
            let rate = rate_per_s(counts.seeds_run, counts.elapsed);
            bar.set_message(format!("{rate:.0} seeds/s, failures {}", counts.failures));
        }
        let seeds = bars.seeds_before.load(Ordering::Relaxed) + counts.seeds_run;
        let failures = bars.failures_before.load(Ordering::Relaxed) + counts.failures;
        bars.session.set_message(Self::totals(bars, seeds, failures));
    }

    /// A scenario ended, having run `seeds_run` seeds and found `failures`.
    pub fn scenario_finished(&self, seeds_run: u64, failures: u64) {
        let Some(bars) = &self.bars else { return };
        if let Some(bar) = bars.scenario.lock().expect("no panic holds it").take() {
            bar.finish_and_clear();
            bars.multi.remove(&bar);
        }
        let seeds = bars.seeds_before.fetch_add(seeds_run, Ordering::Relaxed) + seeds_run;
        let failures = bars.failures_before.fetch_add(failures, Ordering::Relaxed) + failures;
        bars.session.inc(1);
        bars.session.set_message(Self::totals(bars, seeds, failures));
    }

    /// Prints `text` on stdout without tearing the bars (they are redrawn below it).
    pub fn print(&self, text: &str) -> std::io::Result<()> {
        let write = || {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(text.as_bytes())?;
            stdout.flush()
        };
        match &self.bars {
            Some(bars) => bars.multi.suspend(write),
            None => write(),
        }
    }

    /// Removes the bars (before the summary line).
    pub fn finish(&self) {
        if let Some(bars) = &self.bars {
            bars.session.finish_and_clear();
            let _ = bars.multi.clear();
        }
    }

    fn totals(bars: &Bars, seeds: u64, failures: u64) -> String {
        let rate = rate_per_s(seeds, bars.started.elapsed());
        format!("{seeds} seeds, {rate:.0} seeds/s, failures {failures}")
    }
}

/// Seeds per second, for the bars and the summaries.
pub fn rate_per_s(seeds: u64, elapsed: Duration) -> f64 {
    seeds as f64 / elapsed.as_secs_f64().max(1e-9)
}
