//! `.wg/config.toml` → [`Settings`]. Read only: we never write the config, so nothing in it is lost.
//!
//! Upstream's own keys are honoured where they mean the same thing (`[dispatcher] max_agents`,
//! `poll_interval` in seconds, `[agent] heartbeat_timeout` in minutes); our section
//! `[recovery]` sets the rest and overrides those, in milliseconds.

use std::path::Path;
use toml::Value;
use wg_core::settings::Settings;

/// Reads the config; a missing file means the defaults. A bad file is an error with its
/// position, never silently ignored.
pub fn load_settings(path: &Path) -> Result<Settings, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Settings::default()),
        Err(error) => return Err(format!("cannot read {}: {error}", path.display())),
    };
    let table: toml::Table = text.parse().map_err(|error| format!("{}: {error}", path.display()))?;
    settings_from(&table).map_err(|message| format!("{}: {message}", path.display()))
}

fn settings_from(table: &toml::Table) -> Result<Settings, String> {
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
    let recovery = recovery.as_table().ok_or("[recovery] must be a table")?;
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
                let list = value.as_array().ok_or(format!("{name} must be a list of milliseconds"))?;
                settings.crash_loop.backoffs_ms =
                    list.iter().map(|item| whole(item, &name)).collect::<Result<_, _>>()?;
            }
            other => return Err(format!("unknown key recovery.{other} (see README, Configuration)")),
        }
    }
    Ok(settings)
}

fn whole(value: &Value, name: &str) -> Result<u64, String> {
    value
        .as_integer()
        .and_then(|number| u64::try_from(number).ok())
        .ok_or_else(|| format!("{name} must be a whole number >= 0, not {value}"))
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
        assert!(settings_from(&bad).unwrap_err().contains("recovery.grace"));
    }
}
