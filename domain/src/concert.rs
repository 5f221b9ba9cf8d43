//! The catalog: concerts, the dates they play and the seats of each date.

use std::collections::HashSet;

use time::Date;

use crate::{ConcertId, ParseError, Price};

/// A concert's title: 1 to 200 characters, not blank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConcertTitle(String);

impl ConcertTitle {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(ParseError::new("title", "must not be blank"));
        }
        if trimmed.chars().count() > Self::MAX_CHARS {
            return Err(ParseError::new("title", "must be at most 200 characters"));
        }
        if trimmed.chars().any(char::is_control) {
            return Err(ParseError::new(
                "title",
                "must not contain control characters",
            ));
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// How many seats a date has: 1..=1000, 50 unless the concert was created with another count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeatCount(u16);

impl SeatCount {
    pub const DEFAULT: Self = Self(50);
    pub const MAX: u16 = 1000;

    pub fn parse(value: i64) -> Result<Self, ParseError> {
        match u16::try_from(value) {
            Ok(count) if (1..=Self::MAX).contains(&count) => Ok(Self(count)),
            _ => Err(ParseError::new(
                "seatCount",
                format!("must be between 1 and {}, got {value}", Self::MAX),
            )),
        }
    }

    pub const fn get(self) -> u16 {
        self.0
    }
}

impl Default for SeatCount {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A seat number that exists on its date: `1..=seat count`. Once parsed, nobody re-checks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeatNo(u16);

impl SeatNo {
    pub fn parse(value: i64, seats: SeatCount) -> Result<Self, ParseError> {
        match u16::try_from(value) {
            Ok(no) if (1..=seats.get()).contains(&no) => Ok(Self(no)),
            _ => Err(ParseError::new(
                "seatNo",
                format!("must be between 1 and {}, got {value}", seats.get()),
            )),
        }
    }

    /// Every seat of a date, in seat order.
    pub fn all(seats: SeatCount) -> impl Iterator<Item = Self> {
        (1..=seats.get()).map(Self)
    }

    pub const fn get(self) -> u16 {
        self.0
    }
}

/// One date a concert plays, with its seat count and the price of every seat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConcertDate {
    pub concert_id: ConcertId,
    pub date: Date,
    pub price: Price,
    pub seats: SeatCount,
}

impl ConcertDate {
    /// Whether the date can still be booked on `today` (UTC): dates from today on.
    pub fn is_bookable_on(&self, today: Date) -> bool {
        self.date >= today
    }
}

/// A concert of the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Concert {
    pub id: ConcertId,
    pub title: ConcertTitle,
}

/// One date of a concert that is being created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewConcertDate {
    pub date: Date,
    pub price: Price,
    pub seats: SeatCount,
}

/// A concert as an administrator asked to create it: at least one date, no past date, no date
/// twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewConcert {
    title: ConcertTitle,
    dates: Vec<NewConcertDate>,
}

impl NewConcert {
    /// The most dates one concert may have: a year of nightly shows. Bounds the seats one request
    /// creates (and so the length of its transaction) to 366 × 1000.
    pub const MAX_DATES: usize = 366;

    pub fn new(
        title: ConcertTitle,
        dates: Vec<NewConcertDate>,
        today: Date,
    ) -> Result<Self, ParseError> {
        if dates.is_empty() {
            return Err(ParseError::new("dates", "must contain at least one date"));
        }
        if dates.len() > Self::MAX_DATES {
            return Err(ParseError::new(
                "dates",
                format!("must contain at most {} dates", Self::MAX_DATES),
            ));
        }
        let mut seen = HashSet::new();
        for entry in &dates {
            if entry.date < today {
                return Err(ParseError::new(
                    "dates",
                    format!("{} is in the past", entry.date),
                ));
            }
            if !seen.insert(entry.date) {
                return Err(ParseError::new(
                    "dates",
                    format!("{} appears more than once", entry.date),
                ));
            }
        }
        Ok(Self { title, dates })
    }

    pub fn title(&self) -> &ConcertTitle {
        &self.title
    }

    pub fn dates(&self) -> &[NewConcertDate] {
        &self.dates
    }
}

#[cfg(test)]
mod tests {
    use time::macros::date;

    use super::*;

    fn date_entry(date: Date) -> NewConcertDate {
        NewConcertDate {
            date,
            price: Price::parse(1000, 10_000).expect("price"),
            seats: SeatCount::DEFAULT,
        }
    }

    #[test]
    fn seat_number_must_exist_on_the_date() {
        let fifty = SeatCount::DEFAULT;
        assert_eq!(SeatNo::parse(1, fifty).map(SeatNo::get), Ok(1));
        assert_eq!(SeatNo::parse(50, fifty).map(SeatNo::get), Ok(50));
        assert!(SeatNo::parse(0, fifty).is_err());
        assert_eq!(SeatNo::parse(51, fifty).expect_err("out").field, "seatNo");
        assert!(SeatNo::parse(7, SeatCount::parse(5).expect("count")).is_err());
    }

    #[test]
    fn seat_count_defaults_to_fifty_and_is_bounded() {
        assert_eq!(SeatCount::default().get(), 50);
        assert!(SeatCount::parse(1).is_ok());
        assert!(SeatCount::parse(1000).is_ok());
        assert!(SeatCount::parse(0).is_err());
        assert!(SeatCount::parse(1001).is_err());
        assert_eq!(SeatNo::all(SeatCount::parse(3).expect("count")).count(), 3);
    }

    #[test]
    fn title_must_not_be_blank_or_too_long() {
        assert_eq!(
            ConcertTitle::parse("  Winter Gala ")
                .expect("title")
                .as_str(),
            "Winter Gala"
        );
        assert!(ConcertTitle::parse("   ").is_err());
        assert!(ConcertTitle::parse(&"x".repeat(201)).is_err());
        assert!(
            ConcertTitle::parse("a\u{0}b").is_err(),
            "PostgreSQL text cannot hold NUL"
        );
        assert!(ConcertTitle::parse("line\nbreak").is_err());
    }

    #[test]
    fn new_concert_needs_a_date_and_refuses_past_or_repeated_dates() {
        let title = ConcertTitle::parse("Gala").expect("title");
        let today = date!(2026 - 12 - 01);
        assert!(NewConcert::new(title.clone(), vec![], today).is_err());
        assert!(
            NewConcert::new(
                title.clone(),
                vec![date_entry(date!(2026 - 11 - 30))],
                today
            )
            .is_err()
        );
        let twice = vec![
            date_entry(date!(2026 - 12 - 24)),
            date_entry(date!(2026 - 12 - 24)),
        ];
        assert!(NewConcert::new(title.clone(), twice, today).is_err());
        let every_day: Vec<_> = (0..=366)
            .map(|day| date_entry(today + time::Duration::days(day)))
            .collect();
        assert!(NewConcert::new(title.clone(), every_day, today).is_err());
        let ok = NewConcert::new(
            title,
            vec![date_entry(today), date_entry(date!(2026 - 12 - 24))],
            today,
        )
        .expect("valid");
        assert_eq!(ok.dates().len(), 2);
    }

    #[test]
    fn a_date_is_bookable_from_today_on() {
        let entry = ConcertDate {
            concert_id: ConcertId::new(1).expect("id"),
            date: date!(2026 - 12 - 24),
            price: Price::from_stored(100),
            seats: SeatCount::DEFAULT,
        };
        assert!(entry.is_bookable_on(date!(2026 - 12 - 24)));
        assert!(entry.is_bookable_on(date!(2026 - 12 - 01)));
        assert!(!entry.is_bookable_on(date!(2026 - 12 - 25)));
    }
}
