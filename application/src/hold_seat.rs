//! Use case: hold one seat for the caller for the hold time, if nobody else has it and the caller
//! is under the hold limit.

use std::sync::Arc;

use concert_domain::booking::{self, HoldTerms};
use concert_domain::{ConcertId, HoldDenied, HoldLimit, ParseError, Reservation, SeatNo, SeatRef};
use time::{Date, Duration};

use crate::authorize_request::ActiveUser;
use crate::idempotency::{Step, until_written};
use crate::list_available_seats::{FindDateError, admit_to, find_bookable_date};
use crate::ports::{
    CatalogRepository, Clock, HoldWrite, RepositoryError, ReservationRepository, Versioned,
};
use crate::room_lines::RoomLines;

/// `HOLD_TTL_SECONDS` and `MAX_HOLDS_PER_USER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldSettings {
    pub ttl: Duration,
    pub limit: HoldLimit,
}

impl Default for HoldSettings {
    fn default() -> Self {
        Self {
            ttl: Duration::minutes(5),
            limit: HoldLimit::DEFAULT,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldSeatCommand {
    pub concert: ConcertId,
    pub date: Date,
    /// As sent: whether it exists depends on the date's seat count.
    pub seat_no: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum HoldSeatError {
    #[error("concert {0} not found")]
    ConcertNotFound(ConcertId),
    #[error("concert {0} does not play on {1}")]
    DateNotFound(ConcertId, Date),
    /// The caller's token is another room's (`403 TOKEN_WRONG_ROOM`).
    #[error("concert {0} is another room's")]
    WrongRoom(ConcertId),
    #[error(transparent)]
    InvalidSeat(ParseError),
    #[error("seat {seat_no} on {date} cannot be held: {denied}")]
    Denied {
        date: Date,
        seat_no: u16,
        denied: HoldDenied,
    },
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

impl From<FindDateError> for HoldSeatError {
    fn from(error: FindDateError) -> Self {
        match error {
            FindDateError::ConcertNotFound(concert) => Self::ConcertNotFound(concert),
            FindDateError::DateNotFound(concert, date) => Self::DateNotFound(concert, date),
            FindDateError::WrongRoom(concert) => Self::WrongRoom(concert),
            FindDateError::Repository(error) => Self::Repository(error),
        }
    }
}

pub struct HoldSeat {
    catalog: Arc<dyn CatalogRepository>,
    reservations: Arc<dyn ReservationRepository>,
    clock: Arc<dyn Clock>,
    settings: HoldSettings,
    rooms: RoomLines,
}

impl HoldSeat {
    pub fn new(
        catalog: Arc<dyn CatalogRepository>,
        reservations: Arc<dyn ReservationRepository>,
        clock: Arc<dyn Clock>,
        settings: HoldSettings,
        rooms: impl Into<RoomLines>,
    ) -> Self {
        Self {
            catalog,
            reservations,
            clock,
            settings,
            rooms: rooms.into(),
        }
    }

    /// Loads the seat and the caller's holds, lets the domain decide, and writes the hold over
    /// the versions read (again from the load when another request changed them meanwhile).
    #[tracing::instrument(name = "hold_seat", skip_all, fields(user = %caller.user, concert = command.concert.get(), date = %command.date, seat = command.seat_no))]
    pub async fn execute(
        &self,
        caller: ActiveUser,
        command: HoldSeatCommand,
    ) -> Result<Reservation, HoldSeatError> {
        admit_to(&self.rooms, &caller, command.concert)?;
        let now = self.clock.now();
        let date =
            find_bookable_date(self.catalog.as_ref(), command.concert, command.date, now).await?;
        let seat_no =
            SeatNo::parse(command.seat_no, date.seats).map_err(HoldSeatError::InvalidSeat)?;
        let seat_ref = SeatRef {
            concert_id: command.concert,
            date: command.date,
            seat_no,
        };
        let denied = |denied| HoldSeatError::Denied {
            date: command.date,
            seat_no: seat_no.get(),
            denied,
        };
        until_written(|| async move {
            let state = self
                .reservations
                .load_hold(caller.user, seat_ref)
                .await?
                .ok_or_else(|| {
                    RepositoryError::Unexpected(
                        format!("seat {} on {} is missing", seat_no.get(), command.date).into(),
                    )
                })?;
            let mut seat = state.seat.value;
            let terms = HoldTerms {
                reservation: state.next_reservation,
                holder: caller.user,
                concert_id: command.concert,
                date: command.date,
                limit: self.settings.limit,
                ttl: self.settings.ttl,
            };
            let granted =
                booking::hold(&mut seat, &state.holds.value, terms, now).map_err(denied)?;
            let write = HoldWrite {
                seat: Versioned::new(seat, state.seat.version),
                holds_version: state.holds.version,
                granted,
                now,
            };
            let written = self.reservations.save_hold(&write).await?;
            Ok(Step::from(written).map(|()| write.granted.reservation))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use concert_domain::reservation::HoldLimitReached;
    use concert_domain::seat::HoldRefused;
    use concert_domain::{
        ConcertDate, HoldGranted, Price, ReservationId, Seat, SeatClaim, SeatCount, UserHolds,
    };
    use mockall::predicate::eq;
    use time::OffsetDateTime;

    use super::*;
    use crate::idempotency::MAX_ATTEMPTS;
    use crate::ports::{
        DateLookup, HoldState, MockCatalogRepository, MockReservationRepository, Version, Written,
    };
    use crate::test_support::{
        CONCERT_DAY, NOW, PRICE, SEAT_VERSION, active_user, clock, concert_date, concert_id,
        default_rooms, free_seat, other_user, reservation_id, seat_ref, seat_with, user,
    };

    const TTL: Duration = Duration::seconds(90);
    const HOLDS_VERSION: Version = Version::new(2);

    fn settings() -> HoldSettings {
        HoldSettings {
            ttl: TTL,
            limit: HoldLimit::new(3).expect("limit"),
        }
    }

    fn catalog_with(date: ConcertDate) -> MockCatalogRepository {
        let mut catalog = MockCatalogRepository::new();
        catalog
            .expect_find_date()
            .with(eq(concert_id()), eq(CONCERT_DAY))
            .times(1)
            .returning(move |_, _| Ok(DateLookup::Found(date.clone())));
        catalog
    }

    fn command(seat_no: i64) -> HoldSeatCommand {
        HoldSeatCommand {
            concert: concert_id(),
            date: CONCERT_DAY,
            seat_no,
        }
    }

    async fn hold(
        catalog: MockCatalogRepository,
        reservations: MockReservationRepository,
        seat: i64,
    ) -> Result<Reservation, HoldSeatError> {
        HoldSeat::new(
            Arc::new(catalog),
            Arc::new(reservations),
            clock(),
            settings(),
            default_rooms(),
        )
        .execute(active_user(14), command(seat))
        .await
    }

    /// Seat 7 at [`SEAT_VERSION`] and the user's holds with these deadlines at [`HOLDS_VERSION`].
    fn state(seat: Seat, holds: Vec<OffsetDateTime>) -> HoldState {
        HoldState {
            seat: Versioned::new(seat, SEAT_VERSION),
            holds: Versioned::new(UserHolds::new(holds), HOLDS_VERSION),
            next_reservation: reservation_id(),
        }
    }

    /// A repository that loads `loaded` once for the user's seat 7.
    fn loading(loaded: HoldState) -> MockReservationRepository {
        let mut reservations = MockReservationRepository::new();
        reservations
            .expect_load_hold()
            .with(eq(user()), eq(seat_ref()))
            .times(1)
            .returning(move |_, _| Ok(Some(loaded.clone())));
        reservations
    }

    /// What the hold writes for the user: reservation 41, held until `NOW + TTL`.
    fn new_hold() -> Reservation {
        Reservation::held(
            reservation_id(),
            user(),
            seat_ref(),
            Price::from_stored(PRICE),
            NOW + TTL,
        )
    }

    fn seat_held_by_the_user() -> Seat {
        seat_with(SeatClaim::Held {
            reservation: reservation_id(),
            holder: user(),
            until: NOW + TTL,
        })
    }

    fn others_live_hold() -> Seat {
        seat_with(SeatClaim::Held {
            reservation: ReservationId::new(30).expect("id"),
            holder: other_user(),
            until: NOW + Duration::seconds(1),
        })
    }

    fn denied(result: Result<Reservation, HoldSeatError>) -> HoldDenied {
        match result {
            Err(HoldSeatError::Denied {
                date,
                seat_no,
                denied,
            }) => {
                assert_eq!((date, seat_no), (CONCERT_DAY, 7));
                denied
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn granted_hold_writes_the_seats_claim_the_new_reservation_over_the_versions_read() {
        let mut reservations = loading(state(free_seat(), vec![NOW + Duration::minutes(1)]));
        reservations
            .expect_save_hold()
            .withf(|write| {
                *write
                    == HoldWrite {
                        seat: Versioned::new(seat_held_by_the_user(), SEAT_VERSION),
                        holds_version: HOLDS_VERSION,
                        granted: HoldGranted {
                            reservation: new_hold(),
                            replaced: None,
                        },
                        now: NOW,
                    }
            })
            .times(1)
            .returning(|_| Ok(Written::Done(())));

        let held = hold(catalog_with(concert_date()), reservations, 7)
            .await
            .expect("held");

        assert_eq!(held, new_hold());
    }

    #[tokio::test]
    async fn hold_over_a_lapsed_hold_writes_the_replaced_reservation_with_it() {
        let lapsed = ReservationId::new(30).expect("id");
        let seat = seat_with(SeatClaim::Held {
            reservation: lapsed,
            holder: other_user(),
            until: NOW,
        });
        // Two of the user's own holds are stored HELD but lapsed: they do not count.
        let holds = vec![
            NOW + Duration::minutes(1),
            NOW + Duration::minutes(2),
            NOW,
            NOW - Duration::minutes(1),
        ];
        let mut reservations = loading(state(seat, holds));
        reservations
            .expect_save_hold()
            .withf(move |write| {
                write.seat == Versioned::new(seat_held_by_the_user(), SEAT_VERSION)
                    && write.holds_version == HOLDS_VERSION
                    && write.granted.reservation == new_hold()
                    && write.granted.replaced == Some(lapsed)
                    && write.now == NOW
            })
            .times(1)
            .returning(|_| Ok(Written::Done(())));

        let held = hold(catalog_with(concert_date()), reservations, 7)
            .await
            .expect("held");

        assert_eq!(held, new_hold());
    }

    #[tokio::test]
    async fn hold_at_the_users_limit_is_refused_and_nothing_is_written() {
        let live = NOW + Duration::seconds(1);
        let mut reservations = loading(state(free_seat(), vec![live, live, live]));
        reservations.expect_save_hold().never();

        let refused = hold(catalog_with(concert_date()), reservations, 7).await;

        assert_eq!(
            denied(refused),
            HoldDenied::LimitReached(HoldLimitReached { limit: 3 })
        );
    }

    #[tokio::test]
    async fn hold_on_a_seat_held_by_another_is_refused_and_nothing_is_written() {
        let mut reservations = loading(state(others_live_hold(), Vec::new()));
        reservations.expect_save_hold().never();

        let refused = hold(catalog_with(concert_date()), reservations, 7).await;

        assert_eq!(
            denied(refused),
            HoldDenied::SeatUnavailable(HoldRefused::HeldByOther)
        );
    }

    #[tokio::test]
    async fn hold_on_a_sold_seat_is_refused_and_nothing_is_written() {
        let sold = seat_with(SeatClaim::Sold {
            reservation: ReservationId::new(30).expect("id"),
            owner: other_user(),
        });
        let mut reservations = loading(state(sold, Vec::new()));
        reservations.expect_save_hold().never();

        let refused = hold(catalog_with(concert_date()), reservations, 7).await;

        assert_eq!(
            denied(refused),
            HoldDenied::SeatUnavailable(HoldRefused::Sold)
        );
    }

    #[tokio::test]
    async fn stale_hold_loads_again_and_is_refused_when_another_took_the_seat() {
        let mut loads = vec![
            state(free_seat(), Vec::new()),
            HoldState {
                seat: Versioned::new(others_live_hold(), Version::new(6)),
                ..state(free_seat(), Vec::new())
            },
        ]
        .into_iter();
        let mut reservations = MockReservationRepository::new();
        reservations
            .expect_load_hold()
            .times(2)
            .returning(move |_, _| Ok(loads.next()));
        reservations
            .expect_save_hold()
            .withf(|write| write.seat.version == SEAT_VERSION)
            .times(1)
            .returning(|_| Ok(Written::Stale));

        let refused = hold(catalog_with(concert_date()), reservations, 7).await;

        assert_eq!(
            denied(refused),
            HoldDenied::SeatUnavailable(HoldRefused::HeldByOther)
        );
    }

    #[tokio::test]
    async fn stale_hold_is_decided_again_and_written_over_the_new_versions() {
        let mut loads = vec![
            state(free_seat(), Vec::new()),
            HoldState {
                seat: Versioned::new(free_seat(), Version::new(6)),
                holds: Versioned::new(
                    UserHolds::new(vec![NOW + Duration::minutes(1)]),
                    Version::new(4),
                ),
                next_reservation: reservation_id(),
            },
        ]
        .into_iter();
        let mut reservations = MockReservationRepository::new();
        reservations
            .expect_load_hold()
            .times(2)
            .returning(move |_, _| Ok(loads.next()));
        reservations
            .expect_save_hold()
            .withf(|write| write.seat.version == SEAT_VERSION)
            .times(1)
            .returning(|_| Ok(Written::Stale));
        reservations
            .expect_save_hold()
            .withf(|write| {
                write.seat == Versioned::new(seat_held_by_the_user(), Version::new(6))
                    && write.holds_version == Version::new(4)
                    && write.granted.reservation == new_hold()
            })
            .times(1)
            .returning(|_| Ok(Written::Done(())));

        let held = hold(catalog_with(concert_date()), reservations, 7)
            .await
            .expect("held");

        assert_eq!(held, new_hold());
    }

    #[tokio::test]
    async fn hold_that_stays_stale_gives_up_as_unavailable() {
        let attempts = usize::try_from(MAX_ATTEMPTS).expect("attempts");
        let mut reservations = MockReservationRepository::new();
        reservations
            .expect_load_hold()
            .times(attempts)
            .returning(|_, _| Ok(Some(state(free_seat(), Vec::new()))));
        reservations
            .expect_save_hold()
            .times(attempts)
            .returning(|_| Ok(Written::Stale));

        let refused = hold(catalog_with(concert_date()), reservations, 7).await;

        assert!(matches!(
            refused,
            Err(HoldSeatError::Repository(RepositoryError::Unavailable(_)))
        ));
    }

    #[tokio::test]
    async fn seat_missing_from_the_store_is_unexpected_and_nothing_is_written() {
        let mut reservations = MockReservationRepository::new();
        reservations
            .expect_load_hold()
            .times(1)
            .returning(|_, _| Ok(None));
        reservations.expect_save_hold().never();

        let refused = hold(catalog_with(concert_date()), reservations, 7).await;

        assert!(matches!(
            refused,
            Err(HoldSeatError::Repository(RepositoryError::Unexpected(_)))
        ));
    }

    fn untouched() -> MockReservationRepository {
        let mut reservations = MockReservationRepository::new();
        reservations.expect_load_hold().never();
        reservations.expect_save_hold().never();
        reservations
    }

    #[tokio::test]
    async fn seat_number_outside_the_dates_seats_is_invalid_and_nothing_is_held() {
        let small = ConcertDate {
            seats: SeatCount::parse(10).expect("count"),
            ..concert_date()
        };

        let refused = hold(catalog_with(small), untouched(), 11).await;

        assert!(matches!(
            refused,
            Err(HoldSeatError::InvalidSeat(error)) if error.field == "seatNo"
        ));
    }

    #[tokio::test]
    async fn seat_zero_is_invalid_and_nothing_is_held() {
        let refused = hold(catalog_with(concert_date()), untouched(), 0).await;

        assert!(matches!(refused, Err(HoldSeatError::InvalidSeat(_))));
    }

    #[tokio::test]
    async fn hold_on_an_unknown_date_is_refused_before_any_read() {
        let mut catalog = MockCatalogRepository::new();
        catalog
            .expect_find_date()
            .returning(|_, _| Ok(DateLookup::DateNotFound));

        let refused = hold(catalog, untouched(), 7).await;

        assert!(matches!(refused, Err(HoldSeatError::DateNotFound(_, _))));
    }

    #[tokio::test]
    async fn a_token_of_another_room_holds_nothing_and_nothing_is_read() {
        let mut catalog = MockCatalogRepository::new();
        catalog.expect_find_date().never();
        let mut reservations = MockReservationRepository::new();
        reservations.expect_load_hold().never();
        let rooms = default_rooms();
        rooms.note_rooms(&[concert_domain::Room::new(
            concert_domain::RoomId::parse("gala").expect("an id"),
            5,
            concert_domain::RoomState::Open,
        )
        .expect("a room")
        .on_line(concert_domain::LineNo::new(1).expect("a line"))
        .guarding(vec![concert_id()])]);

        let refused = HoldSeat::new(
            Arc::new(catalog),
            Arc::new(reservations),
            clock(),
            settings(),
            rooms,
        )
        .execute(active_user(14), command(3))
        .await;

        assert!(
            matches!(refused, Err(HoldSeatError::WrongRoom(concert)) if concert == concert_id()),
            "{refused:?}"
        );
    }
}
