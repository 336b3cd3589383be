//! `--grace 5s`, `200ms`, `1.5s`, or a bare number of seconds.

pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, scale_ms) = if let Some(number) = text.strip_suffix("ms") {
        (number, 1.0)
    } else if let Some(number) = text.strip_suffix('s') {
        (number, 1000.0)
    } else if let Some(number) = text.strip_suffix('m') {
        (number, 60_000.0)
    } else {
        (text, 1000.0)
    };
    let value: f64 = number.trim().parse().map_err(|_| format!("{text:?} is not a duration (try 5s or 200ms)"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!("{text:?} is not a duration (try 5s or 200ms)"));
    }
    Ok((value * scale_ms).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::parse_duration_ms;

    #[test]
    fn units_are_read() {
        assert_eq!(parse_duration_ms("5s"), Ok(5_000));
        assert_eq!(parse_duration_ms("200ms"), Ok(200));
        assert_eq!(parse_duration_ms("1.5s"), Ok(1_500));
        assert_eq!(parse_duration_ms("2"), Ok(2_000));
        assert_eq!(parse_duration_ms("1m"), Ok(60_000));
        assert!(parse_duration_ms("-1s").is_err());
        assert!(parse_duration_ms("soon").is_err());
    }
}
