//! Times and dates as the user reads them: the message time column in a
//! configurable format (a subset of `strftime`, as WeeChat's
//! `buffer_time_format`), the day-change lines, and the log files' stamps.
//! Everything takes the time (unix ms) and the UTC offset as arguments:
//! nothing here reads the clock.

use std::fmt::Write as _;

use time::{Date, OffsetDateTime, UtcOffset};

/// The directives a time format may use.
pub const DIRECTIVES: &str = "%H %M %S %I %p %Y %y %m %d %e %a %A %b %B %%";

/// A time format, e.g. `%H:%M:%S` (the default) or `%I:%M %p`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeFormat {
    pattern: String,
    /// The widest it gets, in columns.
    width: usize,
}

impl Default for TimeFormat {
    fn default() -> Self {
        Self::parse("%H:%M:%S").unwrap_or_else(|_| unreachable!("the default format is valid"))
    }
}

/// Why a time format was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeFormatError {
    /// A `%` directive this client does not know.
    #[error("unknown directive %{0} in the time format; known: {DIRECTIVES}")]
    Unknown(char),
    /// The format ends with a lone `%`.
    #[error("the time format ends with a lone %; write %% for a percent sign")]
    Trailing,
    /// Longer than a time column can be.
    #[error("the time format is too wide ({0} columns); at most 24")]
    TooWide(usize),
}

impl TimeFormat {
    /// Checks `pattern`.
    ///
    /// # Errors
    ///
    /// An unknown directive, a trailing `%`, or a format wider than 24
    /// columns.
    pub fn parse(pattern: &str) -> Result<Self, TimeFormatError> {
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            if c == '%' {
                match chars.next() {
                    None => return Err(TimeFormatError::Trailing),
                    Some(d) if "HMSIpYymdeaAbB%".contains(d) => {}
                    Some(d) => return Err(TimeFormatError::Unknown(d)),
                }
            } else if c.is_control() {
                return Err(TimeFormatError::Unknown(c));
            }
        }
        let mut format = Self {
            pattern: pattern.to_owned(),
            width: 0,
        };
        // The widest day and month names, the widest numbers.
        let widest = Date::from_calendar_date(2026, time::Month::September, 30)
            .map_or(0, |d| format.render(d, 23, 59, 59).chars().count());
        if widest > 24 {
            return Err(TimeFormatError::TooWide(widest));
        }
        format.width = widest;
        Ok(format)
    }

    /// The pattern as written.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The widest a formatted time is, in columns.
    pub fn width(&self) -> usize {
        self.width
    }

    /// `ts_ms` (unix ms) at `utc_offset` (seconds), formatted.
    pub fn format(&self, ts_ms: u64, utc_offset: i32) -> String {
        let local = local_time(ts_ms, utc_offset);
        self.render(local.date(), local.hour(), local.minute(), local.second())
    }

    fn render(&self, date: Date, hour: u8, minute: u8, second: u8) -> String {
        let mut out = String::new();
        let mut chars = self.pattern.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            // Writing to a String cannot fail.
            let _ = match chars.next() {
                Some('H') => write!(out, "{hour:02}"),
                Some('M') => write!(out, "{minute:02}"),
                Some('S') => write!(out, "{second:02}"),
                Some('I') => write!(out, "{:02}", (hour + 11) % 12 + 1),
                Some('p') => write!(out, "{}", if hour < 12 { "AM" } else { "PM" }),
                Some('Y') => write!(out, "{}", date.year()),
                Some('y') => write!(out, "{:02}", date.year().rem_euclid(100)),
                Some('m') => write!(out, "{:02}", u8::from(date.month())),
                Some('d') => write!(out, "{:02}", date.day()),
                Some('e') => write!(out, "{:>2}", date.day()),
                Some('a') => write!(out, "{}", &weekday(date)[..3]),
                Some('A') => write!(out, "{}", weekday(date)),
                Some('b') => write!(out, "{}", &month(date)[..3]),
                Some('B') => write!(out, "{}", month(date)),
                Some(other) => write!(out, "{other}"),
                None => Ok(()),
            };
        }
        out
    }
}

fn local_time(ts_ms: u64, utc_offset: i32) -> OffsetDateTime {
    let offset = UtcOffset::from_whole_seconds(utc_offset).unwrap_or(UtcOffset::UTC);
    let secs = i64::try_from(ts_ms / 1000).unwrap_or(i64::MAX);
    OffsetDateTime::from_unix_timestamp(secs)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .to_offset(offset)
}

fn weekday(date: Date) -> &'static str {
    use time::Weekday as W;
    match date.weekday() {
        W::Monday => "Monday",
        W::Tuesday => "Tuesday",
        W::Wednesday => "Wednesday",
        W::Thursday => "Thursday",
        W::Friday => "Friday",
        W::Saturday => "Saturday",
        W::Sunday => "Sunday",
    }
}

fn month(date: Date) -> &'static str {
    use time::Month as M;
    match date.month() {
        M::January => "January",
        M::February => "February",
        M::March => "March",
        M::April => "April",
        M::May => "May",
        M::June => "June",
        M::July => "July",
        M::August => "August",
        M::September => "September",
        M::October => "October",
        M::November => "November",
        M::December => "December",
    }
}

/// The local date of `ts_ms`.
pub fn local_date(ts_ms: u64, utc_offset: i32) -> Date {
    local_time(ts_ms, utc_offset).date()
}

/// A day-change line's text: `Friday 4 December 2026`.
pub fn day_title(date: Date) -> String {
    format!(
        "{} {} {} {}",
        weekday(date),
        date.day(),
        month(date),
        date.year()
    )
}

/// A log file's stamp: `2026-12-04 14:56:09`, local time.
pub fn log_stamp(ts_ms: u64, utc_offset: i32) -> String {
    let t = local_time(ts_ms, utc_offset);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-04 14:56:09 UTC, a Friday.
    const TS: u64 = 1_796_396_169_000;

    #[test]
    fn formats_like_strftime() {
        let hms = TimeFormat::default();
        assert_eq!(hms.format(TS, 0), "14:56:09");
        assert_eq!(hms.width(), 8);
        assert_eq!(hms.format(TS, 3600), "15:56:09", "an hour east");
        let twelve = TimeFormat::parse("%I:%M %p").unwrap();
        assert_eq!(twelve.format(TS, 0), "02:56 PM");
        let long = TimeFormat::parse("%a %e %b %y, %H:%M %%").unwrap();
        assert_eq!(long.format(TS, 0), "Fri  4 Dec 26, 14:56 %");
        assert_eq!(
            TimeFormat::parse("%A").unwrap().width(),
            "Wednesday".len(),
            "the widest day name"
        );
    }

    #[test]
    fn refuses_what_it_cannot_show() {
        assert_eq!(
            TimeFormat::parse("%H:%Q"),
            Err(TimeFormatError::Unknown('Q'))
        );
        assert_eq!(TimeFormat::parse("%H %"), Err(TimeFormatError::Trailing));
        assert!(TimeFormat::parse("\x1b[31m%H").is_err());
        assert!(matches!(
            TimeFormat::parse("%A %B %A %B"),
            Err(TimeFormatError::TooWide(_))
        ));
    }

    #[test]
    fn days_and_stamps() {
        assert_eq!(day_title(local_date(TS, 0)), "Friday 4 December 2026");
        assert_eq!(
            day_title(local_date(TS, 10 * 3600)),
            "Saturday 5 December 2026",
            "already tomorrow ten hours east"
        );
        assert_eq!(log_stamp(TS, 0), "2026-12-04 14:56:09");
    }
}
