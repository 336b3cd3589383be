//! Tasks, agents and their statuses, with upstream workgraph's field names.
//!
//! Every record keeps the fields we do not know in `extra`, so a rewrite loses nothing (S8).
//! Statuses we do not know are kept verbatim as `Unknown` and never acted on.

use crate::time::{format_rfc3339, parse_rfc3339, EpochMs};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use std::fmt;

macro_rules! status_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $($variant,)+
            /// A status written by another tool that this version does not know; kept verbatim.
            Unknown(String),
        }

        impl $name {
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $text,)+
                    Self::Unknown(text) => text,
                }
            }

            pub fn parse(text: &str) -> Self {
                match text {
                    $($text => Self::$variant,)+
                    other => Self::Unknown(other.to_string()),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                Ok(Self::parse(&text))
            }
        }
    };
}

status_enum! {
    /// Upstream workgraph's task statuses.
    TaskStatus {
        Open => "open",
        InProgress => "in-progress",
        Waiting => "waiting",
        Done => "done",
        Blocked => "blocked",
        Failed => "failed",
        Abandoned => "abandoned",
        PendingValidation => "pending-validation",
        PendingEval => "pending-eval",
        FailedPendingEval => "failed-pending-eval",
        Incomplete => "incomplete",
    }
}

status_enum! {
    /// Upstream workgraph's agent statuses.
    AgentStatus {
        Starting => "starting",
        Working => "working",
        Idle => "idle",
        Stopping => "stopping",
        Parked => "parked",
        Frozen => "frozen",
        Done => "done",
        Failed => "failed",
        Dead => "dead",
    }
}

impl AgentStatus {
    /// Whether the registry still believes a process runs for this entry.
    pub fn is_running(&self) -> bool {
        matches!(self, Self::Starting | Self::Working | Self::Idle | Self::Stopping | Self::Parked | Self::Frozen)
    }
}

fn is_zero(value: &u32) -> bool {
    *value == 0
}

/// One entry of a task's log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    pub timestamp: String,
    #[serde(default = "unknown_user")]
    pub user: String,
    pub message: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn unknown_user() -> String {
    "unknown".to_string()
}

/// A `"kind":"task"` line of `graph.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    #[serde(default)]
    pub title: String,
    pub status: TaskStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigned: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retry_count: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log: Vec<LogEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Crash-loop bookkeeping of ours (absent on tasks that never died).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crash_loop: Option<CrashLoop>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Deaths of a task's agents inside the throttle window, and the backoff they caused.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrashLoop {
    /// Times of recent deaths, oldest first, pruned to the window.
    #[serde(default)]
    pub deaths_ms: Vec<i64>,
    /// How many backoffs have been served since the loop began.
    #[serde(default)]
    pub backoffs_served: u32,
    /// The dispatcher leaves the task alone until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before_ms: Option<i64>,
}

impl Task {
    pub fn new(id: &str, title: &str) -> Self {
        Task {
            id: id.to_string(),
            title: title.to_string(),
            status: TaskStatus::Open,
            assigned: None,
            after: Vec::new(),
            exec: None,
            retry_count: 0,
            max_retries: None,
            failure_reason: None,
            log: Vec::new(),
            created_at: None,
            started_at: None,
            completed_at: None,
            tags: Vec::new(),
            crash_loop: None,
            extra: Map::new(),
        }
    }

    /// `.evaluate-*` and `.flip-*` tasks belong to the agency; recovery never changes them (S5).
    pub fn is_companion(&self) -> bool {
        is_companion_id(&self.id)
    }

    /// Appends an entry stamped `now_ms`, or the time of the entry before it if that is later.
    /// An operation reads the clock before it waits for the lock, so another command may commit
    /// an entry in between: an entry must never claim to precede one committed before it, or
    /// `wg show` lists the log out of time order. (Its commit did happen after the one before.)
    pub fn push_log(&mut self, now_ms: EpochMs, user: &str, message: String) {
        let previous_ms = self.log.last().and_then(|entry| parse_rfc3339(&entry.timestamp));
        let at_ms = previous_ms.map_or(now_ms, |previous_ms| previous_ms.max(now_ms));
        self.log.push(LogEntry {
            timestamp: format_rfc3339(at_ms),
            user: user.to_string(),
            message,
            extra: Map::new(),
        });
    }
}

/// The one rule of a crash-loop backoff: a task held back until `not_before_ms` may start at that
/// instant, not before. `Some(until)` while it still waits.
pub fn backoff_pending(not_before_ms: Option<EpochMs>, now_ms: EpochMs) -> Option<EpochMs> {
    not_before_ms.filter(|&at| at > now_ms)
}

pub fn is_companion_id(id: &str) -> bool {
    id.starts_with(".evaluate-") || id.starts_with(".flip-")
}

/// One entry of `service/registry.json`'s `agents` map.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Agent {
    pub id: String,
    /// A process id as written; another tool may have written nonsense such as 0 or -1, which the
    /// process port refuses to signal.
    #[serde(default)]
    pub pid: i64,
    pub task_id: String,
    #[serde(default = "shell_executor")]
    pub executor: String,
    pub started_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat: Option<String>,
    pub status: AgentStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    /// Start time of the process (field 22 of `/proc/<pid>/stat`), recorded by us at spawn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_start_ticks: Option<u64>,
    /// Set while a `wg retry` or `wg agents kill` is stopping this agent: who and since when, so a
    /// second one waits instead of killing again, and a crashed one is taken over after a bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_requested: Option<StopRequest>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopRequest {
    pub by: String,
    pub at_ms: i64,
}

fn shell_executor() -> String {
    "shell".to_string()
}

/// Which process a registry entry means: the pid alone is not enough, pids get reused.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcessRef {
    pub pid: i64,
    /// Start time recorded at spawn, when we spawned it.
    pub start_ticks: Option<u64>,
    /// The entry's `started_at`: a process that started later is not this agent.
    pub started_at_ms: Option<i64>,
}

impl Agent {
    pub fn process(&self) -> ProcessRef {
        ProcessRef {
            pid: self.pid,
            start_ticks: self.process_start_ticks,
            started_at_ms: crate::time::parse_rfc3339(&self.started_at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_entry_never_claims_to_precede_the_entry_before_it() {
        let mut task: Task = serde_json::from_str(r#"{"id":"t1","status":"open"}"#).unwrap();
        task.push_log(2_000, "dispatcher", "Spawned agent-4".into());
        // A retry read the clock at 1.5 s, then waited for the lock while the dispatcher committed.
        task.push_log(1_500, "wg retry", "Retried: hung".into());
        task.push_log(3_000, "reaper", "agent-4 ended".into());
        let times: Vec<&str> = task.log.iter().map(|entry| entry.timestamp.as_str()).collect();
        assert_eq!(times, [format_rfc3339(2_000), format_rfc3339(2_000), format_rfc3339(3_000)]);
    }
}
