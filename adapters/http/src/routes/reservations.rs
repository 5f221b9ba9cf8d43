//! Section 3 of docs/API.md: seat holds (ACTIVE token).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use concert_application::hold_seat::HoldSeatCommand;
use concert_domain::{ConcertId, Reservation, ReservationId, ReservationStatus};
use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};
use utoipa::ToSchema;

use crate::AppState;
use crate::extract::{Caller, Param, ValidJson, ValidPath};
use crate::format::{calendar_date, utc};
use crate::problem::{Problem, ProblemBody};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[schema(as = ReservationStatus)]
pub enum ReservationStatusDto {
    /// The seat is held until `expiresAt`.
    Held,
    /// Paid: the seat is sold to the user.
    Confirmed,
    /// The hold ran out unpaid.
    Expired,
    /// Cancelled by its user.
    Cancelled,
}

impl From<ReservationStatus> for ReservationStatusDto {
    fn from(status: ReservationStatus) -> Self {
        match status {
            ReservationStatus::Held => Self::Held,
            ReservationStatus::Confirmed => Self::Confirmed,
            ReservationStatus::Expired => Self::Expired,
            ReservationStatus::Cancelled => Self::Cancelled,
        }
    }
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HoldSeatRequest {
    #[schema(minimum = 1, example = 1)]
    pub concert_id: i64,
    #[serde(with = "calendar_date")]
    #[schema(value_type = String, format = Date, example = "2026-12-24")]
    pub date: Date,
    /// 1 to the date's seat count.
    #[schema(minimum = 1, example = 7)]
    pub seat_no: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReservationResponse {
    #[schema(minimum = 1, example = 41)]
    pub reservation_id: i64,
    #[schema(minimum = 1, example = 1)]
    pub concert_id: i64,
    #[serde(with = "calendar_date")]
    #[schema(value_type = String, format = Date, example = "2026-12-24")]
    pub date: Date,
    #[schema(minimum = 1, example = 7)]
    pub seat_no: u16,
    #[schema(example = 120_000)]
    pub price: i64,
    pub status: ReservationStatusDto,
    /// When the hold ends unless paid.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
}

impl From<Reservation> for ReservationResponse {
    fn from(reservation: Reservation) -> Self {
        Self {
            reservation_id: reservation.id().get(),
            concert_id: reservation.concert_id().get(),
            date: reservation.date(),
            seat_no: reservation.seat_no().get(),
            price: reservation.price().get(),
            status: reservation.stored_status().into(),
            expires_at: utc(reservation.expires_at()),
        }
    }
}

/// Holds one seat for the caller for the hold time.
#[utoipa::path(
    post,
    path = "/v1/reservations",
    tag = "reservations",
    security(("queueToken" = [])),
    request_body = HoldSeatRequest,
    responses(
        (status = 201, description = "The seat is held", body = ReservationResponse),
        (status = 400, description = "VALIDATION_FAILED (e.g. seat number out of range)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "TOKEN_INVALID, TOKEN_EXPIRED", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "QUEUE_NOT_ACTIVE; TOKEN_WRONG_ROOM: the concert is another waiting room's", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "CONCERT_NOT_FOUND, DATE_NOT_FOUND", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "SEAT_UNAVAILABLE, HOLD_LIMIT_REACHED", body = ProblemBody, content_type = "application/problem+json"),
        (status = 413, description = "PAYLOAD_TOO_LARGE", body = ProblemBody, content_type = "application/problem+json"),
        (status = 415, description = "UNSUPPORTED_MEDIA_TYPE", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "SERVICE_UNAVAILABLE", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn hold_seat(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ValidJson(body): ValidJson<HoldSeatRequest>,
) -> Result<(StatusCode, Json<ReservationResponse>), Problem> {
    let command = HoldSeatCommand {
        concert: ConcertId::new(body.concert_id)?,
        date: body.date,
        seat_no: body.seat_no,
    };
    let reservation = state.services().hold_seat.execute(caller, command).await?;
    metrics::counter!("seat_holds_total").increment(1);
    Ok((StatusCode::CREATED, Json(reservation.into())))
}

/// The caller's own reservation; another user's answers as a missing one.
#[utoipa::path(
    get,
    path = "/v1/reservations/{reservationId}",
    tag = "reservations",
    security(("queueToken" = [])),
    params(("reservationId" = i64, Path, minimum = 1, description = "The reservation")),
    responses(
        (status = 200, description = "The reservation", body = ReservationResponse),
        (status = 400, description = "VALIDATION_FAILED", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "TOKEN_INVALID, TOKEN_EXPIRED", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "QUEUE_NOT_ACTIVE", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "RESERVATION_NOT_FOUND", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "SERVICE_UNAVAILABLE", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn read_reservation(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ValidPath(Param(id)): ValidPath<Param<ReservationId>>,
) -> Result<Json<ReservationResponse>, Problem> {
    let reservation = state
        .services()
        .read_reservation
        .execute(caller, id)
        .await?;
    Ok(Json(reservation.into()))
}

/// Cancels the caller's own held reservation; the seat is free at once.
#[utoipa::path(
    delete,
    path = "/v1/reservations/{reservationId}",
    tag = "reservations",
    security(("queueToken" = [])),
    params(("reservationId" = i64, Path, minimum = 1, description = "The reservation")),
    responses(
        (status = 200, description = "The reservation, now CANCELLED", body = ReservationResponse),
        (status = 400, description = "VALIDATION_FAILED", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "TOKEN_INVALID, TOKEN_EXPIRED", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "QUEUE_NOT_ACTIVE", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "RESERVATION_NOT_FOUND", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "RESERVATION_NOT_HELD", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "SERVICE_UNAVAILABLE", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn cancel_reservation(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ValidPath(Param(id)): ValidPath<Param<ReservationId>>,
) -> Result<Json<ReservationResponse>, Problem> {
    let reservation = state
        .services()
        .cancel_reservation
        .execute(caller, id)
        .await?;
    Ok(Json(reservation.into()))
}
