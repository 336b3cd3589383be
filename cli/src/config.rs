//! `.wg/config.toml` → [`Settings`]. Read only: we never write the config, so nothing in it is lost.
//!
//! Upstream's own keys are honoured where they mean the same thing (`[dispatcher] max_agents`,
//! `poll_interval` in seconds, `[agent] heartbeat_timeout` in minutes); our section
//! `[recovery]` sets the rest and overrides those, in milliseconds.

use std::path::{Path, PathBuf};
use toml::Value;
use wg_core::settings::Settings;

/// Why the config could not be used. Every command stops on it: a setting is never guessed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    /// Not TOML; the parser's message gives the position.
    #[error("{}: {source}", path.display())]
    NotToml { path: PathBuf, source: toml::de::Error },
    #[error("{}: {problem}", path.display())]
    Invalid { path: PathBuf, problem: BadSetting },
}

/// A setting the config has but cannot have.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadSetting {
    #[error("[recovery] must be a table")]
    RecoveryNotATable,
    #[error("{name} must be a whole number >= 0, not {value}")]
    NotWhole { name: String, value: String },
    #[error("{name} must be a list of milliseconds")]
    NotAList { name: String },
    #[error("unknown key recovery.{0} (see README, Configuration)")]
    UnknownKey(String),
}

/// Reads the config; a missing file means the defaults. A bad file is an error with its
/// position, never silently ignored.
pub fn load_settings(path: &Path) -> Result<Settings, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Settings::default()),
        Err(source) => return Err(ConfigError::Read { path: path.to_path_buf(), source }),
    };
    let table: toml::Table =
        text.parse().map_err(|source| ConfigError::NotToml { path: path.to_path_buf(), source })?;
    settings_from(&table).map_err(|problem| ConfigError::Invalid { path: path.to_path_buf(), problem })
}

fn settings_from(table: &toml::Table) -> Result<Settings, BadSetting> {
    let mut settings = Settings::default();
    let read = |section: &str, key: &str| table.get(section).and_then(|section| section.get(key));
    if let Some(value) = read("dispatcher", "max_agents") {
        settings.max_agents = whole(value, "dispatcher.max_agents")? as usize;
    }
    if let Some(value) = read("dispatcher", "poll_interval") {
        settings.poll_interval_ms = whole(value, "dispatcher.poll_interval")? * 1000;
    }
    if let Some(value) = read("agent", "heartbeat_timeout") {
        let minutes = whole(value, "agent.heartbeat_timeout")?;
        settings.heartbeat_timeout_ms = (minutes > 0).then_some(minutes * 60_000);
    }
    let Some(recovery) = table.get("recovery") else { return Ok(settings) };
    let recovery = recovery.as_table().ok_or(BadSetting::RecoveryNotATable)?;
    for (key, value) in recovery {
        let name = format!("recovery.{key}");
        match key.as_str() {
            "grace_ms" => settings.grace_ms = whole(value, &name)?,
            "kill_wait_ms" => settings.kill_wait_ms = whole(value, &name)?,
            "heartbeat_timeout_ms" => {
                let timeout_ms = whole(value, &name)?;
                settings.heartbeat_timeout_ms = (timeout_ms > 0).then_some(timeout_ms);
            }
            "starting_timeout_ms" => settings.starting_timeout_ms = whole(value, &name)?,
            "max_agents" => settings.max_agents = whole(value, &name)? as usize,
            "poll_interval_ms" => settings.poll_interval_ms = whole(value, &name)?.max(1),
            "crash_loop_deaths" => settings.crash_loop.deaths_max = whole(value, &name)?.max(1) as usize,
            "crash_loop_window_ms" => settings.crash_loop.window_ms = whole(value, &name)?,
            "crash_loop_backoffs_ms" => {
                let list = value.as_array().ok_or_else(|| BadSetting::NotAList { name: name.clone() })?;
                settings.crash_loop.backoffs_ms =
                    list.iter().map(|item| whole(item, &name)).collect::<Result<_, _>>()?;
            }
            other => return Err(BadSetting::UnknownKey(other.to_string())),
        }
    }
    Ok(settings)
}

fn whole(value: &Value, name: &str) -> Result<u64, BadSetting> {
    value
        .as_integer()
        .and_then(|number| u64::try_from(number).ok())
        .ok_or_else(|| BadSetting::NotWhole { name: name.to_string(), value: value.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_config_is_read_in_its_units() {
        let table: toml::Table =
            "[agent]\nheartbeat_timeout = 5\n[dispatcher]\nmax_agents = 8\npoll_interval = 2\n".parse().unwrap();
        let settings = settings_from(&table).unwrap();
        assert_eq!(settings.max_agents, 8);
        assert_eq!(settings.poll_interval_ms, 2_000);
        assert_eq!(settings.heartbeat_timeout_ms, Some(300_000));
    }

    #[test]
    fn recovery_section_overrides_and_rejects_unknown_keys() {
        let table: toml::Table = "[agent]\nheartbeat_timeout = 5\n[recovery]\nheartbeat_timeout_ms = 0\ngrace_ms = 100\ncrash_loop_backoffs_ms = [1, 2]\n".parse().unwrap();
        let settings = settings_from(&table).unwrap();
        assert_eq!(settings.heartbeat_timeout_ms, None);
        assert_eq!(settings.grace_ms, 100);
        assert_eq!(settings.crash_loop.backoffs_ms, vec![1, 2]);
        let bad: toml::Table = "[recovery]\ngrace = 1\n".parse().unwrap();
        assert_eq!(settings_from(&bad), Err(BadSetting::UnknownKey("grace".into())));
        let negative: toml::Table = "[recovery]\ngrace_ms = -1\n".parse().unwrap();
        let refused = settings_from(&negative).unwrap_err().to_string();
        assert_eq!(refused, "recovery.grace_ms must be a whole number >= 0, not -1");
    }
}
