//! Quiet hours and muted senders: when a talk for the user is stored and counted as
//! unread but raises no popup of its own.
//!
//! - **Quiet hours** are a daily schedule in local time (`22:00`–`08:00` crosses
//!   midnight). Talks in them are held, and one summary of them shows when they end
//!   (the gate does that, `gate.rs`). The end is a local time, so it is found in the time
//!   zone each night: a night that loses or gains an hour (DST) ends at the local `to`
//!   all the same; a `to` that does not exist that night (inside the spring-forward gap)
//!   ends as far past the gap as it is into it (`02:30` is `03:30` that night, as
//!   the clock itself would say), and one that exists twice (the autumn fold)
//!   ends at the first of them that is still ahead.
//! - **Mutes** are per sender (by user id, the name kept for people to read), until a
//!   time or until unmuted. A muted sender's talks never pop up, not even in a summary.
//!
//! Pure: every question takes the wall time and the time zone ([`Hush`] holds the zone),
//! so the rules are tested on zones with DST while tokio's paused clock moves only the
//! monotonic clock.

use std::fmt;
use std::str::FromStr;

use jiff::civil::{Date, Time};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::Timestamp;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::protocol::UserId;

/// A time of day to the minute, `HH:MM` (24-hour) in the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DayTime(Time);

/// A time of day that is not `HH:MM` with `HH` 00–23 and `MM` 00–59.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", crate::i18n::text(crate::i18n::Msg::BadDayTime, &[("text", _0.as_str().into())]))]
pub struct BadDayTime(String);

impl DayTime {
    /// `hour`:`minute`, when both are in range.
    pub fn new(hour: i8, minute: i8) -> Option<DayTime> {
        Time::new(hour, minute, 0, 0).ok().map(DayTime)
    }

    fn time(self) -> Time {
        self.0
    }
}

impl FromStr for DayTime {
    type Err = BadDayTime;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadDayTime(s.to_owned());
        let (h, m) = s.trim().split_once(':').ok_or_else(bad)?;
        let two_digits = |part: &str| part.len() == 2 && part.bytes().all(|b| b.is_ascii_digit());
        if !two_digits(h) || !two_digits(m) {
            return Err(bad());
        }
        let (h, m) = (h.parse::<i8>().map_err(|_| bad())?, m.parse::<i8>().map_err(|_| bad())?);
        DayTime::new(h, m).ok_or_else(bad)
    }
}

impl fmt::Display for DayTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0.hour(), self.0.minute())
    }
}

impl Serialize for DayTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DayTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A daily quiet period, from `from` up to (not including) `to`, local time. `from`
/// later than `to` crosses midnight. Equal times are refused by the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    pub from: DayTime,
    pub to: DayTime,
}

impl QuietHours {
    /// When the quiet period that `at` falls in ends; `None` when `at` is not in quiet
    /// hours.
    pub fn ends(&self, at: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let local = tz.to_datetime(at);
        let (day, now) = (local.date(), local.time());
        let (from, to) = (self.from.time(), self.to.time());
        let end_day = if from < to {
            (from <= now && now < to).then_some(day)?
        } else if from > to {
            if now >= from {
                day.tomorrow().ok()?
            } else if now < to {
                day
            } else {
                return None;
            }
        } else {
            return None;
        };
        local_end(end_day, to, at, tz)
    }
}

/// The moment `day` at `to` happens in `tz`, the first such one after `at` (see the
/// module doc for the gap and the fold).
fn local_end(day: Date, to: Time, at: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
    let ambiguous = tz.to_ambiguous_timestamp(day.to_datetime(to));
    let end = match ambiguous.offset() {
        // The clock skips `to`: the gap's far side, as much after it as `to` is into it.
        AmbiguousOffset::Unambiguous { .. } | AmbiguousOffset::Gap { .. } => ambiguous.compatible().ok()?,
        AmbiguousOffset::Fold { .. } => match ambiguous.earlier().ok()? {
            first if first > at => first,
            _ => ambiguous.later().ok()?,
        },
    };
    (end > at).then_some(end)
}

/// One muted sender.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mute {
    pub sender: UserId,
    /// The sender's name when muted, for the list of mutes (the id is what counts).
    #[serde(default)]
    pub name: String,
    /// The end of the mute; none: until unmuted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Timestamp>,
}

impl Mute {
    /// Whether the mute is on at `at`.
    pub fn holds(&self, at: Timestamp) -> bool {
        self.until.is_none_or(|end| at < end)
    }
}

/// What silences popups without a pause: quiet hours in a time zone, muted senders, and
/// whether popups make a sound.
#[derive(Clone, Debug, PartialEq)]
pub struct Hush {
    quiet: Option<QuietHours>,
    tz: TimeZone,
    mutes: Vec<Mute>,
    sound: bool,
}

impl Default for Hush {
    /// No quiet hours, no mutes, sound on, the system's time zone.
    fn default() -> Self {
        Hush::new(None, TimeZone::system(), Vec::new(), true)
    }
}

impl Hush {
    pub fn new(quiet: Option<QuietHours>, tz: TimeZone, mutes: Vec<Mute>, sound: bool) -> Self {
        Hush { quiet, tz, mutes, sound }
    }

    /// Whether talks from `sender` are muted at `at`.
    pub fn muted(&self, sender: &UserId, at: Timestamp) -> bool {
        self.mutes.iter().any(|m| m.sender == *sender && m.holds(at))
    }

    /// When the quiet hours `at` falls in end; `None` outside quiet hours.
    pub fn quiet_ends(&self, at: Timestamp) -> Option<Timestamp> {
        self.quiet.as_ref()?.ends(at, &self.tz)
    }

    /// Whether popups carry a sound.
    pub fn sound(&self) -> bool {
        self.sound
    }
}

/// The mutes in force at `at`, with `sender` muted until `until` (none: until unmuted)
/// in place of any mute it had: what a "Mute" click saves.
pub fn with_mute(mutes: &[Mute], mute: Mute, at: Timestamp) -> Vec<Mute> {
    let mut kept = without_mute(mutes, &mute.sender, at);
    kept.push(mute);
    kept
}

/// The mutes in force at `at`, without any of `sender`'s: what "Unmute" saves.
pub fn without_mute(mutes: &[Mute], sender: &UserId, at: Timestamp) -> Vec<Mute> {
    mutes.iter().filter(|m| m.sender != *sender && m.holds(at)).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(zone: &str, local: &str) -> (Timestamp, TimeZone) {
        let tz = TimeZone::get(zone).unwrap();
        let dt: jiff::civil::DateTime = local.parse().unwrap();
        (tz.to_ambiguous_timestamp(dt).compatible().unwrap(), tz)
    }

    fn quiet(from: &str, to: &str) -> QuietHours {
        QuietHours { from: from.parse().unwrap(), to: to.parse().unwrap() }
    }

    fn local(ts: Timestamp, tz: &TimeZone) -> String {
        tz.to_datetime(ts).strftime("%Y-%m-%d %H:%M").to_string()
    }

    #[test]
    fn day_times_parse_as_hh_mm_only() {
        let table: &[(&str, Option<&str>)] = &[
            ("22:00", Some("22:00")),
            ("07:30", Some("07:30")),
            (" 00:00 ", Some("00:00")),
            ("23:59", Some("23:59")),
            ("24:00", None),
            ("7:30", None),
            ("07:60", None),
            ("0730", None),
            ("-1:00", None),
            ("", None),
            ("22:00:00", None),
        ];
        for (text, want) in table {
            let got = text.parse::<DayTime>().ok().map(|t| t.to_string());
            assert_eq!(got.as_deref(), *want, "{text:?}");
        }
        let err = "25:00".parse::<DayTime>().unwrap_err().to_string();
        assert!(err.contains("HH:MM"), "{err}");
    }

    /// (schedule, zone, local time) → the local end of the quiet period, or none.
    #[test]
    fn quiet_periods_end_at_the_local_end_time() {
        let table: &[(&str, &str, &str, &str, Option<&str>)] = &[
            // Crossing midnight: before, inside on both sides of midnight, edges.
            ("22:00", "08:00", "Europe/Berlin", "2026-06-10T21:59", None),
            ("22:00", "08:00", "Europe/Berlin", "2026-06-10T22:00", Some("2026-06-11 08:00")),
            ("22:00", "08:00", "Europe/Berlin", "2026-06-10T23:30", Some("2026-06-11 08:00")),
            ("22:00", "08:00", "Europe/Berlin", "2026-06-11T00:00", Some("2026-06-11 08:00")),
            ("22:00", "08:00", "Europe/Berlin", "2026-06-11T07:59", Some("2026-06-11 08:00")),
            ("22:00", "08:00", "Europe/Berlin", "2026-06-11T08:00", None),
            ("22:00", "08:00", "Europe/Berlin", "2026-06-11T12:00", None),
            // Within one day.
            ("12:00", "13:30", "Asia/Shanghai", "2026-06-11T12:45", Some("2026-06-11 13:30")),
            ("12:00", "13:30", "Asia/Shanghai", "2026-06-11T13:30", None),
            ("12:00", "13:30", "Asia/Shanghai", "2026-06-11T11:59", None),
            // Equal times: no quiet hours (the config refuses them).
            ("08:00", "08:00", "Europe/Berlin", "2026-06-11T08:00", None),
            // The night of the spring-forward (Berlin: 02:00 → 03:00 on 29 March 2026).
            ("22:00", "08:00", "Europe/Berlin", "2026-03-28T23:00", Some("2026-03-29 08:00")),
            // An end inside the gap ends as far past it (02:30 is 03:30 that night).
            ("01:00", "02:30", "Europe/Berlin", "2026-03-29T01:10", Some("2026-03-29 03:30")),
            ("01:00", "02:30", "Europe/Berlin", "2026-03-29T01:59", Some("2026-03-29 03:30")),
            // The autumn fold (Berlin: 03:00 → 02:00 on 25 October 2026).
            ("22:00", "08:00", "Europe/Berlin", "2026-10-24T23:00", Some("2026-10-25 08:00")),
            // New York's spring-forward (8 March 2026, 02:00 → 03:00).
            ("23:00", "07:00", "America/New_York", "2026-03-08T01:59", Some("2026-03-08 07:00")),
        ];
        for (from, to, zone, when, want) in table {
            let (ts, tz) = at(zone, when);
            let got = quiet(from, to).ends(ts, &tz).map(|end| local(end, &tz));
            assert_eq!(got.as_deref(), *want, "{from}-{to} in {zone} at {when}");
        }
    }

    #[test]
    fn a_night_that_loses_an_hour_is_an_hour_shorter() {
        let (start, tz) = at("Europe/Berlin", "2026-03-28T22:00");
        let end = quiet("22:00", "08:00").ends(start, &tz).unwrap();
        assert_eq!(end.duration_since(start).as_secs(), 9 * 3600);
        let (start, tz) = at("Europe/Berlin", "2026-10-24T22:00");
        let end = quiet("22:00", "08:00").ends(start, &tz).unwrap();
        assert_eq!(end.duration_since(start).as_secs(), 11 * 3600);
    }

    #[test]
    fn an_end_in_the_fold_is_the_first_one_still_ahead() {
        // 02:30 happens twice on 25 October 2026 in Berlin: first at +02:00, then at +01:00.
        let q = quiet("01:00", "02:30");
        let (before, tz) = at("Europe/Berlin", "2026-10-25T01:30");
        let first = q.ends(before, &tz).unwrap();
        assert_eq!(tz.to_offset(first).seconds(), 7200);
        // Half an hour after the first 02:30, the wall reads 02:00 again (+01:00):
        // still quiet, until the second 02:30.
        let after_first = first.checked_add(jiff::SignedDuration::from_mins(30)).unwrap();
        assert_eq!(local(after_first, &tz), "2026-10-25 02:00");
        let second = q.ends(after_first, &tz).unwrap();
        assert_eq!(tz.to_offset(second).seconds(), 3600);
        assert_eq!(second.duration_since(first).as_secs(), 3600);
    }

    #[test]
    fn mutes_hold_until_their_end_and_are_replaced_not_stacked() {
        let (now, tz) = at("Asia/Shanghai", "2026-06-11T12:00");
        let hour = jiff::SignedDuration::from_hours(1);
        let wang2 = UserId::from(2);
        let for_an_hour = Mute { sender: wang2.clone(), name: "wang2".into(), until: Some(now + hour) };
        let hush = Hush::new(None, tz.clone(), vec![for_an_hour.clone()], true);
        assert!(hush.muted(&wang2, now));
        assert!(!hush.muted(&UserId::from(3), now));
        assert!(!hush.muted(&wang2, now + hour), "a mute ends at its end");

        let forever = Mute { until: None, ..for_an_hour.clone() };
        let mutes = with_mute(&[for_an_hour], forever.clone(), now);
        assert_eq!(mutes, vec![forever.clone()]);
        assert!(Hush::new(None, tz, mutes.clone(), true).muted(&wang2, now + hour * 1000));
        assert!(without_mute(&mutes, &wang2, now).is_empty());
        let expired = Mute { sender: UserId::from(3), name: String::new(), until: Some(now) };
        assert_eq!(with_mute(&[expired], forever.clone(), now), vec![forever], "expired mutes are dropped");
    }
}
