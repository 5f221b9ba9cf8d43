//! Wire formats shared by the DTOs: calendar dates as `YYYY-MM-DD`, timestamps as RFC 3339 UTC.

use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{Date, OffsetDateTime, UtcOffset};

const CALENDAR_DATE: &[BorrowedFormatItem<'static>] = format_description!("[year]-[month]-[day]");

/// Parses a calendar date `YYYY-MM-DD`; the error says what was wrong, without the field name.
pub fn parse_calendar_date(raw: &str) -> Result<Date, String> {
    Date::parse(raw, CALENDAR_DATE)
        .map_err(|_| format!("{raw:?} is not a calendar date in the form YYYY-MM-DD"))
}

pub fn format_calendar_date(date: Date) -> String {
    date.format(CALENDAR_DATE)
        .unwrap_or_else(|_| date.to_string())
}

/// A timestamp as the API shows it: in UTC, so it formats with a `Z` suffix.
pub fn utc(at: OffsetDateTime) -> OffsetDateTime {
    at.to_offset(UtcOffset::UTC)
}

/// `#[serde(with = "calendar_date")]` for `time::Date` fields.
pub mod calendar_date {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};
    use time::Date;

    pub fn serialize<S: Serializer>(date: &Date, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::format_calendar_date(*date))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Date, D::Error> {
        let raw = String::deserialize(deserializer)?;
        super::parse_calendar_date(&raw).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use time::macros::{date, datetime};

    use super::*;

    #[test]
    fn calendar_dates_are_strict_year_month_day() {
        assert_eq!(parse_calendar_date("2026-12-24"), Ok(date!(2026 - 12 - 24)));
        assert!(parse_calendar_date("2026-02-30").is_err());
        assert!(parse_calendar_date("2026-2-3").is_err());
        assert!(parse_calendar_date("24.12.2026").is_err());
        assert!(parse_calendar_date("2026-12-24T00:00:00Z").is_err());
        assert_eq!(format_calendar_date(date!(2026 - 01 - 05)), "2026-01-05");
    }

    #[test]
    fn timestamps_are_shown_in_utc() {
        let at = utc(datetime!(2026-12-24 21:00 +02:00));
        assert_eq!(at, datetime!(2026-12-24 19:00 UTC));
        assert_eq!(at.offset(), UtcOffset::UTC);
    }
}
