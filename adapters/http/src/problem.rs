//! The one error answer of the API: RFC 9457 problem details with a stable machine-readable
//! `code`, and the mapping of every use case error onto it.
//!
//! Each `From<XxxError>` is an exhaustive `match` with no wildcard arm: a new variant in the
//! application does not compile until someone picks its status here.

use std::error::Error as StdError;
use std::fmt;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use concert_application::admin_access::AdminRefused;
use concert_application::authorize_request::AuthorizeError;
use concert_application::cancel_reservation::CancelReservationError;
use concert_application::charge_points::ChargePointsError;
use concert_application::create_concert::CreateConcertError;
use concert_application::hold_seat::HoldSeatError;
use concert_application::identify_caller::IdentityError;
use concert_application::issue_queue_token::IssueQueueTokenError;
use concert_application::leave_queue::LeaveQueueError;
use concert_application::list_available_dates::ListAvailableDatesError;
use concert_application::list_available_seats::FindDateError;
use concert_application::manage_rooms::RoomAdminError;
use concert_application::pay_reservation::PayReservationError;
use concert_application::ports::RepositoryError;
use concert_application::read_point_history::ReadPointHistoryError;
use concert_application::read_queue_status::ReadQueueStatusError;
use concert_application::read_reservation::ReadReservationError;
use concert_application::watch_queue_status::WatchRefused;
use concert_domain::HoldDenied;
use concert_domain::ParseError;
use concert_domain::wallet::ChargeRefused;
use serde::Serialize;
use utoipa::ToSchema;

/// The media type of every error answer.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The stable, machine-readable identifier of an error. Each code always comes with the same
/// HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    ValidationFailed,
    TokenInvalid,
    TokenExpired,
    QueueNotActive,
    TokenWrongRoom,
    ConcertNotFound,
    RoomNotFound,
    DateNotFound,
    SeatUnavailable,
    HoldLimitReached,
    ReservationNotFound,
    ReservationNotHeld,
    ReservationExpired,
    InsufficientBalance,
    BalanceLimitExceeded,
    IdempotencyKeyReused,
    RoomClosed,
    RoomExists,
    ConcertInAnotherRoom,
    AdminKeyInvalid,
    IdentityInvalid,
    IdentityMismatch,
    RateLimited,
    RequestTimeout,
    NotFound,
    MethodNotAllowed,
    PayloadTooLarge,
    UriTooLong,
    HeadersTooLarge,
    UnsupportedMediaType,
    ServiceUnavailable,
    InternalError,
}

impl ErrorCode {
    /// Every code, for documentation and tests.
    pub const ALL: [Self; 32] = [
        Self::ValidationFailed,
        Self::TokenInvalid,
        Self::TokenExpired,
        Self::QueueNotActive,
        Self::TokenWrongRoom,
        Self::ConcertNotFound,
        Self::RoomNotFound,
        Self::DateNotFound,
        Self::SeatUnavailable,
        Self::HoldLimitReached,
        Self::ReservationNotFound,
        Self::ReservationNotHeld,
        Self::ReservationExpired,
        Self::InsufficientBalance,
        Self::BalanceLimitExceeded,
        Self::IdempotencyKeyReused,
        Self::RoomClosed,
        Self::RoomExists,
        Self::ConcertInAnotherRoom,
        Self::AdminKeyInvalid,
        Self::IdentityInvalid,
        Self::IdentityMismatch,
        Self::RateLimited,
        Self::RequestTimeout,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::PayloadTooLarge,
        Self::UriTooLong,
        Self::HeadersTooLarge,
        Self::UnsupportedMediaType,
        Self::ServiceUnavailable,
        Self::InternalError,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ValidationFailed => "VALIDATION_FAILED",
            Self::TokenInvalid => "TOKEN_INVALID",
            Self::TokenExpired => "TOKEN_EXPIRED",
            Self::QueueNotActive => "QUEUE_NOT_ACTIVE",
            Self::TokenWrongRoom => "TOKEN_WRONG_ROOM",
            Self::ConcertNotFound => "CONCERT_NOT_FOUND",
            Self::RoomNotFound => "ROOM_NOT_FOUND",
            Self::DateNotFound => "DATE_NOT_FOUND",
            Self::SeatUnavailable => "SEAT_UNAVAILABLE",
            Self::HoldLimitReached => "HOLD_LIMIT_REACHED",
            Self::ReservationNotFound => "RESERVATION_NOT_FOUND",
            Self::ReservationNotHeld => "RESERVATION_NOT_HELD",
            Self::ReservationExpired => "RESERVATION_EXPIRED",
            Self::InsufficientBalance => "INSUFFICIENT_BALANCE",
            Self::BalanceLimitExceeded => "BALANCE_LIMIT_EXCEEDED",
            Self::IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
            Self::RoomClosed => "ROOM_CLOSED",
            Self::RoomExists => "ROOM_EXISTS",
            Self::ConcertInAnotherRoom => "CONCERT_IN_ANOTHER_ROOM",
            Self::AdminKeyInvalid => "ADMIN_KEY_INVALID",
            Self::IdentityInvalid => "IDENTITY_INVALID",
            Self::IdentityMismatch => "IDENTITY_MISMATCH",
            Self::RateLimited => "RATE_LIMITED",
            Self::RequestTimeout => "REQUEST_TIMEOUT",
            Self::NotFound => "NOT_FOUND",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Self::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Self::UriTooLong => "URI_TOO_LONG",
            Self::HeadersTooLarge => "HEADERS_TOO_LARGE",
            Self::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            Self::ServiceUnavailable => "SERVICE_UNAVAILABLE",
            Self::InternalError => "INTERNAL_ERROR",
        }
    }

    pub const fn status(self) -> StatusCode {
        match self {
            Self::ValidationFailed => StatusCode::BAD_REQUEST,
            Self::TokenInvalid
            | Self::TokenExpired
            | Self::AdminKeyInvalid
            | Self::IdentityInvalid => StatusCode::UNAUTHORIZED,
            Self::QueueNotActive | Self::TokenWrongRoom | Self::IdentityMismatch => {
                StatusCode::FORBIDDEN
            }
            Self::ConcertNotFound
            | Self::RoomNotFound
            | Self::DateNotFound
            | Self::ReservationNotFound
            | Self::NotFound => StatusCode::NOT_FOUND,
            Self::SeatUnavailable
            | Self::HoldLimitReached
            | Self::ReservationNotHeld
            | Self::ReservationExpired
            | Self::InsufficientBalance
            | Self::BalanceLimitExceeded
            | Self::IdempotencyKeyReused
            | Self::RoomClosed
            | Self::RoomExists
            | Self::ConcertInAnotherRoom => StatusCode::CONFLICT,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UriTooLong => StatusCode::URI_TOO_LONG,
            Self::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A short, human-readable summary that does not change from occurrence to occurrence.
    pub const fn title(self) -> &'static str {
        match self {
            Self::ValidationFailed => "The request is not valid",
            Self::TokenInvalid => "The queue token is not valid",
            Self::TokenExpired => "The queue token has expired",
            Self::QueueNotActive => "The queue token is not active yet",
            Self::TokenWrongRoom => "The queue token is for another waiting room",
            Self::ConcertNotFound => "Concert not found",
            Self::RoomNotFound => "Waiting room not found",
            Self::DateNotFound => "Concert date not found",
            Self::SeatUnavailable => "The seat is not available",
            Self::HoldLimitReached => "Too many seats held",
            Self::ReservationNotFound => "Reservation not found",
            Self::ReservationNotHeld => "The reservation is no longer held",
            Self::ReservationExpired => "The reservation's hold has run out",
            Self::InsufficientBalance => "The balance is too low",
            Self::BalanceLimitExceeded => "The balance would exceed its maximum",
            Self::IdempotencyKeyReused => "The idempotency key was used with another request",
            Self::RoomClosed => "The waiting room is closed",
            Self::RoomExists => "A waiting room with this id exists",
            Self::ConcertInAnotherRoom => "The concert is guarded by another waiting room",
            Self::AdminKeyInvalid => "The admin key is missing or wrong",
            Self::IdentityInvalid => "The identity token is missing or not valid",
            Self::IdentityMismatch => "The request names another user than the caller",
            Self::RateLimited => "Too many requests",
            Self::RequestTimeout => "The request took too long",
            Self::NotFound => "Not found",
            Self::MethodNotAllowed => "Method not allowed",
            Self::PayloadTooLarge => "The request body is too large",
            Self::UriTooLong => "The request target is too long",
            Self::HeadersTooLarge => "The request headers are too large",
            Self::UnsupportedMediaType => "Unsupported media type",
            Self::ServiceUnavailable => "The service is temporarily unavailable",
            Self::InternalError => "Internal server error",
        }
    }

    /// The problem `type`: a URI that names the kind of problem. Not meant to be dereferenced.
    pub fn type_uri(self) -> String {
        format!(
            "urn:concert-queue:problem:{}",
            self.as_str().to_ascii_lowercase().replace('_', "-")
        )
    }

    /// The code an error answer of this status gets when nothing more specific is known (an
    /// answer produced outside the handlers, e.g. by a framework layer).
    pub fn for_status(status: StatusCode) -> Self {
        match status {
            StatusCode::UNAUTHORIZED => Self::TokenInvalid,
            StatusCode::NOT_FOUND => Self::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => Self::MethodNotAllowed,
            StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge,
            StatusCode::URI_TOO_LONG => Self::UriTooLong,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => Self::HeadersTooLarge,
            StatusCode::REQUEST_TIMEOUT => Self::RequestTimeout,
            StatusCode::TOO_MANY_REQUESTS => Self::RateLimited,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::UnsupportedMediaType,
            StatusCode::SERVICE_UNAVAILABLE => Self::ServiceUnavailable,
            status if status.is_server_error() => Self::InternalError,
            _ => Self::ValidationFailed,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of every error answer (`application/problem+json`, RFC 9457).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(
    as = Problem,
    example = json!({
        "type": "urn:concert-queue:problem:seat-unavailable",
        "title": "The seat is not available",
        "status": 409,
        "detail": "seat 7 on 2026-12-24 is not available",
        "code": "SEAT_UNAVAILABLE"
    })
)]
pub struct ProblemBody {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status of the answer.
    pub status: u16,
    /// What went wrong with this request; names the field at fault for `VALIDATION_FAILED`.
    pub detail: String,
    /// The stable machine-readable error code.
    pub code: ErrorCode,
}

/// An error answer on its way out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    code: ErrorCode,
    detail: String,
    retry_after: Option<u32>,
}

impl Problem {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// `400 VALIDATION_FAILED`; `detail` should name the field.
    pub fn validation(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::ValidationFailed, detail)
    }

    /// `500 INTERNAL_ERROR` with a body that reveals nothing; the cause goes to the log.
    pub fn internal() -> Self {
        Self::new(
            ErrorCode::InternalError,
            "the server failed to answer this request; its x-request-id identifies it in the logs",
        )
    }

    /// Asks the client to wait this many seconds before trying again.
    #[must_use]
    pub fn with_retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    pub fn detail(&self) -> &str {
        &self.detail
    }

    pub fn body(&self) -> ProblemBody {
        ProblemBody {
            problem_type: self.code.type_uri(),
            title: self.code.title().to_owned(),
            status: self.code.status().as_u16(),
            detail: self.detail.clone(),
            code: self.code,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.body()).unwrap_or_else(|_| {
            // Serialising plain strings and integers cannot fail; keep an answer anyway.
            br#"{"type":"about:blank","title":"Internal server error","status":500,"detail":"","code":"INTERNAL_ERROR"}"#.to_vec()
        });
        let mut response = (self.code.status(), body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        let challenge = match self.code {
            ErrorCode::TokenInvalid | ErrorCode::TokenExpired => {
                Some(r#"Bearer realm="queue", error="invalid_token""#)
            }
            ErrorCode::AdminKeyInvalid => Some(r#"Bearer realm="admin""#),
            ErrorCode::IdentityInvalid => Some(r#"Bearer realm="identity", error="invalid_token""#),
            _ => None,
        };
        if let Some(challenge) = challenge {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        response
    }
}

/// Displays an error and every error beneath it: `outer: inner: root cause`.
pub struct ErrorChain<'a>(pub &'a (dyn StdError + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

impl From<RepositoryError> for Problem {
    fn from(error: RepositoryError) -> Self {
        match error {
            RepositoryError::Unavailable(_) => {
                tracing::warn!(error = %ErrorChain(&error), "database unavailable");
                Self::new(
                    ErrorCode::ServiceUnavailable,
                    "the service cannot reach its database right now; try again shortly",
                )
                .with_retry_after(1)
            }
            // `Unexpected`, and any kind of failure a later release adds.
            _ => {
                tracing::error!(error = %ErrorChain(&error), "unexpected repository error");
                Self::internal()
            }
        }
    }
}

impl From<ParseError> for Problem {
    fn from(error: ParseError) -> Self {
        Self::validation(error.to_string())
    }
}

/// `429 RATE_LIMITED` for a client that must wait `wait` before trying again.
pub fn rate_limited(what: &str, wait: std::time::Duration) -> Problem {
    let seconds = u32::try_from(wait.as_secs().saturating_add(1)).unwrap_or(u32::MAX);
    Problem::new(
        ErrorCode::RateLimited,
        format!("too many {what} lately; retry in {seconds} s"),
    )
    .with_retry_after(seconds)
}

impl From<IdentityError> for Problem {
    fn from(error: IdentityError) -> Self {
        match error {
            IdentityError::Invalid(why) => Self::new(ErrorCode::IdentityInvalid, why.reason),
            IdentityError::Mismatch => Self::new(
                ErrorCode::IdentityMismatch,
                "the request names another user than the one the identity token verifies",
            ),
            // What serde says of the missing field, as before identity modes existed.
            IdentityError::Unnamed => Self::validation("request body: missing field `userId`"),
        }
    }
}

impl From<AuthorizeError> for Problem {
    fn from(error: AuthorizeError) -> Self {
        match error {
            AuthorizeError::TokenInvalid => Self::new(
                ErrorCode::TokenInvalid,
                "the queue token is missing, malformed or not signed by this service",
            ),
            AuthorizeError::TokenExpired => Self::new(
                ErrorCode::TokenExpired,
                "the queue token has ended; ask for a new one",
            ),
            AuthorizeError::QueueNotActive => Self::new(
                ErrorCode::QueueNotActive,
                "the queue token is still waiting in line",
            ),
            AuthorizeError::WrongRoom => Self::new(
                ErrorCode::TokenWrongRoom,
                "this concert is sold through another waiting room; join that room's line",
            ),
            AuthorizeError::Repository(error) => error.into(),
        }
    }
}

impl From<IssueQueueTokenError> for Problem {
    fn from(error: IssueQueueTokenError) -> Self {
        match error {
            IssueQueueTokenError::RoomClosed => Self::new(
                ErrorCode::RoomClosed,
                "the waiting room is closed to newcomers",
            ),
            IssueQueueTokenError::RoomNotFound => Self::new(
                ErrorCode::RoomNotFound,
                "there is no waiting room with this roomId",
            ),
            IssueQueueTokenError::Repository(error) => error.into(),
        }
    }
}

impl From<WatchRefused> for Problem {
    fn from(refused: WatchRefused) -> Self {
        match refused {
            WatchRefused::TokenInvalid => AuthorizeError::TokenInvalid.into(),
            WatchRefused::TooMany(most) => {
                tracing::warn!(most, "event streams at their most on this instance");
                Self::new(
                    ErrorCode::ServiceUnavailable,
                    format!(
                        "this instance already serves {most} event streams; poll \
                         GET /v1/queue/status, or try again shortly"
                    ),
                )
                .with_retry_after(5)
            }
        }
    }
}

impl From<ReadQueueStatusError> for Problem {
    fn from(error: ReadQueueStatusError) -> Self {
        match error {
            ReadQueueStatusError::TokenInvalid => AuthorizeError::TokenInvalid.into(),
            ReadQueueStatusError::Repository(error) => error.into(),
        }
    }
}

impl From<LeaveQueueError> for Problem {
    fn from(error: LeaveQueueError) -> Self {
        match error {
            LeaveQueueError::TokenInvalid => AuthorizeError::TokenInvalid.into(),
            LeaveQueueError::TokenExpired => AuthorizeError::TokenExpired.into(),
            LeaveQueueError::Repository(error) => error.into(),
        }
    }
}

impl From<ListAvailableDatesError> for Problem {
    fn from(error: ListAvailableDatesError) -> Self {
        match error {
            ListAvailableDatesError::ConcertNotFound(concert) => Self::new(
                ErrorCode::ConcertNotFound,
                format!("concert {concert} not found"),
            ),
            ListAvailableDatesError::WrongRoom(_) => AuthorizeError::WrongRoom.into(),
            ListAvailableDatesError::Repository(error) => error.into(),
        }
    }
}

impl From<FindDateError> for Problem {
    fn from(error: FindDateError) -> Self {
        match error {
            FindDateError::ConcertNotFound(concert) => Self::new(
                ErrorCode::ConcertNotFound,
                format!("concert {concert} not found"),
            ),
            FindDateError::DateNotFound(concert, date) => Self::new(
                ErrorCode::DateNotFound,
                format!("concert {concert} has no bookable date {date}"),
            ),
            FindDateError::WrongRoom(_) => AuthorizeError::WrongRoom.into(),
            FindDateError::Repository(error) => error.into(),
        }
    }
}

impl From<HoldSeatError> for Problem {
    fn from(error: HoldSeatError) -> Self {
        match error {
            HoldSeatError::ConcertNotFound(concert) => Self::new(
                ErrorCode::ConcertNotFound,
                format!("concert {concert} not found"),
            ),
            HoldSeatError::DateNotFound(concert, date) => Self::new(
                ErrorCode::DateNotFound,
                format!("concert {concert} has no bookable date {date}"),
            ),
            HoldSeatError::WrongRoom(_) => AuthorizeError::WrongRoom.into(),
            HoldSeatError::InvalidSeat(error) => error.into(),
            HoldSeatError::Denied {
                date,
                seat_no,
                denied,
            } => match denied {
                HoldDenied::SeatUnavailable(_) => Self::new(
                    ErrorCode::SeatUnavailable,
                    format!("seat {seat_no} on {date} is not available"),
                ),
                HoldDenied::LimitReached(reached) => Self::new(
                    ErrorCode::HoldLimitReached,
                    format!(
                        "you already hold {} seats, the most allowed at once",
                        reached.limit
                    ),
                ),
            },
            HoldSeatError::Repository(error) => error.into(),
        }
    }
}

fn reservation_not_found(id: impl fmt::Display) -> Problem {
    Problem::new(
        ErrorCode::ReservationNotFound,
        format!("reservation {id} not found"),
    )
}

fn reservation_not_held(id: impl fmt::Display) -> Problem {
    Problem::new(
        ErrorCode::ReservationNotHeld,
        format!("reservation {id} is no longer held (paid, cancelled or expired)"),
    )
}

impl From<ReadReservationError> for Problem {
    fn from(error: ReadReservationError) -> Self {
        match error {
            ReadReservationError::NotFound(id) => reservation_not_found(id),
            ReadReservationError::Repository(error) => error.into(),
        }
    }
}

impl From<CancelReservationError> for Problem {
    fn from(error: CancelReservationError) -> Self {
        match error {
            CancelReservationError::NotFound(id) => reservation_not_found(id),
            CancelReservationError::NotHeld(id) => reservation_not_held(id),
            CancelReservationError::Repository(error) => error.into(),
        }
    }
}

fn key_reused() -> Problem {
    Problem::new(
        ErrorCode::IdempotencyKeyReused,
        "this Idempotency-Key was first used with a different request body",
    )
}

impl From<ChargePointsError> for Problem {
    fn from(error: ChargePointsError) -> Self {
        match error {
            ChargePointsError::InvalidAmount(error) => error.into(),
            ChargePointsError::Refused(ChargeRefused::BalanceLimitExceeded { max_balance }) => {
                Self::new(
                    ErrorCode::BalanceLimitExceeded,
                    format!("the balance after this charge would exceed {max_balance}"),
                )
            }
            ChargePointsError::IdempotencyKeyReused => key_reused(),
            ChargePointsError::Repository(error) => error.into(),
        }
    }
}

impl From<ReadPointHistoryError> for Problem {
    fn from(error: ReadPointHistoryError) -> Self {
        match error {
            ReadPointHistoryError::InvalidQuery(error) => error.into(),
            ReadPointHistoryError::Repository(error) => error.into(),
        }
    }
}

impl From<PayReservationError> for Problem {
    fn from(error: PayReservationError) -> Self {
        match error {
            PayReservationError::Unauthorized(error) => error.into(),
            PayReservationError::NotFound(id) => reservation_not_found(id),
            PayReservationError::Expired(id) => Self::new(
                ErrorCode::ReservationExpired,
                format!("the hold on reservation {id} has run out"),
            ),
            PayReservationError::NotHeld(id) => reservation_not_held(id),
            PayReservationError::InsufficientBalance { balance, price } => Self::new(
                ErrorCode::InsufficientBalance,
                format!("the balance {balance} is less than the price {price}"),
            ),
            PayReservationError::IdempotencyKeyReused => key_reused(),
            PayReservationError::Repository(error) => error.into(),
        }
    }
}

impl From<CreateConcertError> for Problem {
    fn from(error: CreateConcertError) -> Self {
        match error {
            CreateConcertError::AdminKeyInvalid => admin_key_invalid(),
            CreateConcertError::Throttled {
                retry_after_seconds,
            } => admin_throttled(retry_after_seconds),
            CreateConcertError::Invalid(error) => error.into(),
            CreateConcertError::Repository(error) => error.into(),
        }
    }
}

impl From<AdminRefused> for Problem {
    fn from(refused: AdminRefused) -> Self {
        match refused {
            AdminRefused::KeyInvalid => admin_key_invalid(),
            AdminRefused::Throttled {
                retry_after_seconds,
            } => admin_throttled(retry_after_seconds),
        }
    }
}

impl From<RoomAdminError> for Problem {
    fn from(error: RoomAdminError) -> Self {
        match error {
            RoomAdminError::Admin(refused) => refused.into(),
            RoomAdminError::Invalid(error) => error.into(),
            RoomAdminError::RoomNotFound(room) => room_not_found(&room),
            RoomAdminError::RoomExists(room) => {
                Self::new(ErrorCode::RoomExists, format!("room {room} exists"))
            }
            RoomAdminError::ConcertNotFound(concert) => Self::new(
                ErrorCode::ConcertNotFound,
                format!("there is no concert {concert}"),
            ),
            RoomAdminError::ConcertInAnotherRoom(concert, room) => Self::new(
                ErrorCode::ConcertInAnotherRoom,
                format!("concert {concert} is guarded by room {room}"),
            ),
            RoomAdminError::Repository(error) => error.into(),
        }
    }
}

/// `404 ROOM_NOT_FOUND`.
fn room_not_found(room: &concert_domain::RoomId) -> Problem {
    Problem::new(ErrorCode::RoomNotFound, format!("there is no room {room}"))
}

/// `429 RATE_LIMITED` for an instance that stopped looking at admin keys for a while.
fn admin_throttled(retry_after_seconds: u64) -> Problem {
    Problem::new(
        ErrorCode::RateLimited,
        "too many wrong admin keys were presented lately; retry later",
    )
    .with_retry_after(u32::try_from(retry_after_seconds).unwrap_or(u32::MAX))
}

/// `401 ADMIN_KEY_INVALID`.
pub fn admin_key_invalid() -> Problem {
    Problem::new(
        ErrorCode::AdminKeyInvalid,
        "send the admin API key as `Authorization: Bearer <key>`",
    )
}
