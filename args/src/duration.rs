//! Durations on the command line: `--grace 5s`, `200ms`, `1.5s`, or a bare number of seconds.

/// The core's duration syntax, plus a bare number meaning seconds (as `sleep` reads it).
pub fn parse_duration_ms(text: &str) -> Result<u64, wg_core::time::BadDuration> {
    let parsed = match text.trim().parse::<f64>() {
        Ok(_) => wg_core::time::parse_duration_ms(&format!("{}s", text.trim())),
        Err(_) => wg_core::time::parse_duration_ms(text),
    };
    // The error names what the user typed, not the seconds we read it as.
    parsed.map_err(|_| wg_core::time::BadDuration { text: text.to_string() })
}

#[cfg(test)]
mod tests {
    use super::parse_duration_ms;

    #[test]
    fn units_are_read_and_a_bare_number_is_seconds() {
        assert_eq!(parse_duration_ms("5s"), Ok(5_000));
        assert_eq!(parse_duration_ms("200ms"), Ok(200));
        assert_eq!(parse_duration_ms("1.5s"), Ok(1_500));
        assert_eq!(parse_duration_ms("2"), Ok(2_000));
        assert_eq!(parse_duration_ms("1m"), Ok(60_000));
        assert!(parse_duration_ms("-1s").is_err());
        assert_eq!(parse_duration_ms("-1").unwrap_err().text, "-1", "named as typed");
        assert!(parse_duration_ms("soon").is_err());
    }
}
