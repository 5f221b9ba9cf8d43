//! Use case: an administrator adds a concert with its dates, prices and seat counts.

use std::sync::Arc;

use concert_domain::{
    ConcertId, ConcertTitle, NewConcert, NewConcertDate, ParseError, Price, SeatCount,
};
use time::Date;

use crate::admin_access::{AdminAccess, AdminRefused};
use crate::ports::{CatalogRepository, Clock, RepositoryError};

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

impl From<AdminRefused> for CreateConcertError {
    fn from(refused: AdminRefused) -> Self {
        match refused {
            AdminRefused::KeyInvalid => Self::AdminKeyInvalid,
            AdminRefused::Throttled {
                retry_after_seconds,
            } => Self::Throttled {
                retry_after_seconds,
            },
        }
    }
}

pub struct CreateConcert {
    catalog: Arc<dyn CatalogRepository>,
    clock: Arc<dyn Clock>,
    admin: Arc<AdminAccess>,
    max_price: i64,
}

impl CreateConcert {
    pub fn new(
        catalog: Arc<dyn CatalogRepository>,
        clock: Arc<dyn Clock>,
        admin: Arc<AdminAccess>,
        max_price: i64,
    ) -> Self {
        Self {
            catalog,
            clock,
            admin,
            max_price,
        }
    }

    #[tracing::instrument(name = "create_concert", skip_all)]
    pub async fn execute(
        &self,
        presented_key: Option<&str>,
        command: CreateConcertCommand,
    ) -> Result<ConcertId, CreateConcertError> {
        self.admin.check(presented_key)?;
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
    use std::sync::Mutex;

    use time::Duration;

    use super::*;
    use crate::admin_access::{AdminKey, FAILURE_WINDOW, MAX_FAILED_ADMIN_ATTEMPTS};
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
        let admin = Arc::new(AdminAccess::new(key, clock()));
        CreateConcert::new(Arc::new(catalog), clock(), admin, MAX_PRICE)
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
        let moving: Arc<dyn Clock> = Arc::new(moving);
        let access = Arc::new(AdminAccess::new(admin(), moving.clone()));
        let create = CreateConcert::new(Arc::new(catalog), moving, access, MAX_PRICE);
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
