//! The problem+json mapping of every use case error: each variant gets its code and status, and
//! every code of docs/API.md is produced by something.

use concert_domain::HoldDenied;
use concert_domain::reservation::HoldLimitReached;
use concert_domain::seat::HoldRefused;
use concert_domain::wallet::ChargeRefused;
use std::collections::HashSet;

use axum::response::IntoResponse;
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
use concert_application::ports::InvalidIdentity;
use concert_application::read_point_history::ReadPointHistoryError;
use concert_application::read_queue_status::ReadQueueStatusError;
use concert_application::read_reservation::ReadReservationError;
use concert_domain::ParseError;

use super::*;
use crate::problem::{ErrorCode, Problem};

fn concert() -> ConcertId {
    ConcertId::new(1).expect("id")
}

fn reservation_id() -> ReservationId {
    ReservationId::new(41).expect("id")
}

fn invalid() -> ParseError {
    ParseError::new("seatNo", "must be between 1 and 50, got 51")
}

fn unavailable() -> RepositoryError {
    Failure::Unavailable.error()
}

fn unexpected() -> RepositoryError {
    Failure::Unexpected.error()
}

/// Every variant of every use case error, with the code it must map to.
fn every_error() -> Vec<(Problem, &'static str)> {
    vec![
        (AuthorizeError::TokenInvalid.into(), "TOKEN_INVALID"),
        (AuthorizeError::TokenExpired.into(), "TOKEN_EXPIRED"),
        (AuthorizeError::QueueNotActive.into(), "QUEUE_NOT_ACTIVE"),
        (AuthorizeError::WrongRoom.into(), "TOKEN_WRONG_ROOM"),
        (
            ListAvailableDatesError::WrongRoom(concert()).into(),
            "TOKEN_WRONG_ROOM",
        ),
        (
            FindDateError::WrongRoom(concert()).into(),
            "TOKEN_WRONG_ROOM",
        ),
        (
            HoldSeatError::WrongRoom(concert()).into(),
            "TOKEN_WRONG_ROOM",
        ),
        (
            AuthorizeError::Repository(unavailable()).into(),
            "SERVICE_UNAVAILABLE",
        ),
        (
            IssueQueueTokenError::Repository(unexpected()).into(),
            "INTERNAL_ERROR",
        ),
        (ReadQueueStatusError::TokenInvalid.into(), "TOKEN_INVALID"),
        (IssueQueueTokenError::RoomClosed.into(), "ROOM_CLOSED"),
        (IssueQueueTokenError::RoomNotFound.into(), "ROOM_NOT_FOUND"),
        (
            RoomAdminError::RoomExists(
                concert_domain::RoomId::parse("spring-gala").expect("a room id"),
            )
            .into(),
            "ROOM_EXISTS",
        ),
        (
            RoomAdminError::ConcertNotFound(concert()).into(),
            "CONCERT_NOT_FOUND",
        ),
        (
            RoomAdminError::ConcertInAnotherRoom(
                concert(),
                concert_domain::RoomId::parse("spring-gala").expect("a room id"),
            )
            .into(),
            "CONCERT_IN_ANOTHER_ROOM",
        ),
        (LeaveQueueError::TokenInvalid.into(), "TOKEN_INVALID"),
        (LeaveQueueError::TokenExpired.into(), "TOKEN_EXPIRED"),
        (
            RoomAdminError::Admin(AdminRefused::KeyInvalid).into(),
            "ADMIN_KEY_INVALID",
        ),
        (
            RoomAdminError::Admin(AdminRefused::Throttled {
                retry_after_seconds: 5,
            })
            .into(),
            "RATE_LIMITED",
        ),
        (
            RoomAdminError::RoomNotFound(
                concert_domain::RoomId::parse("spring-gala").expect("a room id"),
            )
            .into(),
            "ROOM_NOT_FOUND",
        ),
        (
            ReadQueueStatusError::Repository(unavailable()).into(),
            "SERVICE_UNAVAILABLE",
        ),
        (
            ListAvailableDatesError::ConcertNotFound(concert()).into(),
            "CONCERT_NOT_FOUND",
        ),
        (
            ListAvailableDatesError::Repository(unavailable()).into(),
            "SERVICE_UNAVAILABLE",
        ),
        (
            FindDateError::ConcertNotFound(concert()).into(),
            "CONCERT_NOT_FOUND",
        ),
        (
            FindDateError::DateNotFound(concert(), DATE).into(),
            "DATE_NOT_FOUND",
        ),
        (
            FindDateError::Repository(unexpected()).into(),
            "INTERNAL_ERROR",
        ),
        (
            HoldSeatError::ConcertNotFound(concert()).into(),
            "CONCERT_NOT_FOUND",
        ),
        (
            HoldSeatError::DateNotFound(concert(), DATE).into(),
            "DATE_NOT_FOUND",
        ),
        (
            HoldSeatError::InvalidSeat(invalid()).into(),
            "VALIDATION_FAILED",
        ),
        (
            HoldSeatError::Denied {
                date: DATE,
                seat_no: 7,
                denied: HoldDenied::SeatUnavailable(HoldRefused::HeldByOther),
            }
            .into(),
            "SEAT_UNAVAILABLE",
        ),
        (
            HoldSeatError::Denied {
                date: DATE,
                seat_no: 7,
                denied: HoldDenied::LimitReached(HoldLimitReached { limit: 4 }),
            }
            .into(),
            "HOLD_LIMIT_REACHED",
        ),
        (
            HoldSeatError::Repository(unavailable()).into(),
            "SERVICE_UNAVAILABLE",
        ),
        (
            ReadReservationError::NotFound(reservation_id()).into(),
            "RESERVATION_NOT_FOUND",
        ),
        (
            ReadReservationError::Repository(unexpected()).into(),
            "INTERNAL_ERROR",
        ),
        (
            CancelReservationError::NotFound(reservation_id()).into(),
            "RESERVATION_NOT_FOUND",
        ),
        (
            CancelReservationError::NotHeld(reservation_id()).into(),
            "RESERVATION_NOT_HELD",
        ),
        (
            CancelReservationError::Repository(unavailable()).into(),
            "SERVICE_UNAVAILABLE",
        ),
        (
            ChargePointsError::InvalidAmount(invalid()).into(),
            "VALIDATION_FAILED",
        ),
        (
            ChargePointsError::Refused(ChargeRefused::BalanceLimitExceeded {
                max_balance: MAX_BALANCE,
            })
            .into(),
            "BALANCE_LIMIT_EXCEEDED",
        ),
        (
            ChargePointsError::IdempotencyKeyReused.into(),
            "IDEMPOTENCY_KEY_REUSED",
        ),
        (
            ChargePointsError::Repository(unavailable()).into(),
            "SERVICE_UNAVAILABLE",
        ),
        (
            ReadPointHistoryError::InvalidQuery(invalid()).into(),
            "VALIDATION_FAILED",
        ),
        (
            ReadPointHistoryError::Repository(unexpected()).into(),
            "INTERNAL_ERROR",
        ),
        (
            PayReservationError::Unauthorized(AuthorizeError::TokenExpired).into(),
            "TOKEN_EXPIRED",
        ),
        (
            PayReservationError::Unauthorized(AuthorizeError::QueueNotActive).into(),
            "QUEUE_NOT_ACTIVE",
        ),
        (
            PayReservationError::NotFound(reservation_id()).into(),
            "RESERVATION_NOT_FOUND",
        ),
        (
            PayReservationError::Expired(reservation_id()).into(),
            "RESERVATION_EXPIRED",
        ),
        (
            PayReservationError::NotHeld(reservation_id()).into(),
            "RESERVATION_NOT_HELD",
        ),
        (
            PayReservationError::InsufficientBalance {
                balance: 1,
                price: 2,
            }
            .into(),
            "INSUFFICIENT_BALANCE",
        ),
        (
            PayReservationError::IdempotencyKeyReused.into(),
            "IDEMPOTENCY_KEY_REUSED",
        ),
        (
            PayReservationError::Repository(unexpected()).into(),
            "INTERNAL_ERROR",
        ),
        (
            CreateConcertError::AdminKeyInvalid.into(),
            "ADMIN_KEY_INVALID",
        ),
        (
            CreateConcertError::Invalid(invalid()).into(),
            "VALIDATION_FAILED",
        ),
        (
            CreateConcertError::Repository(unavailable()).into(),
            "SERVICE_UNAVAILABLE",
        ),
        (
            IdentityError::Invalid(InvalidIdentity::new("expired")).into(),
            "IDENTITY_INVALID",
        ),
        (IdentityError::Mismatch.into(), "IDENTITY_MISMATCH"),
        (IdentityError::Unnamed.into(), "VALIDATION_FAILED"),
        (
            CreateConcertError::Throttled {
                retry_after_seconds: 40,
            }
            .into(),
            "RATE_LIMITED",
        ),
    ]
}

#[tokio::test]
async fn every_use_case_error_maps_to_its_code_and_status() {
    for (problem, code) in every_error() {
        let expected_status = match code {
            "VALIDATION_FAILED" => 400,
            "TOKEN_INVALID" | "TOKEN_EXPIRED" | "ADMIN_KEY_INVALID" | "IDENTITY_INVALID" => 401,
            "QUEUE_NOT_ACTIVE" | "TOKEN_WRONG_ROOM" | "IDENTITY_MISMATCH" => 403,
            "RATE_LIMITED" => 429,
            "CONCERT_NOT_FOUND" | "ROOM_NOT_FOUND" | "DATE_NOT_FOUND" | "RESERVATION_NOT_FOUND" => {
                404
            }
            "SERVICE_UNAVAILABLE" => 503,
            "INTERNAL_ERROR" => 500,
            _ => 409,
        };
        assert_eq!(problem.code().as_str(), code, "{problem}");
        let response = problem.clone().into_response();
        let (parts, body) = response.into_parts();
        assert_eq!(parts.status.as_u16(), expected_status, "{problem}");
        assert_eq!(parts.headers["content-type"], PROBLEM_JSON);
        let body: Value =
            serde_json::from_slice(&axum::body::to_bytes(body, usize::MAX).await.expect("body"))
                .expect("json");
        assert_eq!(body["code"], code);
        assert_eq!(body["status"], expected_status);
        assert_eq!(body["detail"], problem.detail());
        assert!(body["type"].as_str().is_some_and(|t| t.starts_with("urn:")));
        assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()));
    }
}

#[test]
fn validation_failures_name_the_field() {
    let problem: Problem = HoldSeatError::InvalidSeat(invalid()).into();
    assert!(problem.detail().starts_with("seatNo: "), "{problem}");
}

#[test]
fn unexpected_errors_reveal_nothing_and_unavailable_ones_ask_for_a_retry() {
    let problem: Problem = unexpected().into();
    assert!(!problem.detail().contains("connection reset"));
    let response = Problem::from(unavailable()).into_response();
    assert_eq!(response.headers()["retry-after"], "1");
    let response = Problem::from(unexpected()).into_response();
    assert!(response.headers().get("retry-after").is_none());
}

#[test]
fn unauthorized_answers_carry_a_bearer_challenge() {
    for problem in [
        Problem::from(AuthorizeError::TokenInvalid),
        Problem::from(AuthorizeError::TokenExpired),
        Problem::from(CreateConcertError::AdminKeyInvalid),
        Problem::from(IdentityError::Invalid(InvalidIdentity::new("expired"))),
    ] {
        let response = problem.into_response();
        let challenge = response.headers()["www-authenticate"]
            .to_str()
            .expect("ascii");
        assert!(challenge.starts_with("Bearer"), "{challenge}");
    }
}

#[test]
fn every_code_of_the_contract_exists_once_with_its_serialised_name() {
    let contract = [
        ("VALIDATION_FAILED", 400),
        ("TOKEN_INVALID", 401),
        ("TOKEN_EXPIRED", 401),
        ("QUEUE_NOT_ACTIVE", 403),
        ("TOKEN_WRONG_ROOM", 403),
        ("CONCERT_NOT_FOUND", 404),
        ("ROOM_NOT_FOUND", 404),
        ("DATE_NOT_FOUND", 404),
        ("SEAT_UNAVAILABLE", 409),
        ("HOLD_LIMIT_REACHED", 409),
        ("RESERVATION_NOT_FOUND", 404),
        ("RESERVATION_NOT_HELD", 409),
        ("RESERVATION_EXPIRED", 409),
        ("INSUFFICIENT_BALANCE", 409),
        ("BALANCE_LIMIT_EXCEEDED", 409),
        ("IDEMPOTENCY_KEY_REUSED", 409),
        ("ROOM_CLOSED", 409),
        ("ROOM_EXISTS", 409),
        ("CONCERT_IN_ANOTHER_ROOM", 409),
        ("ADMIN_KEY_INVALID", 401),
        ("IDENTITY_INVALID", 401),
        ("IDENTITY_MISMATCH", 403),
        ("RATE_LIMITED", 429),
        ("REQUEST_TIMEOUT", 408),
        ("NOT_FOUND", 404),
        ("METHOD_NOT_ALLOWED", 405),
        ("PAYLOAD_TOO_LARGE", 413),
        ("URI_TOO_LONG", 414),
        ("HEADERS_TOO_LARGE", 431),
        ("UNSUPPORTED_MEDIA_TYPE", 415),
        ("SERVICE_UNAVAILABLE", 503),
        ("INTERNAL_ERROR", 500),
    ];
    assert_eq!(ErrorCode::ALL.len(), contract.len());
    for (code, (name, status)) in ErrorCode::ALL.iter().zip(contract) {
        assert_eq!(code.as_str(), name);
        assert_eq!(serde_json::to_value(code).expect("json"), name);
        assert_eq!(code.status().as_u16(), status, "{name}");
    }
    let types: HashSet<String> = ErrorCode::ALL.iter().map(|c| c.type_uri()).collect();
    assert_eq!(types.len(), ErrorCode::ALL.len());
}

#[test]
fn every_code_a_use_case_can_produce_is_covered_above() {
    let produced: HashSet<&str> = every_error().into_iter().map(|(_, code)| code).collect();
    let router_codes = [
        "NOT_FOUND",
        "METHOD_NOT_ALLOWED",
        "PAYLOAD_TOO_LARGE",
        "URI_TOO_LONG",
        "HEADERS_TOO_LARGE",
        "UNSUPPORTED_MEDIA_TYPE",
        "REQUEST_TIMEOUT",
    ];
    for code in ErrorCode::ALL {
        assert!(
            produced.contains(code.as_str()) || router_codes.contains(&code.as_str()),
            "{code} is produced by nothing"
        );
    }
}
