//! RFC 3339 timestamps as upstream workgraph writes them, without a date crate.
//!
//! The core keeps time as milliseconds since the Unix epoch (`EpochMs`), which is what the Clock
//! port hands out; files carry RFC 3339 strings such as `2026-11-24T08:42:57.621944917+00:00`.

/// Milliseconds since 1970-01-01T00:00:00Z.
pub type EpochMs = i64;

use std::ops::Range;

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
    // Digit by digit into a template: the operations stamp every change, and `format!` was most
    // of a stamp's cost.
    let mut text = *b"0000-00-00T00:00:00.000000000+00:00";
    let starts = [0, 5, 8, 11, 14, 17];
    for ((value, width), start) in fields.into_iter().zip(starts) {
        write_digits(&mut text[start..start + width], value);
    }
    write_digits(&mut text[20..23], ms_of_day % 1000);
    String::from_utf8(text.to_vec()).expect("ASCII digits in an ASCII template")
}

/// Writes `value` (0 ≤ value < 10^len) as exactly `digits.len()` decimal digits.
fn write_digits(digits: &mut [u8], mut value: i64) {
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// Parses an RFC 3339 timestamp (`Z` or `±HH:MM` offset, any fraction) to epoch milliseconds.
/// Returns `None` for anything else; callers decide what a missing time means.
pub fn parse_rfc3339(text: &str) -> Option<EpochMs> {
    let bytes = text.as_bytes();
    if bytes.len() < 20 || bytes[4] != b'-' || bytes[7] != b'-' || !matches!(bytes[10], b'T' | b't' | b' ') {
        return None;
    }
    // Read digit by digit: the reaper reads every agent's times each sweep, and `str::parse`
    // with a padded copy of the fraction was most of a read's cost.
    let number = |range: Range<usize>| digits_value(bytes.get(range)?);
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if bytes[13] != b':' || bytes[16] != b':' {
        return None;
    }
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &bytes[19..];
    let mut fraction_ms = 0;
    if let Some(fraction) = rest.strip_prefix(b".") {
        let digits = fraction.iter().take_while(|byte| byte.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        // The first three digits are the milliseconds, the missing ones zeros: ".5" is 500 ms.
        fraction_ms = fraction[..3.min(digits)]
            .iter()
            .chain(b"00")
            .take(3)
            .fold(0, |ms, &digit| ms * 10 + i64::from(digit - b'0'));
        rest = &fraction[digits..];
    }
    let offset_ms = match rest {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), hours @ .., b':', _, _] if hours.len() == 2 => {
            let sign = if *sign == b'-' { -1 } else { 1 };
            sign * (digits_value(hours)? * 3_600_000 + digits_value(&rest[4..6])? * 60_000)
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    Some(days * MS_PER_DAY + ((hour * 60 + minute) * 60 + second) * 1000 + fraction_ms - offset_ms)
}

/// The value of ASCII decimal digits; `None` if any byte is not one.
fn digits_value(digits: &[u8]) -> Option<i64> {
    digits.iter().try_fold(0, |value, &byte| byte.is_ascii_digit().then(|| value * 10 + i64::from(byte - b'0')))
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
    fn parsing_digit_by_digit_reads_what_str_parse_read() {
        // The parser before, for well-formed input (it also took signs inside fields, see below).
        let by_str_parse = |text: &str| -> Option<EpochMs> {
            let number = |range: std::ops::Range<usize>| -> Option<i64> { text.get(range)?.parse().ok() };
            let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
            let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
            let mut rest = &text[19..];
            let mut fraction_ms = 0;
            if let Some(fraction) = rest.strip_prefix('.') {
                let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
                fraction_ms = format!("{:0<3}", &fraction[..digits.min(3)]).parse::<i64>().ok()?;
                rest = &fraction[digits..];
            }
            let offset_ms = match rest {
                "Z" | "z" => 0,
                _ => {
                    let sign = if rest.starts_with('-') { -1 } else { 1 };
                    sign * (rest[1..3].parse::<i64>().ok()? * 3_600_000 + rest[4..6].parse::<i64>().ok()? * 60_000)
                }
            };
            let days = days_from_civil(year, month, day);
            Some(days * MS_PER_DAY + ((hour * 60 + minute) * 60 + second) * 1000 + fraction_ms - offset_ms)
        };
        let mut state: u64 = 7;
        let mut next = |bound: u64| {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) % bound
        };
        let fractions = ["", ".5", ".12", ".123", ".1234", ".621944917"];
        let offsets = ["Z", "z", "+00:00", "+05:30", "-11:45", "+14:00"];
        for _ in 0..10_000 {
            let text = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{}{}",
                next(10_000),
                1 + next(12),
                1 + next(31),
                next(24),
                next(60),
                next(61),
                fractions[next(6) as usize],
                offsets[next(6) as usize]
            );
            assert_eq!(parse_rfc3339(&text), by_str_parse(&text), "{text}");
            assert!(parse_rfc3339(&text).is_some(), "{text}");
        }
    }

    #[test]
    fn a_sign_or_a_wrong_separator_inside_a_timestamp_is_not_a_time() {
        for text in
            ["2026-+1-24T08:42:57Z", "2026-11-24T-1:42:57Z", "2026-11-24T08x42x57Z", "2026-11-24T08:42:57+-1:00"]
        {
            assert_eq!(parse_rfc3339(text), None, "{text:?}");
        }
        assert_eq!(parse_rfc3339("2026-11-24T08:42:57é1:00"), None, "a multi-byte offset is refused, not a panic");
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
