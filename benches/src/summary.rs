//! The figure a user cares about, as one line on stderr: criterion prints its own statistics,
//! these lines add the median/p90/max over every measured run and whether the goal is met.

use std::cell::RefCell;
use std::time::Duration;

/// Durations measured inside `iter_custom` (warm-up runs included: the median barely moves).
#[derive(Default)]
pub struct Samples {
    values: RefCell<Vec<Duration>>,
}

impl Samples {
    pub fn new() -> Samples {
        Samples::default()
    }

    pub fn push(&self, value: Duration) {
        self.values.borrow_mut().push(value);
    }

    pub fn count(&self) -> usize {
        self.values.borrow().len()
    }

    /// The `percent`-th percentile (nearest rank); zero when nothing was measured.
    pub fn percentile(&self, percent: usize) -> Duration {
        let mut values = self.values.borrow().clone();
        if values.is_empty() {
            return Duration::ZERO;
        }
        values.sort();
        let rank = (values.len() * percent).div_ceil(100).clamp(1, values.len());
        values[rank - 1]
    }

    pub fn median(&self) -> Duration {
        self.percentile(50)
    }

    pub fn max(&self) -> Duration {
        self.values.borrow().iter().copied().max().unwrap_or_default()
    }

    /// `name: median X ms, p90 Y ms, max Z ms over N runs; goal <= G ms: met|NOT met (median)`.
    pub fn summary(&self, name: &str, goal: Option<Duration>) -> String {
        let mut line = format!(
            "SUMMARY {name}: median {}, p90 {}, max {} over {} runs",
            ms(self.median()),
            ms(self.percentile(90)),
            ms(self.max()),
            self.count()
        );
        if let Some(goal) = goal {
            let verdict = if self.median() <= goal { "met" } else { "NOT met" };
            line.push_str(&format!("; goal median <= {}: {verdict}", ms(goal)));
        }
        line
    }
}

/// A duration in milliseconds with two decimals, e.g. `12.34 ms`.
pub fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1000.0)
}

/// Bytes in MiB with one decimal.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
