//! RFC 3339 timestamps as upstream workgraph writes them, without a date crate.
//!
//! The core keeps time as milliseconds since the Unix epoch (`EpochMs`), which is what the Clock
//! port hands out; files carry RFC 3339 strings such as `2026-11-24T08:42:57.621944917+00:00`.

/// Milliseconds since 1970-01-01T00:00:00Z.
pub type EpochMs = i64;

const MS_PER_DAY: i64 = 86_400_000;

/// Formats `ms` as `YYYY-MM-DDTHH:MM:SS.mmm000000+00:00` (nanosecond precision, as upstream).
pub fn format_rfc3339(ms: EpochMs) -> String {
    let days = ms.div_euclid(MS_PER_DAY);
    let ms_of_day = ms.rem_euclid(MS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    let seconds = ms_of_day / 1000;
    let fields = [(year, 4), (month, 2), (day, 2), (seconds / 3600, 2), ((seconds / 60) % 60, 2), (seconds % 60, 2)];
    if !(0..=9999).contains(&year) {
        return format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}000000+00:00",
            fields[3].0,
            fields[4].0,
            fields[5].0,
            ms_of_day % 1000
        );
    }
    // Digit by digit: the operations stamp every change, and `format!` was most of a stamp's cost.
    let mut text = String::with_capacity(35);
    let separators = ['-', '-', 'T', ':', ':', '.'];
    for ((value, width), separator) in fields.into_iter().zip(separators) {
        push_digits(&mut text, value, width);
        text.push(separator);
    }
    push_digits(&mut text, ms_of_day % 1000, 3);
    text.push_str("000000+00:00");
    text
}

/// Appends `value` (0 ≤ value < 10^width) as exactly `width` decimal digits.
fn push_digits(text: &mut String, value: i64, width: u32) {
    for place in (0..width).rev() {
        text.push(char::from(b'0' + (value / 10_i64.pow(place) % 10) as u8));
    }
}

/// Parses an RFC 3339 timestamp (`Z` or `±HH:MM` offset, any fraction) to epoch milliseconds.
/// Returns `None` for anything else; callers decide what a missing time means.
pub fn parse_rfc3339(text: &str) -> Option<EpochMs> {
    let bytes = text.as_bytes();
    if bytes.len() < 20 || bytes[4] != b'-' || bytes[7] != b'-' || !matches!(bytes[10], b'T' | b't' | b' ') {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<i64> { text.get(range)?.parse().ok() };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &text[19..];
    let mut fraction_ms = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let padded = format!("{:0<3}", &fraction[..digits.min(3)]);
        fraction_ms = padded.parse::<i64>().ok()?;
        rest = &fraction[digits..];
    }
    let offset_ms = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && matches!(&rest[..1], "+" | "-") && &rest[3..4] == ":" => {
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            let hours: i64 = rest[1..3].parse().ok()?;
            let minutes: i64 = rest[4..6].parse().ok()?;
            sign * (hours * 3_600_000 + minutes * 60_000)
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    Some(days * MS_PER_DAY + ((hour * 60 + minute) * 60 + second) * 1000 + fraction_ms - offset_ms)
}

/// Parses a duration with its unit: `150ms`, `2s`, `1.5s`, `3m`. The one duration syntax of
/// scenario files and of the CLI's options.
pub fn parse_duration_ms(text: &str) -> Result<u64, BadDuration> {
    let error = || BadDuration { text: text.to_string() };
    let text_trimmed = text.trim();
    let (number, scale_ms) = if let Some(number) = text_trimmed.strip_suffix("ms") {
        (number, 1.0)
    } else if let Some(number) = text_trimmed.strip_suffix('s') {
        (number, 1000.0)
    } else if let Some(number) = text_trimmed.strip_suffix('m') {
        (number, 60_000.0)
    } else {
        return Err(error());
    };
    let value: f64 = number.trim().parse().map_err(|_| error())?;
    if !(0.0..1e12).contains(&value) {
        return Err(error());
    }
    Ok((value * scale_ms).round() as u64)
}

/// A duration that [`parse_duration_ms`] cannot read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a duration; write e.g. 150ms, 2s, 1.5s or 3m")]
pub struct BadDuration {
    pub text: String,
}

/// Days since the epoch of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_timestamp_parses_to_the_right_instant() {
        let ms = parse_rfc3339("2026-11-24T08:42:57.621944917+00:00").unwrap();
        assert_eq!(ms, 1_795_509_777_621);
        assert_eq!(format_rfc3339(ms), "2026-11-24T08:42:57.621000000+00:00");
    }

    #[test]
    fn formatting_digit_by_digit_writes_what_format_wrote() {
        let by_format = |ms: EpochMs| {
            let days = ms.div_euclid(MS_PER_DAY);
            let ms_of_day = ms.rem_euclid(MS_PER_DAY);
            let (year, month, day) = civil_from_days(days);
            let seconds = ms_of_day / 1000;
            format!(
                "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}000000+00:00",
                seconds / 3600,
                (seconds / 60) % 60,
                seconds % 60,
                ms_of_day % 1000
            )
        };
        let mut ms: EpochMs = -62_167_219_200_001; // just before year 0: the fallback
        let samples = [0, 1, 999, 59_999, 86_399_999, 951_782_400_123, 1_767_225_600_000, 253_402_300_799_999];
        for sample in samples.into_iter().chain([ms, 253_402_300_800_000]) {
            assert_eq!(format_rfc3339(sample), by_format(sample), "at {sample}");
        }
        for _ in 0..10_000 {
            ms = ms.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407)
                % 300_000_000_000_000;
            assert_eq!(format_rfc3339(ms), by_format(ms), "at {ms}");
        }
    }

    #[test]
    fn offsets_and_zulu_mean_the_same_instant() {
        let zulu = parse_rfc3339("2026-03-01T00:30:00Z").unwrap();
        let plus_one = parse_rfc3339("2026-03-01T01:30:00+01:00").unwrap();
        assert_eq!(zulu, plus_one);
    }

    #[test]
    fn format_and_parse_round_trip_across_leap_years() {
        for ms in [0, 951_782_400_123, 1_709_164_800_000, 4_102_444_799_999] {
            assert_eq!(parse_rfc3339(&format_rfc3339(ms)), Some(ms), "at {ms}");
        }
    }

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(parse_duration_ms("150ms"), Ok(150));
        assert_eq!(parse_duration_ms("1.5s"), Ok(1_500));
        assert_eq!(parse_duration_ms("3m"), Ok(180_000));
        for text in ["2", "-1s", "soon", "1e13s", ""] {
            assert!(parse_duration_ms(text).is_err(), "{text:?}");
        }
        let refused = parse_duration_ms("soon").unwrap_err().to_string();
        assert_eq!(refused, r#""soon" is not a duration; write e.g. 150ms, 2s, 1.5s or 3m"#);
    }

    #[test]
    fn garbage_is_not_a_time() {
        for text in ["", "yesterday", "2026-13-01T00:00:00Z", "2026-11-24T08:42:57", "2026-11-24T08:42:57.Z"] {
            assert_eq!(parse_rfc3339(text), None, "{text:?}");
        }
    }
}
