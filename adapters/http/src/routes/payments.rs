//! Section 5 of docs/API.md: paying a held reservation (ACTIVE token, or a retry with the key of
//! a payment that already ended the token).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use concert_application::pay_reservation::PayReservationCommand;
use concert_application::ports::PaymentReceipt;
use concert_domain::ReservationId;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::AppState;
use crate::extract::{IdempotencyKeyHeader, ValidJson, VerifiedToken};
use crate::format::utc;
use crate::problem::{Problem, ProblemBody};

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequest {
    #[schema(minimum = 1, example = 41)]
    pub reservation_id: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentResponse {
    #[schema(minimum = 1, example = 9)]
    pub payment_id: i64,
    #[schema(minimum = 1, example = 41)]
    pub reservation_id: i64,
    /// The price paid, in won.
    #[schema(example = 120_000)]
    pub amount: i64,
    /// The balance after the payment.
    #[schema(minimum = 0, example = 0)]
    pub balance: i64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub paid_at: OffsetDateTime,
}

impl From<PaymentReceipt> for PaymentResponse {
    fn from(receipt: PaymentReceipt) -> Self {
        Self {
            payment_id: receipt.payment_id.get(),
            reservation_id: receipt.reservation_id.get(),
            amount: receipt.amount.get(),
            balance: receipt.balance.get(),
            paid_at: utc(receipt.paid_at),
        }
    }
}

/// Pays a held reservation from the caller's points, in one atomic step that also ends the
/// caller's queue token. A retry with the same `Idempotency-Key` returns the first `201`, even
/// with the token that this payment expired.
#[utoipa::path(
    post,
    path = "/v1/payments",
    tag = "payments",
    security(("queueToken" = [])),
    params(
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 64,
            description = "1 to 64 visible ASCII characters: a retry with the same key and body returns the first answer and pays once"),
    ),
    request_body = PaymentRequest,
    responses(
        (status = 201, description = "Paid", body = PaymentResponse),
        (status = 400, description = "VALIDATION_FAILED", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "TOKEN_INVALID, TOKEN_EXPIRED", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "QUEUE_NOT_ACTIVE; TOKEN_WRONG_ROOM: the reservation is for another waiting room's concert", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "RESERVATION_NOT_FOUND", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "INSUFFICIENT_BALANCE, RESERVATION_EXPIRED, RESERVATION_NOT_HELD, IDEMPOTENCY_KEY_REUSED", body = ProblemBody, content_type = "application/problem+json"),
        (status = 413, description = "PAYLOAD_TOO_LARGE", body = ProblemBody, content_type = "application/problem+json"),
        (status = 415, description = "UNSUPPORTED_MEDIA_TYPE", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "SERVICE_UNAVAILABLE", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn pay_reservation(
    State(state): State<AppState>,
    VerifiedToken(claims): VerifiedToken,
    key: Result<IdempotencyKeyHeader, Problem>,
    body: Result<ValidJson<PaymentRequest>, Problem>,
) -> Result<(StatusCode, Json<PaymentResponse>), Problem> {
    let parsed = key.and_then(|IdempotencyKeyHeader(key)| {
        let ValidJson(body) = body?;
        Ok((key, ReservationId::new(body.reservation_id)?))
    });
    let (idempotency_key, reservation) = match parsed {
        Ok(parsed) => parsed,
        Err(problem) => {
            // A bad request from a caller who may not pay at all is refused for the token first,
            // as on every other protected endpoint.
            state.services().authorize.authorize(&claims).await?;
            return Err(problem);
        }
    };
    let command = PayReservationCommand {
        claims,
        reservation,
        idempotency_key,
    };
    let receipt = state.services().pay_reservation.execute(command).await?;
    metrics::counter!("payments_total").increment(1);
    Ok((StatusCode::CREATED, Json(receipt.into())))
}
