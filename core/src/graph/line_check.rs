//! One pass over a task line that checks it against the [`Task`](crate::model::Task) schema and
//! keeps only what the graph indexes, without building the task.
//!
//! Parsing every line into a `Task` (owned strings, maps of unknown fields, log entries) made a
//! command on a 100,000-task graph cost several times the file in memory and most of its time.
//! This view accepts exactly the lines `Task` accepts (the test `agrees_with_task_on_every_field`
//! pins the two together): a field it does not keep is still read as its type and dropped at once.

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

/// What the graph keeps of a task line, borrowed from it where it can be.
#[derive(serde::Deserialize)]
pub struct TaskLineView<'a> {
    /// Checked by the caller to be `"task"`; read here so that a second `kind` is refused.
    #[serde(default, borrow, rename = "kind")]
    _kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    #[serde(borrow)]
    pub status: Cow<'a, str>,
    #[serde(default, borrow)]
    pub after: Vec<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub exec: Option<Cow<'a, str>>,
    #[serde(default)]
    pub crash_loop: Option<crate::model::CrashLoop>,
    /// Upstream's `paused` flag, kept among a task's unknown fields: any value, paused when `true`.
    #[serde(default)]
    pub paused: IsTrue,
    // Read for their type only.
    #[serde(default, rename = "title")]
    _title: Checked<String>,
    #[serde(default, rename = "assigned")]
    _assigned: Option<Checked<String>>,
    #[serde(default, rename = "retry_count")]
    _retry_count: Checked<u32>,
    #[serde(default, rename = "max_retries")]
    _max_retries: Option<Checked<u32>>,
    #[serde(default, rename = "failure_reason")]
    _failure_reason: Option<Checked<String>>,
    #[serde(default, rename = "log")]
    _log: EachOf<LogEntryCheck>,
    #[serde(default, rename = "created_at")]
    _created_at: Option<Checked<String>>,
    #[serde(default, rename = "started_at")]
    _started_at: Option<Checked<String>>,
    #[serde(default, rename = "completed_at")]
    _completed_at: Option<Checked<String>>,
    #[serde(default, rename = "tags")]
    _tags: EachOf<Checked<String>>,
}

/// [`LogEntry`](crate::model::LogEntry)'s schema.
#[derive(serde::Deserialize)]
struct LogEntryCheck {
    #[serde(rename = "timestamp")]
    _timestamp: Checked<String>,
    #[serde(default, rename = "user")]
    _user: Checked<String>,
    #[serde(rename = "message")]
    _message: Checked<String>,
}

/// A value read as `T` would be, then dropped; strings are checked without being copied.
#[derive(Default)]
pub struct Checked<T>(PhantomData<T>);

impl<'de> Deserialize<'de> for Checked<String> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrCheck;
        impl Visitor<'_> for StrCheck {
            type Value = ();
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
                Ok(())
            }
        }
        deserializer.deserialize_str(StrCheck).map(|()| Checked(PhantomData))
    }
}

impl<'de> Deserialize<'de> for Checked<u32> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        u32::deserialize(deserializer).map(|_| Checked(PhantomData))
    }
}

/// An array whose every element is read as `T` and dropped: no vector is built.
pub struct EachOf<T>(PhantomData<T>);

impl<T> Default for EachOf<T> {
    fn default() -> Self {
        EachOf(PhantomData)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for EachOf<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EachVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for EachVisitor<T> {
            type Value = EachOf<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sequence")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<T>()?.is_some() {}
                Ok(EachOf(PhantomData))
            }
        }
        deserializer.deserialize_seq(EachVisitor(PhantomData))
    }
}

/// Any JSON value; remembers only whether it was `true`.
#[derive(Default)]
pub struct IsTrue(pub bool);

impl<'de> Deserialize<'de> for IsTrue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AnyValue;
        impl<'de> Visitor<'de> for AnyValue {
            type Value = bool;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any value")
            }
            fn visit_bool<E: de::Error>(self, value: bool) -> Result<bool, E> {
                Ok(value)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<bool, E> {
                Ok(false)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<bool, E> {
                Ok(false)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<bool, E> {
                Ok(false)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<bool, E> {
                Ok(false)
            }
            fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
                Ok(false)
            }
            fn visit_none<E: de::Error>(self) -> Result<bool, E> {
                Ok(false)
            }
            fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
                deserializer.deserialize_any(self)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(false)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(false)
            }
        }
        deserializer.deserialize_any(AnyValue).map(IsTrue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Task;
    use serde_json::{json, Value};

    /// A task line using every field `Task` knows, each with a valid value.
    fn full_task() -> Value {
        json!({
            "kind": "task", "id": "a", "title": "A", "status": "open", "assigned": "agent-1",
            "after": ["b"], "exec": "true", "retry_count": 1, "max_retries": 3,
            "failure_reason": "x", "log": [{"timestamp": "t", "user": "u", "message": "m", "actor": "z"}],
            "created_at": "t", "started_at": "t", "completed_at": "t", "tags": ["x"],
            "crash_loop": {"deaths_ms": [1], "backoffs_served": 1, "not_before_ms": 5},
            "paused": true, "estimate": {"hours": 1.0}
        })
    }

    fn accepts(line: &Value) -> (bool, bool) {
        let text = line.to_string();
        (serde_json::from_str::<Task>(&text).is_ok(), serde_json::from_str::<TaskLineView>(&text).is_ok())
    }

    #[test]
    fn agrees_with_task_on_every_field() {
        let wrong_values =
            [json!(null), json!(7), json!(-1), json!(1.5), json!("s"), json!(true), json!([]), json!(["s"]), json!({})];
        let full = full_task();
        assert_eq!(accepts(&full), (true, true));
        // `kind` is not the task's: the graph reads it first and checks only `"task"` lines here.
        let fields: Vec<String> = full.as_object().unwrap().keys().filter(|key| *key != "kind").cloned().collect();
        for field in &fields {
            let mut without = full.clone();
            without.as_object_mut().unwrap().remove(field);
            let (task, view) = accepts(&without);
            assert_eq!(task, view, "without {field}");
            for wrong in &wrong_values {
                let mut line = full.clone();
                line[field.as_str()] = wrong.clone();
                let (task, view) = accepts(&line);
                assert_eq!(task, view, "{field} = {wrong}");
            }
        }
        for (entry_field, wrong) in [("timestamp", json!(1)), ("user", json!(null)), ("message", json!([]))] {
            let mut line = full.clone();
            line["log"][0][entry_field] = wrong;
            assert_eq!(accepts(&line), (false, false), "log entry {entry_field}");
            let mut line = full.clone();
            line["log"][0].as_object_mut().unwrap().remove(entry_field);
            let (task, view) = accepts(&line);
            assert_eq!(task, view, "log entry without {entry_field}");
        }
        let mut line = full.clone();
        line["tags"] = json!(["x", 1]);
        assert_eq!(accepts(&line), (false, false));
        let duplicated = r#"{"id":"a","status":"open","id":"b"}"#;
        assert_eq!(
            serde_json::from_str::<Task>(duplicated).is_ok(),
            serde_json::from_str::<TaskLineView>(duplicated).is_ok(),
            "a duplicated field"
        );
    }

    #[test]
    fn paused_is_only_a_literal_true() {
        for (value, paused) in [(json!(true), true), (json!("true"), false), (json!({"a": [true]}), false)] {
            let text = json!({"id": "a", "status": "open", "paused": value}).to_string();
            assert_eq!(serde_json::from_str::<TaskLineView>(&text).unwrap().paused.0, paused, "{value}");
        }
    }
}
