//! Coverage of random mode: which orders of conflicting operations a campaign has seen.
//!
//! Two committed transitions conflict when different actors made them and they touch the same
//! task or agent. Each run yields, for every such pair, an *ordering*: "on t1, the reaper's
//! in-progress -> open came before `wg retry t1`'s in-progress -> open". The campaign counts the
//! distinct orderings and when each was first seen, so a user can tell when more seeds stop
//! finding new ones (docs/simulation.md, Exhaustive checking).

use crate::world::record::CommitRecord;
use crate::world::{ActorKind, ActorSlot};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use wg_core::model::{AgentStatus, TaskStatus};

/// One commit: who made it (its role, not its id) and what it changed, per task or agent.
#[derive(Clone, Debug)]
pub struct Transition {
    actor: String,
    changes: Vec<Change>,
}

/// One task or agent a commit changed: its id, its status before (`None`: new) and after. Kept
/// as values and put into words only for the orderings of conflicting pairs (most commits are
/// in none), which was a visible part of every commit's cost.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Change {
    object: String,
    from: Option<Status>,
    to: Status,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Status {
    Task(TaskStatus),
    Agent(AgentStatus),
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Task(status) => write!(f, "{status:?}"),
            Status::Agent(status) => write!(f, "{status:?}"),
        }
    }
}

/// `<from>-><to>`, e.g. `InProgress->Open` or `new->Starting`.
impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.from {
            Some(from) => write!(f, "{from}->{}", self.to),
            None => write!(f, "new->{}", self.to),
        }
    }
}

/// The role of an actor: the same for one loop or command across runs and service restarts.
fn role(slot: &ActorSlot) -> String {
    match slot.kind {
        // "service#1 reaper" -> "reaper"
        ActorKind::Service => slot.name.rsplit(' ').next().unwrap_or(&slot.name).to_string(),
        // "wg retry t1 --reason first [a4]" -> "wg retry t1 --reason first"
        _ => slot.name.rsplit_once(" [a").map_or(slot.name.as_str(), |(text, _)| text).to_string(),
    }
}

/// What `commit`, by `slot`, changed.
pub fn transition(slot: &ActorSlot, commit: &CommitRecord) -> Transition {
    let tasks = commit.changed_tasks().map(|(old, task)| Change {
        object: task.id.clone(),
        from: old.map(|old| Status::Task(old.status.clone())),
        to: Status::Task(task.status.clone()),
    });
    let agents = commit.changed_agents().map(|(old, agent)| Change {
        object: agent.id.clone(),
        from: old.map(|old| Status::Agent(old.status.clone())),
        to: Status::Agent(agent.status.clone()),
    });
    Transition { actor: role(slot), changes: tasks.chain(agents).collect() }
}

/// The orderings of conflicting pairs in one run's commits, in commit order.
///
/// Every seed of a campaign computes these, and a long run repeats the same few changes of an
/// object many times (each heartbeat, each sweep): so the changes are grouped by object (only
/// changes of one object can conflict), each distinct change (who, and from what to what) is
/// kept once with its first and last place, and a pair of them is an ordering when the first
/// place of one comes before the last place of the other. Only those distinct orderings are put
/// into words, by hand (what `format!` of the nested `Display`s wrote, at a fraction of the cost).
pub fn orderings(log: &[Transition]) -> BTreeSet<String> {
    let mut by_object: BTreeMap<&str, Places<'_>> = BTreeMap::new();
    for (place, commit) in log.iter().enumerate() {
        for change in &commit.changes {
            let places = by_object.entry(&change.object).or_default();
            places.entry((&commit.actor, change)).and_modify(|(_, last)| *last = place).or_insert((place, place));
        }
    }
    let mut found = BTreeSet::new();
    for places in by_object.values() {
        for (&earlier, &(first, _)) in places {
            // Different actors only: this also leaves out two changes of one commit.
            let later = places.iter().filter(|((actor, _), &(_, last))| *actor != earlier.0 && first < last);
            for (&later, _) in later {
                let mut text = String::with_capacity(96);
                write_ordering(&mut text, earlier, later);
                found.insert(text);
            }
        }
    }
    found
}

/// Of one object: each distinct (actor, change), with its first and last place in commit order.
type Places<'a> = BTreeMap<(&'a str, &'a Change), (usize, usize)>;

/// `<object>: <actor> <change> before <actor> <change>`, e.g. `t1: reaper InProgress->Open
/// before wg retry t1 InProgress->Open`.
fn write_ordering(text: &mut String, (actor, change): (&str, &Change), (later_actor, later): (&str, &Change)) {
    text.push_str(&change.object);
    text.push_str(": ");
    text.push_str(actor);
    text.push(' ');
    write_change(text, change);
    text.push_str(" before ");
    text.push_str(later_actor);
    text.push(' ');
    write_change(text, later);
}

/// What `Change`'s `Display` writes.
fn write_change(text: &mut String, change: &Change) {
    match &change.from {
        Some(from) => write_status(text, from),
        None => text.push_str("new"),
    }
    text.push_str("->");
    write_status(text, &change.to);
}

/// What `Status`'s `Display` writes.
fn write_status(text: &mut String, status: &Status) {
    use std::fmt::Write;
    // Writing to a `String` cannot fail.
    let _ = match status {
        Status::Task(status) => write!(text, "{status:?}"),
        Status::Agent(status) => write!(text, "{status:?}"),
    };
}

/// The orderings a campaign saw, each with the lowest seed that showed it.
#[derive(Debug, Default)]
pub struct Coverage {
    first_seen: BTreeMap<String, u64>,
}

impl Coverage {
    pub fn add(&mut self, seed: u64, orderings: BTreeSet<String>) {
        for ordering in orderings {
            let seen = self.first_seen.entry(ordering).or_insert(seed);
            *seen = (*seen).min(seed);
        }
    }

    /// Distinct orderings seen in seeds `start..end`, and how many of them were first seen in its
    /// second half.
    pub fn summary(&self, start: u64, end: u64) -> Summary {
        let middle = start + (end - start) / 2;
        Summary {
            orderings: self.first_seen.len(),
            new_in_last_half: self.first_seen.values().filter(|&&seed| seed >= middle).count(),
            seeds: end - start,
        }
    }
}

/// A campaign's coverage line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    pub orderings: usize,
    pub new_in_last_half: usize,
    pub seeds: u64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "coverage: {} orderings of conflicting operations, {} of them first seen in the last half of {} seeds{}",
            self.orderings,
            self.new_in_last_half,
            self.seeds,
            // Not "saturated": a rarer ordering may still come with many more seeds.
            if self.new_in_last_half == 0 {
                " (none new: more seeds of this kind are unlikely to add any)"
            } else {
                ""
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::{orderings, Change, Coverage, Status, Transition};
    use std::collections::BTreeSet;
    use wg_core::model::{AgentStatus, TaskStatus};

    /// A commit by `actor` changing `objects` from one status to another (`t…`: tasks, else
    /// agents), statuses named as upstream writes them (`in-progress`).
    fn commit(actor: &str, objects: &[(&str, &str, &str)]) -> Transition {
        let status = |object: &str, text: &str| match object.starts_with('t') {
            true => Status::Task(TaskStatus::parse(text)),
            false => Status::Agent(AgentStatus::parse(text)),
        };
        let changes = objects
            .iter()
            .map(|(object, from, to)| Change {
                object: object.to_string(),
                from: Some(status(object, from)),
                to: status(object, to),
            })
            .collect();
        Transition { actor: actor.to_string(), changes }
    }

    #[test]
    fn only_different_actors_on_the_same_object_conflict() {
        let log = [
            commit("reaper", &[("t1", "in-progress", "open"), ("agent-1", "working", "dead")]),
            commit("reaper", &[("t1", "open", "in-progress")]),
            commit("wg retry t1", &[("t1", "in-progress", "open")]),
            commit("wg done t2", &[("t2", "in-progress", "done")]),
        ];
        let found: Vec<String> = orderings(&log).into_iter().collect();
        assert_eq!(
            found,
            [
                "t1: reaper InProgress->Open before wg retry t1 InProgress->Open",
                "t1: reaper Open->InProgress before wg retry t1 InProgress->Open",
            ]
        );
        let reversed: Vec<Transition> = log.into_iter().rev().collect();
        assert!(orderings(&reversed).iter().all(|ordering| ordering.starts_with("t1: wg retry t1")));
    }

    #[test]
    fn a_new_object_reads_new_and_unknown_statuses_read_as_kept() {
        let created = Change { object: "agent-2".into(), from: None, to: Status::Agent(AgentStatus::Starting) };
        assert_eq!(created.to_string(), "new->Starting");
        let odd = Change {
            object: "t3".into(),
            from: Some(Status::Task(TaskStatus::parse("parked-by-tool"))),
            to: Status::Task(TaskStatus::Open),
        };
        assert_eq!(odd.to_string(), "Unknown(\"parked-by-tool\")->Open");
    }

    /// The orderings as first defined: every later commit by another actor, every pair of
    /// changes of one object, each put into words with `format!`.
    fn orderings_by_definition(log: &[Transition]) -> BTreeSet<String> {
        let mut found = BTreeSet::new();
        for (index, first) in log.iter().enumerate() {
            for second in log[index + 1..].iter().filter(|second| second.actor != first.actor) {
                for change in &first.changes {
                    for later in second.changes.iter().filter(|later| later.object == change.object) {
                        found.insert(format!(
                            "{}: {} {change} before {} {later}",
                            change.object, first.actor, second.actor
                        ));
                    }
                }
            }
        }
        found
    }

    #[test]
    fn orderings_are_those_of_the_definition() {
        let mut log = vec![
            commit("reaper", &[("t1", "in-progress", "open"), ("agent-1", "working", "dead")]),
            commit("wg retry t1 --reason \"x\"", &[("t1", "parked-by-tool", "open")]),
            commit("dispatcher", &[("t1", "open", "in-progress"), ("t2", "open", "in-progress")]),
            commit("reaper", &[("t1", "in-progress", "open"), ("agent-1", "dead", "dead")]),
            commit("dispatcher", &[("t2", "in-progress", "open")]),
            commit("wg done t2", &[("t2", "in-progress", "done")]),
        ];
        log[2].changes.push(Change { object: "agent-2".into(), from: None, to: Status::Agent(AgentStatus::Starting) });
        log[5].changes.push(Change { object: "agent-2".into(), from: None, to: Status::Agent(AgentStatus::Working) });
        let expected = orderings_by_definition(&log);
        assert_eq!(expected.len(), 8, "{expected:#?}");
        assert_eq!(orderings(&log), expected);
        assert!(expected.contains(
            "t1: reaper InProgress->Open before wg retry t1 --reason \"x\" Unknown(\"parked-by-tool\")->Open"
        ));
        assert!(expected.contains("agent-2: dispatcher new->Starting before wg done t2 new->Working"));
    }

    #[test]
    fn growth_counts_orderings_first_seen_in_the_last_half() {
        let mut coverage = Coverage::default();
        coverage.add(7, ["b".to_string()].into());
        coverage.add(1, ["a".to_string(), "b".to_string()].into());
        coverage.add(6, ["c".to_string()].into());
        let summary = coverage.summary(0, 10);
        assert_eq!((summary.orderings, summary.new_in_last_half, summary.seeds), (3, 1, 10));
        assert!(summary.to_string().contains("3 orderings"));
        assert!(!summary.to_string().contains("none new"));
    }
}
