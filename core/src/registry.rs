//! `service/registry.json`: the agents map and the next agent number.

use crate::model::Agent;
use crate::ports::StoreError;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Registry {
    /// Shared by clones until one changes it: each transaction starts from a clone, and most
    /// change nothing in the registry.
    #[serde(serialize_with = "shared::serialize", deserialize_with = "shared::deserialize")]
    file: Arc<RegistryFile>,
    #[serde(skip)]
    changed: bool,
}

/// What the file holds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
// Named as before in serde's messages ("expected struct Registry").
#[serde(rename = "Registry")]
struct RegistryFile {
    /// Each entry shared too: a change to one agent copies the map's nodes, not every agent.
    #[serde(default, with = "shared_entries")]
    agents: BTreeMap<String, Arc<Agent>>,
    #[serde(default = "first_agent_number")]
    next_agent_id: u64,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

fn first_agent_number() -> u64 {
    1
}

/// An `Arc`'d value written and read as the value itself.
mod shared {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::sync::Arc;

    pub fn serialize<T: Serialize, S: Serializer>(value: &Arc<T>, serializer: S) -> Result<S::Ok, S::Error> {
        T::serialize(value, serializer)
    }

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(deserializer: D) -> Result<Arc<T>, D::Error> {
        T::deserialize(deserializer).map(Arc::new)
    }
}

/// A map of `Arc`'d values written and read as the map of the values themselves.
mod shared_entries {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;
    use std::sync::Arc;

    pub fn serialize<T: Serialize, S: Serializer>(
        map: &BTreeMap<String, Arc<T>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_map(map.iter().map(|(key, value)| (key, &**value)))
    }

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<BTreeMap<String, Arc<T>>, D::Error> {
        let map = BTreeMap::<String, T>::deserialize(deserializer)?;
        Ok(map.into_iter().map(|(key, value)| (key, Arc::new(value))).collect())
    }
}

/// Why `service/registry.json` does not parse; `line` (from 1) where the JSON parser knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryParseError {
    pub line: Option<usize>,
    pub message: String,
}

impl RegistryParseError {
    /// serde_json's message ends "at line L column C": the line becomes the field (so the store
    /// says `registry.json:L:` as it does for the graph), the column stays in the message.
    fn from_json(error: serde_json::Error) -> RegistryParseError {
        let text = error.to_string();
        let located = format!(" at line {} column {}", error.line(), error.column());
        match text.strip_suffix(&located) {
            Some(message) if error.line() > 0 => RegistryParseError {
                line: Some(error.line()),
                message: format!("{message} (column {})", error.column()),
            },
            _ => RegistryParseError { line: None, message: text },
        }
    }

    /// The store's error for this registry read from `file`: nothing was written.
    pub fn in_file(self, file: String) -> StoreError {
        StoreError::Corrupt { file, line: self.line, message: self.message }
    }
}

impl fmt::Display for RegistryParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for RegistryParseError {}

impl Registry {
    pub fn empty() -> Self {
        let file = RegistryFile { next_agent_id: 1, ..RegistryFile::default() };
        Registry { file: Arc::new(file), changed: false }
    }

    /// Parses the registry; an empty file is an empty registry.
    pub fn parse(bytes: &[u8]) -> Result<Registry, RegistryParseError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Registry::empty());
        }
        let registry: Registry = serde_json::from_slice(bytes).map_err(RegistryParseError::from_json)?;
        for (key, agent) in &registry.file.agents {
            if key != &agent.id {
                let message = format!("agent entry {key:?} has id {:?}; the two must match", agent.id);
                return Err(RegistryParseError { line: None, message });
            }
        }
        Ok(registry)
    }

    pub fn render(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("a registry always serializes");
        text.push('\n');
        text
    }

    pub fn agent(&self, id: &str) -> Option<&Agent> {
        self.file.agents.get(id).map(|agent| &**agent)
    }

    pub fn agent_mut(&mut self, id: &str) -> Option<&mut Agent> {
        if !self.file.agents.contains_key(id) {
            return None;
        }
        self.file_mut().agents.get_mut(id).map(Arc::make_mut)
    }

    pub fn agents(&self) -> impl Iterator<Item = &Agent> {
        self.file.agents.values().map(|agent| &**agent)
    }

    /// Fields another tool wrote at the top level, kept as they were (S8).
    pub fn extra(&self) -> &Map<String, Value> {
        &self.file.extra
    }

    /// Hands out the next `agent-N` id.
    pub fn allocate_agent_id(&mut self) -> String {
        let file = self.file_mut();
        loop {
            let id = format!("agent-{}", file.next_agent_id);
            file.next_agent_id += 1;
            if !file.agents.contains_key(&id) {
                return id;
            }
        }
    }

    pub fn insert(&mut self, agent: Agent) {
        self.file_mut().agents.insert(agent.id.clone(), Arc::new(agent));
    }

    /// The registry to change, copied first if a clone shares it; it is written on commit.
    fn file_mut(&mut self) -> &mut RegistryFile {
        self.changed = true;
        Arc::make_mut(&mut self.file)
    }

    pub fn is_changed(&self) -> bool {
        self.changed
    }

    /// This registry as a fresh read of what [`Registry::render`] writes for it: the same value,
    /// no longer changed. For the simulator's store, which then need not render and parse the
    /// text back to know what the next reader sees (the test below holds it to that).
    pub fn into_saved(mut self) -> Registry {
        self.changed = false;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clone_shares_what_was_read_until_one_of_the_two_changes_it() {
        let text = r#"{"agents": {"agent-1": {"id": "agent-1", "pid": 7, "task_id": "t1",
            "started_at": "2026-01-01T00:00:00Z", "status": "working"}}, "next_agent_id": 2}"#;
        let original = Registry::parse(text.as_bytes()).unwrap();
        let mut copy = original.clone();
        assert!(Arc::ptr_eq(&original.file, &copy.file));
        assert!(copy.agent_mut("agent-9").is_none() && !copy.is_changed(), "no such agent: nothing changes");
        copy.agent_mut("agent-1").unwrap().pid = 8;
        assert_eq!(original.agent("agent-1").unwrap().pid, 7, "the original keeps its agent");
        assert!(!Arc::ptr_eq(&original.file.agents["agent-1"], &copy.file.agents["agent-1"]));
        assert_eq!(copy.agent("agent-1").unwrap().pid, 8);
        assert_eq!(Registry::parse(copy.render().as_bytes()).unwrap().into_saved(), copy.into_saved());
        let error = Registry::parse(b"[1]").unwrap_err();
        assert!(error.message.contains("expected struct Registry"), "{error}");
    }

    #[test]
    fn a_saved_registry_is_what_reading_its_rendered_text_gives() {
        let text = r#"{"agents": {"agent-3": {"id": "agent-3", "pid": 101, "task_id": "t1",
            "executor": "shell", "started_at": "2026-01-01T00:00:00Z", "status": "working",
            "future_field": [1, 2]}}, "next_agent_id": 4, "service_note": "kept"}"#;
        let mut registry = Registry::parse(text.as_bytes()).unwrap();
        let id = registry.allocate_agent_id();
        let mut agent = registry.agent("agent-3").unwrap().clone();
        agent.id = id;
        registry.insert(agent);
        registry.agent_mut("agent-3").unwrap().pid = 102;
        assert!(registry.is_changed());
        let read_back = Registry::parse(registry.render().as_bytes()).unwrap();
        let saved = registry.into_saved();
        assert!(!saved.is_changed());
        assert_eq!(saved, read_back);
        assert_eq!(saved.extra().get("service_note"), Some(&Value::from("kept")));
    }
}
