//! Use case: an administrator adds a concert with its dates, prices and seat counts.

use std::sync::{Arc, Mutex};

use concert_domain::{
    ConcertId, ConcertTitle, NewConcert, NewConcertDate, ParseError, Price, SeatCount,
};
use subtle::ConstantTimeEq;
use time::{Date, Duration, OffsetDateTime};

use crate::ports::{CatalogRepository, Clock, RepositoryError};

/// The administrators' shared secret (`ADMIN_API_KEY`); with none configured, nobody is admitted.
#[derive(Clone, Default)]
pub struct AdminKey(Option<String>);

impl AdminKey {
    pub fn new(key: Option<String>) -> Self {
        Self(key.filter(|key| !key.is_empty()))
    }

    /// Compares in constant time: how long it takes says nothing of where the first
    /// difference is.
    pub fn admits(&self, presented: Option<&str>) -> bool {
        let (Some(expected), Some(presented)) = (&self.0, presented) else {
            return false;
        };
        expected.as_bytes().ct_eq(presented.as_bytes()).into()
    }
}

/// Wrong admin keys this instance accepts per [`FAILURE_WINDOW`] before it stops looking at keys
/// until the window ends. A key of 16 bytes or more cannot be guessed at this pace; the limit
/// keeps a flood of guesses from filling the logs and the CPU. While it holds, the real key is
/// refused too (`429`, retry after the window), a minute at most.
pub const MAX_FAILED_ADMIN_ATTEMPTS: u32 = 10;
pub const FAILURE_WINDOW: Duration = Duration::minutes(1);

/// Failed admin attempts in the current window.
#[derive(Debug)]
struct Failures {
    window_start: OffsetDateTime,
    count: u32,
}

impl Failures {
    /// Seconds until keys are looked at again, while the window's failures are used up.
    fn throttled_for(&self, now: OffsetDateTime) -> Option<u64> {
        let ends = self.window_start + FAILURE_WINDOW;
        (self.count >= MAX_FAILED_ADMIN_ATTEMPTS && now < ends).then(|| {
            u64::try_from((ends - now).whole_seconds())
                .unwrap_or(0)
                .max(1)
        })
    }

    /// Counts one failure; returns how many the window holds now.
    fn record(&mut self, now: OffsetDateTime) -> u32 {
        if now >= self.window_start + FAILURE_WINDOW {
            self.window_start = now;
            self.count = 0;
        }
        self.count += 1;
        self.count
    }
}

impl std::fmt::Debug for AdminKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "AdminKey(set)"
        } else {
            "AdminKey(none)"
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDateCommand {
    pub date: Date,
    pub price: i64,
    pub seat_count: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateConcertCommand {
    pub title: String,
    pub dates: Vec<NewDateCommand>,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateConcertError {
    #[error("the admin key is missing or wrong")]
    AdminKeyInvalid,
    /// Too many wrong keys lately (`429 RATE_LIMITED`).
    #[error("too many wrong admin keys; retry in {retry_after_seconds} s")]
    Throttled { retry_after_seconds: u64 },
    #[error(transparent)]
    Invalid(ParseError),
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

pub struct CreateConcert {
    catalog: Arc<dyn CatalogRepository>,
    clock: Arc<dyn Clock>,
    admin_key: AdminKey,
    max_price: i64,
    failures: Mutex<Failures>,
}

impl CreateConcert {
    pub fn new(
        catalog: Arc<dyn CatalogRepository>,
        clock: Arc<dyn Clock>,
        admin_key: AdminKey,
        max_price: i64,
    ) -> Self {
        Self {
            catalog,
            clock,
            admin_key,
            max_price,
            failures: Mutex::new(Failures {
                window_start: OffsetDateTime::UNIX_EPOCH,
                count: 0,
            }),
        }
    }

    /// Whether `presented` is the administrators' key, without creating anything.
    pub fn admits(&self, presented: Option<&str>) -> bool {
        self.admin_key.admits(presented)
    }

    #[tracing::instrument(name = "create_concert", skip_all)]
    pub async fn execute(
        &self,
        presented_key: Option<&str>,
        command: CreateConcertCommand,
    ) -> Result<ConcertId, CreateConcertError> {
        let now = self.clock.now();
        {
            let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(retry_after_seconds) = failures.throttled_for(now) {
                return Err(CreateConcertError::Throttled {
                    retry_after_seconds,
                });
            }
            if !self.admits(presented_key) {
                let count = failures.record(now);
                tracing::warn!(
                    presented = presented_key.is_some(),
                    failures_in_window = count,
                    "admin key refused"
                );
                return Err(CreateConcertError::AdminKeyInvalid);
            }
        }
        let concert = self.parse(command).map_err(CreateConcertError::Invalid)?;
        Ok(self.catalog.create_concert(&concert).await?)
    }

    fn parse(&self, command: CreateConcertCommand) -> Result<NewConcert, ParseError> {
        let title = ConcertTitle::parse(&command.title)?;
        let dates = command
            .dates
            .into_iter()
            .map(|entry| {
                Ok(NewConcertDate {
                    date: entry.date,
                    price: Price::parse(entry.price, self.max_price)?,
                    seats: entry
                        .seat_count
                        .map(SeatCount::parse)
                        .transpose()?
                        .unwrap_or_default(),
                })
            })
            .collect::<Result<Vec<_>, ParseError>>()?;
        NewConcert::new(title, dates, self.clock.now().date())
    }
}

#[cfg(test)]
mod tests {
    use time::Duration;

    use super::*;
    use crate::ports::{MockCatalogRepository, MockClock};
    use crate::test_support::{CONCERT_DAY, NOW, clock, concert_id};

    const MAX_PRICE: i64 = 10_000_000;
    const SECRET: &str = "s3cret-admin-key";

    fn date(date: Date, price: i64, seat_count: Option<i64>) -> NewDateCommand {
        NewDateCommand {
            date,
            price,
            seat_count,
        }
    }

    fn command(dates: Vec<NewDateCommand>) -> CreateConcertCommand {
        CreateConcertCommand {
            title: "Winter Gala".to_owned(),
            dates,
        }
    }

    fn never_created() -> MockCatalogRepository {
        let mut catalog = MockCatalogRepository::new();
        catalog.expect_create_concert().never();
        catalog
    }

    fn create_concert(catalog: MockCatalogRepository, key: AdminKey) -> CreateConcert {
        CreateConcert::new(Arc::new(catalog), clock(), key, MAX_PRICE)
    }

    fn admin() -> AdminKey {
        AdminKey::new(Some(SECRET.to_owned()))
    }

    #[tokio::test]
    async fn wrong_keys_are_throttled_for_the_rest_of_their_window() {
        let now = Arc::new(Mutex::new(NOW));
        let mut moving = MockClock::new();
        let read = now.clone();
        moving
            .expect_now()
            .returning(move || *read.lock().expect("clock"));
        let mut catalog = MockCatalogRepository::new();
        catalog
            .expect_create_concert()
            .times(1)
            .returning(|_| Ok(concert_id()));
        let create = CreateConcert::new(Arc::new(catalog), Arc::new(moving), admin(), MAX_PRICE);
        let valid = || command(vec![date(CONCERT_DAY, 50_000, None)]);

        for _ in 0..MAX_FAILED_ADMIN_ATTEMPTS {
            let refused = create.execute(Some("guess"), valid()).await;
            assert!(matches!(refused, Err(CreateConcertError::AdminKeyInvalid)));
        }
        *now.lock().expect("clock") = NOW + Duration::seconds(20);
        // Keys are not looked at until the window ends, not even the right one.
        let throttled = create.execute(Some(SECRET), valid()).await;
        assert!(
            matches!(
                throttled,
                Err(CreateConcertError::Throttled {
                    retry_after_seconds: 40
                })
            ),
            "{throttled:?}"
        );
        *now.lock().expect("clock") = NOW + FAILURE_WINDOW;
        let created = create.execute(Some(SECRET), valid()).await;
        assert_eq!(created.expect("created"), concert_id());
    }

    #[tokio::test]
    async fn fewer_wrong_keys_than_the_limit_do_not_throttle() {
        let mut catalog = MockCatalogRepository::new();
        catalog
            .expect_create_concert()
            .times(1)
            .returning(|_| Ok(concert_id()));
        let create = create_concert(catalog, admin());
        for _ in 1..MAX_FAILED_ADMIN_ATTEMPTS {
            assert!(create.execute(None, command(vec![])).await.is_err());
        }
        let created = create
            .execute(Some(SECRET), command(vec![date(CONCERT_DAY, 50_000, None)]))
            .await;
        assert_eq!(created.expect("created"), concert_id());
    }

    #[test]
    fn only_the_configured_key_is_admitted_and_nothing_is_created_by_asking() {
        let create = create_concert(never_created(), admin());
        assert!(create.admits(Some(SECRET)));
        assert!(!create.admits(Some("guess")));
        assert!(!create.admits(None));
        let unconfigured = create_concert(never_created(), AdminKey::new(None));
        assert!(!unconfigured.admits(Some("")));
    }

    /// Runs a command with the right key and expects it to be refused as invalid, naming `field`.
    async fn refused_as_invalid(dates: Vec<NewDateCommand>, field: &str) {
        let refused = create_concert(never_created(), admin())
            .execute(Some(SECRET), command(dates))
            .await;

        assert!(
            matches!(&refused, Err(CreateConcertError::Invalid(error)) if error.field == field),
            "expected {field} to be refused: {refused:?}"
        );
    }

    #[tokio::test]
    async fn wrong_or_missing_admin_key_is_refused_before_the_catalog() {
        let use_case = create_concert(never_created(), admin());
        let valid = || command(vec![date(CONCERT_DAY, 120_000, None)]);

        for presented in [None, Some("wrong"), Some(""), Some("s3cret-admin-ke")] {
            let refused = use_case.execute(presented, valid()).await;
            assert!(
                matches!(refused, Err(CreateConcertError::AdminKeyInvalid)),
                "{presented:?} was admitted"
            );
        }
    }

    #[tokio::test]
    async fn with_no_key_configured_every_key_is_refused() {
        for configured in [None, Some(String::new())] {
            let use_case = create_concert(never_created(), AdminKey::new(configured));
            for presented in [None, Some(""), Some(SECRET)] {
                let refused = use_case
                    .execute(presented, command(vec![date(CONCERT_DAY, 1, None)]))
                    .await;
                assert!(matches!(refused, Err(CreateConcertError::AdminKeyInvalid)));
            }
        }
    }

    #[tokio::test]
    async fn past_date_is_invalid() {
        let yesterday = NOW.date() - Duration::days(1);
        refused_as_invalid(vec![date(yesterday, 1, None)], "dates").await;
    }

    #[tokio::test]
    async fn date_given_twice_is_invalid() {
        let twice = vec![date(CONCERT_DAY, 1, None), date(CONCERT_DAY, 2, None)];
        refused_as_invalid(twice, "dates").await;
    }

    #[tokio::test]
    async fn concert_without_dates_is_invalid() {
        refused_as_invalid(Vec::new(), "dates").await;
    }

    #[tokio::test]
    async fn seat_count_outside_one_to_a_thousand_is_invalid() {
        refused_as_invalid(vec![date(CONCERT_DAY, 1, Some(0))], "seatCount").await;
        refused_as_invalid(vec![date(CONCERT_DAY, 1, Some(1001))], "seatCount").await;
    }

    #[tokio::test]
    async fn negative_or_too_high_price_is_invalid() {
        refused_as_invalid(vec![date(CONCERT_DAY, -1, None)], "price").await;
        refused_as_invalid(vec![date(CONCERT_DAY, MAX_PRICE + 1, None)], "price").await;
    }

    #[tokio::test]
    async fn blank_title_is_invalid() {
        let refused = create_concert(never_created(), admin())
            .execute(
                Some(SECRET),
                CreateConcertCommand {
                    title: "   ".to_owned(),
                    dates: vec![date(CONCERT_DAY, 1, None)],
                },
            )
            .await;

        assert!(matches!(
            refused,
            Err(CreateConcertError::Invalid(error)) if error.field == "title"
        ));
    }

    #[tokio::test]
    async fn valid_concert_is_created_with_fifty_seats_unless_told_otherwise() {
        let expected = NewConcert::new(
            ConcertTitle::parse("Winter Gala").expect("title"),
            vec![
                NewConcertDate {
                    date: NOW.date(),
                    price: Price::parse(0, MAX_PRICE).expect("price"),
                    seats: SeatCount::DEFAULT,
                },
                NewConcertDate {
                    date: CONCERT_DAY,
                    price: Price::parse(MAX_PRICE, MAX_PRICE).expect("price"),
                    seats: SeatCount::parse(1000).expect("count"),
                },
            ],
            NOW.date(),
        )
        .expect("valid");
        let mut catalog = MockCatalogRepository::new();
        catalog
            .expect_create_concert()
            .withf(move |concert| *concert == expected)
            .times(1)
            .returning(|_| Ok(concert_id()));

        let created = create_concert(catalog, admin())
            .execute(
                Some(SECRET),
                command(vec![
                    date(NOW.date(), 0, None),
                    date(CONCERT_DAY, MAX_PRICE, Some(1000)),
                ]),
            )
            .await
            .expect("created");

        assert_eq!(created, concert_id());
    }

    #[test]
    fn admin_key_never_shows_in_debug_output() {
        assert_eq!(format!("{:?}", admin()), "AdminKey(set)");
        assert_eq!(format!("{:?}", AdminKey::new(None)), "AdminKey(none)");
    }
}
