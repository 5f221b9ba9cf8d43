//! Tests of the HTTP adapter: the real router over real use cases, whose ports are mockall fakes
//! that answer plausibly for any input (a few magic values select the refusals).

mod api;
mod browsers;
mod endpoints;
mod events;
mod fuzz;
mod identity;
mod join_limits;
mod observability;
mod openapi;
mod pages;
mod problems;
mod rejections;

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use concert_application::admin_access::AdminKey;
use concert_application::hold_seat::HoldSettings;
use concert_application::identify_caller::IdentityMode;
use concert_application::ports::{
    AdmissionReport, AvailableSeat, Booking, DateAvailability, DateLookup, HoldState,
    IdempotentAnswer, InvalidIdentity, InvalidToken, LiveTicket, MockAdmissionTrigger,
    MockCatalogRepository, MockClock, MockIdempotencyStore, MockIdentityVerifier,
    MockPaymentRepository, MockQueueRepository, MockReadinessProbe, MockReservationRepository,
    MockRetentionRepository, MockRoomRepository, MockTokenSigner, MockWalletRepository,
    PaymentReceipt, PaymentState, QueueSnapshot, RepositoryError, StoredAnswer, TokenClaims,
    Version, Versioned, Written,
};
use concert_application::services::{Ports, Services, Settings};
use concert_domain::queue::ServingCounter;
use concert_domain::{
    Balance, Concert, ConcertDate, ConcertId, ConcertTitle, EndReason, IdempotencyScope,
    LedgerEntry, LedgerEntryId, LedgerKind, PaymentId, Price, QueuePolicy, QueueTicket,
    Reservation, ReservationId, ReservationStatus, Room, RoomId, RoomState, Seat, SeatClaim,
    SeatCount, SeatNo, SeatRef, TicketNo, TicketStatus, UserHolds, UserId, Wallet, WalletLimits,
};
use serde_json::Value;
use time::macros::{date, datetime};
use time::{Date, Duration, OffsetDateTime};
use tower::ServiceExt;
use uuid::Uuid;

use crate::problem::PROBLEM_JSON;
use crate::{UseCases, router};

pub const NOW: OffsetDateTime = datetime!(2026-06-01 12:00 UTC);
/// The date every concert of the fake catalog plays.
pub const DATE: Date = date!(2026 - 12 - 24);
/// A date the fake catalog has, but that is already past.
pub const PAST_DATE: Date = date!(2026 - 01 - 10);
pub const ADMIN_KEY: &str = "admin-secret";
/// A user who already holds a live queue token.
pub const USER_A: Uuid = Uuid::from_u128(0xA);
pub const USER_B: Uuid = Uuid::from_u128(0xB);
/// Reading this user's balance panics inside the wallet repository.
pub const USER_PANIC: Uuid = Uuid::from_u128(0xDEAD);

/// Tokens the fake signer knows.
pub const TOKEN_ACTIVE: &str = "tok-active";
pub const TOKEN_ACTIVE_B: &str = "tok-active-b";
pub const TOKEN_EXPIRED: &str = "tok-expired";
pub const TOKEN_WAITING: &str = "tok-waiting";
pub const TOKEN_WAITING_FAR: &str = "tok-waiting-far";
/// Validly signed, but its ticket is unknown to the queue.
pub const TOKEN_UNKNOWN: &str = "tok-unknown";

/// Reservations of the fake repository.
pub const HELD_A: i64 = 41;
pub const HELD_B: i64 = 42;
pub const CONFIRMED_A: i64 = 43;
pub const LAPSED_A: i64 = 44;
pub const EXPENSIVE_A: i64 = 45;

/// Seats the fake repository refuses.
pub const SEAT_TAKEN: i64 = 7;
pub const SEAT_OVER_LIMIT: i64 = 8;

/// The balance of every wallet, and the largest allowed in the fixture.
pub const BALANCE: i64 = 500_000;
pub const MAX_BALANCE: i64 = 5_000_000;
pub const MAX_CHARGE: i64 = 10_000_000;

/// Idempotency keys the fake store knows.
pub const KEY_REPLAYED: &str = "replayed";
pub const KEY_REUSED: &str = "reused";

const SERVING: i64 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Unavailable,
    Unexpected,
}

impl Failure {
    fn error(self) -> RepositoryError {
        let cause: Box<dyn std::error::Error + Send + Sync> =
            Box::new(std::io::Error::other("connection reset by peer"));
        match self {
            Self::Unavailable => RepositoryError::Unavailable(cause),
            Self::Unexpected => RepositoryError::Unexpected(cause),
        }
    }
}

/// What the fakes should do besides answering plausibly.
#[derive(Debug, Clone, Copy, Default)]
pub struct Scenario {
    /// `list_concerts` fails with this.
    pub catalog_failure: Option<Failure>,
    /// The readiness probe fails.
    pub not_ready: bool,
    /// `jwt` identity mode, with a verifier that knows [`IDENTITY_A`] and [`IDENTITY_B`].
    pub verified_identity: bool,
}

/// Identity tokens the fake verifier accepts, for [`USER_A`] and [`USER_B`].
pub const IDENTITY_A: &str = "identity-a";
pub const IDENTITY_B: &str = "identity-b";

fn identity(scenario: Scenario) -> IdentityMode {
    if !scenario.verified_identity {
        return IdentityMode::Trusted;
    }
    let mut verifier = MockIdentityVerifier::new();
    verifier
        .expect_verify()
        .returning(|credentials| match credentials {
            IDENTITY_A => Ok(user(USER_A)),
            IDENTITY_B => Ok(user(USER_B)),
            _ => Err(InvalidIdentity::new(
                "the identity token's signature does not verify",
            )),
        });
    IdentityMode::Verified(Arc::new(verifier))
}

fn user(uuid: Uuid) -> UserId {
    UserId::from_uuid(uuid)
}

fn ticket_no(n: i64) -> TicketNo {
    TicketNo::new(n).expect("ticket")
}

fn claims(ticket: i64, owner: Uuid) -> TokenClaims {
    TokenClaims {
        user: user(owner),
        ticket: ticket_no(ticket),
        issued_at: NOW - Duration::minutes(1),
    }
}

fn signer() -> MockTokenSigner {
    let mut signer = MockTokenSigner::new();
    signer
        .expect_sign()
        .returning(|claims| format!("signed-{}", claims.ticket.get()));
    signer.expect_verify().returning(|token| match token {
        TOKEN_ACTIVE => Ok(claims(1, USER_A)),
        TOKEN_EXPIRED => Ok(claims(2, USER_A)),
        TOKEN_ACTIVE_B => Ok(claims(4, USER_B)),
        TOKEN_UNKNOWN => Ok(claims(5, USER_A)),
        TOKEN_WAITING => Ok(claims(100, USER_A)),
        TOKEN_WAITING_FAR => Ok(claims(SERVING + 1000, USER_A)),
        other => other
            .strip_prefix("signed-")
            .and_then(|n| n.parse::<i64>().ok())
            .filter(|n| *n > 0)
            .map(|n| claims(n, USER_A))
            .ok_or(InvalidToken),
    });
    signer
}

fn ticket(n: i64, owner: Uuid, status: TicketStatus) -> QueueTicket {
    let mut ticket = QueueTicket::waiting(ticket_no(n), user(owner), NOW - Duration::minutes(1));
    match status {
        TicketStatus::Waiting => {}
        TicketStatus::Active => {
            ticket
                .admit(NOW, &QueuePolicy::default())
                .expect("admitted");
        }
        TicketStatus::Expired => {
            ticket
                .admit(NOW - Duration::minutes(30), &QueuePolicy::default())
                .expect("admitted");
            ticket.end(EndReason::Paid);
        }
    }
    ticket
}

fn queue() -> MockQueueRepository {
    let mut queue = MockQueueRepository::new();
    queue.expect_load_live().returning(|who, _| {
        Ok(LiveTicket {
            ticket: (who.get() == USER_A).then(|| ticket(100, USER_A, TicketStatus::Waiting)),
            version: Version::new(1),
        })
    });
    queue.expect_save_join().returning(|write| {
        // USER_A has a place: a join presuming a first one is refused, as the real store does.
        if write.user.get() == USER_A && write.version == Version::ABSENT {
            return Ok(Written::Stale);
        }
        Ok(Written::Done(ticket(
            101,
            write.user.get(),
            TicketStatus::Waiting,
        )))
    });
    queue.expect_end().returning(|_, _| Ok(Written::Done(())));
    queue.expect_find().returning(|n| {
        Ok(match n.get() {
            1 => Some(ticket(1, USER_A, TicketStatus::Active)),
            2 => Some(ticket(2, USER_A, TicketStatus::Expired)),
            4 => Some(ticket(4, USER_B, TicketStatus::Active)),
            5 => None,
            n if n > SERVING => Some(ticket(n, USER_A, TicketStatus::Waiting)),
            n => Some(ticket(n, USER_A, TicketStatus::Active)),
        })
    });
    queue
        .expect_record_activity()
        .returning(|_| Ok(Written::Done(())));
    queue
        .expect_admit()
        .returning(|_, _, _| Ok(Written::Done(AdmissionReport::default())));
    queue.expect_snapshot().returning(|_| {
        Ok(QueueSnapshot {
            serving: ServingCounter::new(SERVING),
            admitted_total: 10,
            waiting: 5,
            active: 2,
            issued: 15,
            pre_queued: 0,
        })
    });
    queue.expect_ended_waiting().returning(|_| Ok(Vec::new()));
    queue
}

fn concert_date(concert: ConcertId, on: Date) -> ConcertDate {
    ConcertDate {
        concert_id: concert,
        date: on,
        price: Price::from_stored(120_000),
        seats: SeatCount::DEFAULT,
    }
}

fn catalog(scenario: Scenario) -> MockCatalogRepository {
    let mut catalog = MockCatalogRepository::new();
    catalog
        .expect_create_concert()
        .returning(|_| Ok(ConcertId::new(3).expect("id")));
    catalog.expect_has_concerts().returning(|| Ok(true));
    catalog.expect_list_concerts().returning(move |_| {
        if let Some(failure) = scenario.catalog_failure {
            return Err(failure.error());
        }
        Ok(vec![Concert {
            id: ConcertId::new(1).expect("id"),
            title: ConcertTitle::parse("Winter Gala").expect("title"),
        }])
    });
    catalog.expect_available_dates().returning(|concert, _, _| {
        Ok((concert.get() == 1).then(|| {
            vec![DateAvailability {
                date: DATE,
                available_seats: 37,
            }]
        }))
    });
    catalog.expect_find_date().returning(|concert, on| {
        Ok(if concert.get() != 1 {
            DateLookup::ConcertNotFound
        } else if on == DATE || on == PAST_DATE {
            DateLookup::Found(concert_date(concert, on))
        } else {
            DateLookup::DateNotFound
        })
    });
    catalog.expect_available_seats().returning(|_, _, _| {
        Ok((1..=3)
            .map(|n| AvailableSeat {
                seat_no: SeatNo::parse(n, SeatCount::DEFAULT).expect("seat"),
                price: Price::from_stored(120_000),
            })
            .collect())
    });
    // Seat 1 free, seat 2 under a live hold, seat 3 sold.
    catalog.expect_seats_of().returning(|_, _| {
        let no = |n| SeatNo::parse(n, SeatCount::DEFAULT).expect("seat");
        let reservation = ReservationId::new(9).expect("an id");
        let holder = UserId::from_uuid(USER_B);
        Ok(vec![
            Seat::available(no(1), Price::from_stored(120_000)),
            Seat::new(
                no(2),
                Price::from_stored(120_000),
                SeatClaim::Held {
                    reservation,
                    holder,
                    until: NOW + time::Duration::minutes(5),
                },
            ),
            Seat::new(
                no(3),
                Price::from_stored(120_000),
                SeatClaim::Sold {
                    reservation,
                    owner: holder,
                },
            ),
        ])
    });
    catalog
}

fn reservation_until(
    id: i64,
    owner: Uuid,
    status: ReservationStatus,
    price: i64,
    expires_at: OffsetDateTime,
) -> Reservation {
    Reservation::restore(
        ReservationId::new(id).expect("id"),
        user(owner),
        SeatRef {
            concert_id: ConcertId::new(1).expect("id"),
            date: DATE,
            seat_no: SeatNo::parse(3, SeatCount::DEFAULT).expect("seat"),
        },
        Price::from_stored(price),
        status,
        expires_at,
    )
}

fn reservation(id: i64, owner: Uuid, status: ReservationStatus) -> Reservation {
    reservation_until(id, owner, status, 120_000, NOW + Duration::minutes(5))
}

fn stored_reservation(id: i64) -> Option<Reservation> {
    match id {
        HELD_A => Some(reservation(id, USER_A, ReservationStatus::Held)),
        HELD_B => Some(reservation(id, USER_B, ReservationStatus::Held)),
        CONFIRMED_A => Some(reservation(id, USER_A, ReservationStatus::Confirmed)),
        LAPSED_A => Some(reservation_until(
            id,
            USER_A,
            ReservationStatus::Held,
            120_000,
            NOW - Duration::minutes(1),
        )),
        EXPENSIVE_A => Some(reservation_until(
            id,
            USER_A,
            ReservationStatus::Held,
            BALANCE + 1,
            NOW + Duration::minutes(5),
        )),
        _ => None,
    }
}

/// A stored reservation with the seat it names, claimed as its status says.
fn stored_booking(id: i64) -> Option<Booking> {
    let reservation = stored_reservation(id)?;
    let claim = match reservation.stored_status() {
        ReservationStatus::Held => SeatClaim::Held {
            reservation: reservation.id(),
            holder: reservation.user(),
            until: reservation.expires_at(),
        },
        ReservationStatus::Confirmed => SeatClaim::Sold {
            reservation: reservation.id(),
            owner: reservation.user(),
        },
        ReservationStatus::Expired | ReservationStatus::Cancelled => SeatClaim::Available,
    };
    let seat = Seat::new(reservation.seat_no(), reservation.price(), claim);
    Some(Booking {
        reservation: Versioned::new(reservation, Version::new(1)),
        seat: Versioned::new(seat, Version::new(1)),
    })
}

fn reservations() -> MockReservationRepository {
    let mut reservations = MockReservationRepository::new();
    reservations.expect_load_hold().returning(|caller, seat| {
        let price = Price::from_stored(120_000);
        let (claim, holds) = match i64::from(seat.seat_no.get()) {
            SEAT_TAKEN => (
                SeatClaim::Held {
                    reservation: ReservationId::new(HELD_B).expect("id"),
                    holder: user(USER_B),
                    until: NOW + Duration::minutes(1),
                },
                Vec::new(),
            ),
            SEAT_OVER_LIMIT => (SeatClaim::Available, vec![NOW + Duration::minutes(1); 100]),
            _ => (SeatClaim::Available, Vec::new()),
        };
        let _ = caller;
        Ok(Some(HoldState {
            seat: Versioned::new(Seat::new(seat.seat_no, price, claim), Version::new(1)),
            holds: Versioned::new(UserHolds::new(holds), Version::new(1)),
            next_reservation: ReservationId::new(HELD_A).expect("id"),
        }))
    });
    reservations
        .expect_save_hold()
        .returning(|_| Ok(Written::Done(())));
    reservations
        .expect_find()
        .returning(|id| Ok(stored_reservation(id.get())));
    reservations
        .expect_load_booking()
        .returning(|id| Ok(stored_booking(id.get())));
    reservations
        .expect_lapsed()
        .returning(|_, _| Ok(Vec::new()));
    reservations
        .expect_save_releases()
        .returning(|writes| Ok(writes.len() as u64));
    reservations.expect_count_live_holds().returning(|_| Ok(0));
    reservations
}

fn stored_wallet(who: UserId) -> Versioned<Wallet> {
    assert_ne!(
        who.get(),
        USER_PANIC,
        "the fake wallet panics for this user"
    );
    Versioned::new(
        Wallet::new(who, Balance::new(BALANCE).expect("balance"), None),
        Version::new(1),
    )
}

fn wallets() -> MockWalletRepository {
    let mut wallets = MockWalletRepository::new();
    wallets
        .expect_balance()
        .returning(|who| Ok(stored_wallet(who).value.balance()));
    wallets
        .expect_load()
        .returning(|who| Ok(stored_wallet(who)));
    wallets
        .expect_save_charge()
        .returning(|_| Ok(Written::Done(())));
    wallets.expect_history().returning(|_, limit, before| {
        let newest = before.map_or(3, |id| id.get() - 1);
        Ok((1..=newest)
            .rev()
            .take(limit as usize)
            .map(|n| LedgerEntry {
                id: LedgerEntryId::new(n).expect("id"),
                kind: LedgerKind::Charge,
                amount: 1000,
                balance_after: Balance::new(n.saturating_mul(1000)).expect("balance"),
                at: NOW - Duration::hours(4 - n.min(3)),
            })
            .collect())
    });
    wallets
}

fn receipt(reservation: ReservationId, amount: Price) -> PaymentReceipt {
    PaymentReceipt {
        payment_id: PaymentId::new(9).expect("id"),
        reservation_id: reservation,
        amount,
        balance: Balance::new(BALANCE - amount.get()).expect("balance"),
        paid_at: NOW,
    }
}

fn payments() -> MockPaymentRepository {
    let mut payments = MockPaymentRepository::new();
    payments.expect_load().returning(|id, payer| {
        Ok(stored_booking(id.get()).map(|booking| PaymentState {
            booking,
            wallet: stored_wallet(payer),
        }))
    });
    payments.expect_save().returning(|write| {
        Ok(Written::Done(receipt(
            write.reservation.value.id(),
            write.reservation.value.price(),
        )))
    });
    payments
}

fn idempotency() -> MockIdempotencyStore {
    let mut store = MockIdempotencyStore::new();
    store.expect_find().returning(|_, scope, key| {
        let answer = match scope {
            IdempotencyScope::Charge => IdempotentAnswer::Charge {
                balance: Balance::new(777).expect("balance"),
            },
            IdempotencyScope::Payment => IdempotentAnswer::Payment(receipt(
                ReservationId::new(HELD_A).expect("id"),
                Price::from_stored(120_000),
            )),
        };
        let request_hash = match (key.as_str(), scope) {
            (KEY_REPLAYED, IdempotencyScope::Charge) => "amount=500",
            (KEY_REPLAYED, IdempotencyScope::Payment) => "reservationId=41",
            (KEY_REUSED, _) => "another request",
            _ => return Ok(None),
        };
        Ok(Some(StoredAnswer {
            request_hash: request_hash.to_owned(),
            answer,
        }))
    });
    store
}

/// The `default` room, 500 active at most, open; changes are kept (version by version).
fn rooms() -> MockRoomRepository {
    let stored = Arc::new(std::sync::Mutex::new(Versioned::new(
        Room::new(RoomId::default_room(), 500, RoomState::Open).expect("a room"),
        Version::new(1),
    )));
    let mut rooms = MockRoomRepository::new();
    let read = Arc::clone(&stored);
    rooms.expect_find().returning(move |id| {
        let room = read.lock().expect("rooms").clone();
        Ok((room.value.id() == id).then_some(room))
    });
    let listed = Arc::clone(&stored);
    rooms
        .expect_list()
        .returning(move || Ok(vec![listed.lock().expect("rooms").clone()]));
    rooms.expect_save().returning(move |write| {
        let mut room = stored.lock().expect("rooms");
        if room.version != write.version {
            return Ok(Written::Stale);
        }
        *room = Versioned::new(write.value.clone(), Version::new(write.version.get() + 1));
        Ok(Written::Done(()))
    });
    rooms
}

/// The use cases over the fakes, as the bootstrap crate would wire them.
pub async fn use_cases(scenario: Scenario) -> UseCases {
    let policy = QueuePolicy::default();
    let mut clock = MockClock::new();
    clock.expect_now().return_const(NOW);
    let clock: Arc<MockClock> = Arc::new(clock);
    let signer = Arc::new(signer());
    let queue = Arc::new(queue());
    let catalog = Arc::new(catalog(scenario));
    let reservations = Arc::new(reservations());
    let wallets = Arc::new(wallets());
    let mut admission = MockAdmissionTrigger::new();
    admission.expect_request_admission().return_const(());
    let mut readiness = MockReadinessProbe::new();
    readiness.expect_check().returning(move || {
        if scenario.not_ready {
            Err(Failure::Unavailable.error())
        } else {
            Ok(())
        }
    });
    let services = Services::new(
        Ports {
            clock,
            signer,
            catalog,
            reservations,
            wallets,
            payments: Arc::new(payments()),
            idempotency: Arc::new(idempotency()),
            queue,
            admission: Arc::new(admission),
            retention: Arc::new(MockRetentionRepository::new()),
            rooms: Arc::new(rooms()),
            random: Arc::new(concert_application::ports::MockSecureRandom::new()),
            ticket_ends: None,
        },
        Settings {
            queue: policy,
            holds: HoldSettings::default(),
            wallet: WalletLimits {
                max_charge: MAX_CHARGE,
                max_balance: MAX_BALANCE,
            },
            admin_key: AdminKey::new(Some(ADMIN_KEY.to_owned())),
            identity: identity(scenario),
            retention: concert_domain::RetentionPolicy::default(),
            most_status_watches: 1,
        },
    );
    services
        .lines
        .default_line()
        .refresh(NOW)
        .await
        .expect("queue view");
    // No refreshes here: their sender is gone, so an event stream ends after its first event.
    let (_, refreshed) = tokio::sync::watch::channel(0);
    let (_, draining) = tokio::sync::watch::channel(false);
    UseCases {
        services: Arc::new(services),
        readiness: Arc::new(readiness),
        render_metrics: Arc::new(|| "# TYPE payments_total counter\npayments_total 3\n".to_owned()),
        queue_events: crate::QueueEvents {
            refreshed,
            draining,
            heartbeat: std::time::Duration::from_secs(15),
        },
    }
}

pub async fn app() -> Router {
    app_with(Scenario::default()).await
}

pub async fn app_with(scenario: Scenario) -> Router {
    router(use_cases(scenario).await)
}

/// An answer, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "body is not JSON ({error}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    pub fn content_type(&self) -> &str {
        self.header(header::CONTENT_TYPE.as_str())
            .unwrap_or_default()
    }

    /// Asserts a problem+json answer with this status and code; returns its `detail`.
    #[track_caller]
    pub fn problem(&self, status: u16, code: &str) -> String {
        assert_eq!(
            (self.status.as_u16(), self.content_type()),
            (status, PROBLEM_JSON),
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        let body = self.json();
        assert_eq!(body["code"], code, "body: {body}");
        assert_eq!(body["status"], status, "body: {body}");
        assert!(body["type"].as_str().is_some_and(|t| !t.is_empty()));
        assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()));
        body["detail"].as_str().expect("detail").to_owned()
    }

    /// Asserts a JSON success answer with this status; returns the body.
    #[track_caller]
    pub fn ok(&self, status: u16) -> Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        assert!(
            self.content_type().starts_with("application/json"),
            "content type {}",
            self.content_type()
        );
        self.json()
    }
}

/// A request under construction.
pub struct Call {
    builder: axum::http::request::Builder,
    body: Body,
}

pub fn call(method: Method, uri: &str) -> Call {
    Call {
        builder: Request::builder().method(method).uri(uri),
        body: Body::empty(),
    }
}

pub fn get(uri: &str) -> Call {
    call(Method::GET, uri)
}

pub fn post(uri: &str) -> Call {
    call(Method::POST, uri)
}

pub fn delete(uri: &str) -> Call {
    call(Method::DELETE, uri)
}

impl Call {
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.builder = self.builder.header(name, value);
        self
    }

    /// The connection's peer, as `axum::serve` with connect info records it.
    pub fn peer(mut self, addr: &str) -> Self {
        let addr: std::net::SocketAddr = addr.parse().expect("a socket address");
        self.builder = self.builder.extension(axum::extract::ConnectInfo(addr));
        self
    }

    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }

    /// A JSON body with its content type.
    pub fn json(self, body: &Value) -> Self {
        self.header("content-type", "application/json")
            .raw_body(body.to_string())
    }

    pub fn raw_body(mut self, body: impl Into<Body>) -> Self {
        self.body = body.into();
        self
    }

    pub async fn send(self, app: &Router) -> Answer {
        let request = self.builder.body(self.body).expect("request");
        let response = app.clone().oneshot(request).await.expect("infallible");
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX).await.expect("body");
        Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }
}
