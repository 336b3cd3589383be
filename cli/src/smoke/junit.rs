//! The real-process runner's results as JUnit XML (the writer is the simulator's: `wg_sim::junit`).

use super::{ScenarioReport, Verdict};
use wg_sim::junit::{self, Outcome, TestCase};

pub use wg_sim::junit::escape;

pub fn render(reports: &[ScenarioReport]) -> String {
    let cases: Vec<TestCase> = reports.iter().map(case).collect();
    junit::render("wg-sim run --real", &cases)
}

fn case(report: &ScenarioReport) -> TestCase {
    let outcome = match &report.verdict {
        Verdict::Pass => Outcome::Pass,
        Verdict::Fail(failures) => {
            Outcome::Failure { message: failures.first().cloned().unwrap_or_default(), body: failures.join("\n") }
        }
        Verdict::ExpectedFail { reason, .. } => {
            Outcome::Skipped { message: format!("expected to fail in real mode: {reason}") }
        }
    };
    TestCase {
        name: report.name.clone(),
        file: report.file.clone(),
        time: report.elapsed,
        outcome,
        system_out: report.lines().into_iter().skip(1).collect(),
    }
}
