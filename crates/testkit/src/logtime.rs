//! The time stamp that starts a log line of the app or the relay (tracing's format, UTC):
//! "2026-11-25T09:30:08.166578Z  INFO …".

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The line's time stamp, if it starts with one.
pub fn line_time(line: &str) -> Option<SystemTime> {
    let stamp = line.split_whitespace().next()?.strip_suffix('Z')?;
    let (date, time) = stamp.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.splitn(3, ':');
    let h: u64 = t.next()?.parse().ok()?;
    let min: u64 = t.next()?.parse().ok()?;
    let sec: f64 = t.next()?.parse().ok()?;
    // Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + day - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let whole = u64::try_from(days).ok()? * 86_400 + h * 3_600 + min * 60;
    Some(UNIX_EPOCH + Duration::from_secs(whole) + Duration::try_from_secs_f64(sec).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tracing_stamps() {
        let t = line_time("2026-11-25T09:30:08.166578Z  INFO talkbell: hi").unwrap();
        let us = t.duration_since(UNIX_EPOCH).unwrap().as_micros();
        assert_eq!(us, 1_795_599_008_166_578);
        assert_eq!(line_time("1970-01-01T00:00:00Z x"), Some(UNIX_EPOCH));
        assert_eq!(line_time("no stamp here"), None);
    }
}
