//! What a campaign says about its failures: one record per failing seed (self-contained, so a
//! shard's JSONL output can be merged and printed on another machine), the failure block of a
//! record, and the grouped report that prints one block per distinct failure and counts the rest.
//!
//! Grouping key: the scenario, the checker, and the checker's message with every number masked.
//! Seeds that fail the same way differ in schedule-dependent numbers (the step of the violation,
//! pids, agent and attempt numbers, ticks) but not in the clause of the invariant or expectation
//! they break; the step of the violation is no key because the same bug is seen one step earlier
//! or later under another schedule (a shrunk trace fails at 77 or 78 for one bug).

use crate::decision::Decision;
use crate::runner::Found;
use crate::scenario::Scenario;
use crate::timeline::format_tick;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// How many timeline lines a failure block shows (the last ones, where the failure is).
pub const TIMELINE_SHOWN: usize = 80;
/// How many other seeds of a group are listed by number.
const SEEDS_LISTED: usize = 10;

/// One failing seed, shrunk: everything its failure block and a merge need.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureRecord {
    /// The scenario's name and its file as the command named it.
    pub scenario: String,
    pub scenario_path: PathBuf,
    pub seed: u64,
    pub checker: String,
    pub detail: String,
    /// The step of the shrunk replay after which the failure was seen, and its virtual time.
    pub step: usize,
    pub tick_ms: i64,
    pub original_steps: usize,
    pub shrunk_trace: Vec<Decision>,
    /// The shrunk replay's timeline, one line a step.
    pub timeline: Vec<String>,
    /// Where the shrunk trace was written.
    pub trace_file: PathBuf,
}

impl FailureRecord {
    pub fn new(scenario: &Scenario, found: &Found, trace_file: &Path) -> FailureRecord {
        let failure = found.shrunk.failure.as_ref().or(found.original.failure.as_ref()).expect("a found seed failed");
        FailureRecord {
            scenario: scenario.name.clone(),
            scenario_path: scenario.path.clone(),
            seed: found.seed,
            checker: failure.checker.clone(),
            detail: failure.detail.clone(),
            step: failure.step,
            tick_ms: failure.tick_ms,
            original_steps: found.original.trace.len(),
            shrunk_trace: found.shrunk_trace.clone(),
            timeline: found.shrunk.timeline.clone(),
            trace_file: trace_file.to_path_buf(),
        }
    }

    /// The failure block (docs/simulation.md, Reading a failure): header, shrink, the end of the
    /// timeline, the violation, and the command that replays it.
    pub fn block(&self) -> String {
        let mut text = String::new();
        let _ = writeln!(
            text,
            "FAIL scenario={} seed={} checker={} step={} tick={}",
            self.scenario,
            self.seed,
            self.checker,
            self.step,
            format_tick(self.tick_ms)
        );
        let _ = writeln!(text, "  {}", self.shrink_line());
        let hidden = self.timeline.len().saturating_sub(TIMELINE_SHOWN);
        if hidden > 0 {
            let _ = writeln!(text, "  ... {hidden} earlier steps");
        }
        for line in &self.timeline[hidden..] {
            let _ = writeln!(text, "  {line}");
        }
        let _ = writeln!(text, "  !! {}: {}", self.checker, self.detail);
        let _ = writeln!(text, "  replay: {}", self.replay_command());
        text
    }

    /// How far shrinking got. A shrunk trace holds only the decisions it forces; its replay then
    /// runs on the default schedule (the oldest runnable actor, no faults), so the timeline below
    /// has more steps than the trace: say both, or the count reads as a contradiction.
    fn shrink_line(&self) -> String {
        let (original, chosen, ran) = (self.original_steps, self.shrunk_trace.len(), self.timeline.len());
        if chosen == 0 {
            format!("shrunk: {original} steps -> none chosen: the default schedule alone fails ({ran} steps)")
        } else {
            format!("shrunk: {original} -> {chosen} chosen steps, then the default schedule ({ran} steps in all)")
        }
    }

    /// The trace's header names the scenario and the seed: the trace alone replays it.
    pub fn replay_command(&self) -> String {
        format!("wg-sim replay --trace {}", self.trace_file.display())
    }

    /// What makes two records the same failure for [`group`] (see the module comment).
    pub fn group_key(&self) -> (String, String, String) {
        (self.scenario.clone(), self.checker.clone(), mask_numbers(&self.detail))
    }
}

/// Records that fail the same way, lowest seed first.
#[derive(Debug)]
pub struct Group<'a> {
    pub records: Vec<&'a FailureRecord>,
}

impl Group<'_> {
    pub fn first(&self) -> &FailureRecord {
        self.records[0]
    }
}

/// Groups `records` by [`FailureRecord::group_key`]; groups in the order of their first record,
/// records in seed order.
pub fn group(records: &[FailureRecord]) -> Vec<Group<'_>> {
    let mut order: Vec<(String, String, String)> = Vec::new();
    let mut members: BTreeMap<(String, String, String), Vec<&FailureRecord>> = BTreeMap::new();
    for record in records {
        let key = record.group_key();
        if !members.contains_key(&key) {
            order.push(key.clone());
        }
        members.entry(key).or_default().push(record);
    }
    order
        .into_iter()
        .map(|key| {
            let mut records = members.remove(&key).expect("every key has members");
            records.sort_by_key(|record| record.seed);
            Group { records }
        })
        .collect()
}

/// One full block per group, then a line counting the group's other seeds.
pub fn render_grouped(records: &[FailureRecord]) -> String {
    let mut text = String::new();
    for group in group(records) {
        text.push_str(&group.first().block());
        let others = &group.records[1..];
        if others.is_empty() {
            continue;
        }
        let listed: Vec<String> = others.iter().take(SEEDS_LISTED).map(|r| r.seed.to_string()).collect();
        let unlisted = others.len().saturating_sub(SEEDS_LISTED);
        let more = if unlisted > 0 { format!(" and {unlisted} more") } else { String::new() };
        let folder = group.first().trace_file.parent().map(|p| p.display().to_string()).unwrap_or_default();
        let _ = writeln!(
            text,
            "  + {} more seeds fail the same way ({} seeds in all): {}{more}; their traces are in {}",
            others.len(),
            group.records.len(),
            listed.join(", "),
            if folder.is_empty() { "." } else { &folder }
        );
    }
    text
}

/// `detail` with each run of digits replaced by `N`.
fn mask_numbers(detail: &str) -> String {
    let mut masked = String::with_capacity(detail.len());
    let mut in_number = false;
    for c in detail.chars() {
        if c.is_ascii_digit() {
            if !in_number {
                masked.push('N');
            }
            in_number = true;
        } else {
            masked.push(c);
            in_number = false;
        }
    }
    masked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seed: u64, checker: &str, detail: &str) -> FailureRecord {
        FailureRecord {
            scenario: "s".into(),
            scenario_path: "scenarios/s.toml".into(),
            seed,
            checker: checker.into(),
            detail: detail.into(),
            step: 3,
            tick_ms: 1500,
            original_steps: 9,
            shrunk_trace: vec![Decision::ClockJump { by_ms: 5 }],
            timeline: vec!["#0 a".into(), "#1 b".into()],
            trace_file: format!("out/s-{seed}.jsonl").into(),
        }
    }

    #[test]
    fn numbers_do_not_split_a_group_but_checkers_and_wording_do() {
        let records = vec![
            record(7, "expect", "t1.retry_count = 1 (actual: 2)"),
            record(3, "S3", "agent-2 counted twice"),
            record(9, "expect", "t1.retry_count = 1 (actual: 3)"),
            record(4, "S3", "agent-5 counted twice"),
            record(5, "S3", "agent-5 never re-queued"),
        ];
        let groups = group(&records);
        let seeds: Vec<Vec<u64>> = groups.iter().map(|g| g.records.iter().map(|r| r.seed).collect()).collect();
        assert_eq!(seeds, vec![vec![7, 9], vec![3, 4], vec![5]]);
    }

    #[test]
    fn the_grouped_report_shows_one_block_per_group_and_counts_the_rest() {
        let records: Vec<FailureRecord> = (0..12).map(|seed| record(seed, "expect", "t1.status = done")).collect();
        let text = render_grouped(&records);
        assert_eq!(text.matches("FAIL scenario=").count(), 1, "{text}");
        assert!(text.starts_with("FAIL scenario=s seed=0 checker=expect step=3 tick=1.500s\n"), "{text}");
        assert!(
            text.contains("  + 11 more seeds fail the same way (12 seeds in all): 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 and 1 more; their traces are in out\n"),
            "{text}"
        );
        assert!(text.contains("  replay: wg-sim replay --trace out/s-0.jsonl\n"), "{text}");
    }

    #[test]
    fn a_record_survives_json() {
        let record = record(1, "S1", "two agents");
        let line = serde_json::to_string(&record).unwrap();
        assert_eq!(serde_json::from_str::<FailureRecord>(&line).unwrap(), record);
    }
}
