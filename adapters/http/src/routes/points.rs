//! Section 4 of docs/API.md: prepaid points (no token).

use axum::Json;
use axum::extract::State;
use concert_application::charge_points::ChargePointsCommand;
use concert_application::read_point_history::HistoryQuery;
use concert_domain::{Balance, LedgerEntry, LedgerKind, UserId};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::extract::{IdempotencyKeyHeader, PathUser, ValidJson, ValidQuery};
use crate::format::utc;
use crate::problem::{Problem, ProblemBody};

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChargeRequest {
    /// Won to add: 1 to `MAX_CHARGE_AMOUNT`.
    #[schema(minimum = 1, example = 50_000)]
    pub amount: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BalanceResponse {
    #[schema(format = Uuid)]
    pub user_id: String,
    #[schema(minimum = 0, example = 95_000)]
    pub balance: i64,
}

impl BalanceResponse {
    fn new(user: UserId, balance: Balance) -> Self {
        Self {
            user_id: user.to_string(),
            balance: balance.get(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[schema(as = LedgerKind)]
pub enum LedgerKindDto {
    Charge,
    Payment,
}

impl From<LedgerKind> for LedgerKindDto {
    fn from(kind: LedgerKind) -> Self {
        match kind {
            LedgerKind::Charge => Self::Charge,
            LedgerKind::Payment => Self::Payment,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LedgerEntryResponse {
    /// Grows with every entry; pass it as `before` for the next page.
    #[schema(minimum = 1, example = 17)]
    pub entry_id: i64,
    pub kind: LedgerKindDto,
    /// The signed change: positive for a charge, negative for a payment.
    #[schema(example = 50_000)]
    pub amount: i64,
    #[schema(minimum = 0, example = 95_000)]
    pub balance_after: i64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
}

impl From<LedgerEntry> for LedgerEntryResponse {
    fn from(entry: LedgerEntry) -> Self {
        Self {
            entry_id: entry.id.get(),
            kind: entry.kind.into(),
            amount: entry.amount,
            balance_after: entry.balance_after.get(),
            at: utc(entry.at),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryResponse {
    #[schema(format = Uuid)]
    pub user_id: String,
    /// Newest first.
    pub entries: Vec<LedgerEntryResponse>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// How many entries, 1 to 100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// Only entries older than this `entryId` (the next page).
    #[param(minimum = 1)]
    pub before: Option<i64>,
}

/// Adds points to a user's wallet; safe to retry with an `Idempotency-Key`.
#[utoipa::path(
    post,
    path = "/v1/users/{userId}/points/charge",
    tag = "points",
    security((), ("identityJwt" = [])),
    params(
        ("userId" = String, Path, format = Uuid, description = "The user"),
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 64,
            description = "1 to 64 visible ASCII characters: a retry with the same key and body returns the first answer and charges once"),
    ),
    request_body = ChargeRequest,
    responses(
        (status = 200, description = "The balance after the charge", body = BalanceResponse),
        (status = 400, description = "VALIDATION_FAILED", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "IDENTITY_INVALID (jwt identity mode)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "IDENTITY_MISMATCH (jwt identity mode: another user's points)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "BALANCE_LIMIT_EXCEEDED, IDEMPOTENCY_KEY_REUSED", body = ProblemBody, content_type = "application/problem+json"),
        (status = 413, description = "PAYLOAD_TOO_LARGE", body = ProblemBody, content_type = "application/problem+json"),
        (status = 415, description = "UNSUPPORTED_MEDIA_TYPE", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "SERVICE_UNAVAILABLE", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn charge_points(
    State(state): State<AppState>,
    PathUser(user): PathUser,
    IdempotencyKeyHeader(idempotency_key): IdempotencyKeyHeader,
    ValidJson(body): ValidJson<ChargeRequest>,
) -> Result<Json<BalanceResponse>, Problem> {
    let command = ChargePointsCommand {
        user,
        amount: body.amount,
        idempotency_key,
    };
    let balance = state.services().charge_points.execute(command).await?;
    Ok(Json(BalanceResponse::new(user, balance)))
}

/// A user's balance (0 for a user never seen).
#[utoipa::path(
    get,
    path = "/v1/users/{userId}/points",
    tag = "points",
    security((), ("identityJwt" = [])),
    params(("userId" = String, Path, format = Uuid, description = "The user")),
    responses(
        (status = 200, description = "The balance", body = BalanceResponse),
        (status = 400, description = "VALIDATION_FAILED", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "IDENTITY_INVALID (jwt identity mode)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "IDENTITY_MISMATCH (jwt identity mode: another user's points)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "SERVICE_UNAVAILABLE", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn read_balance(
    State(state): State<AppState>,
    PathUser(user): PathUser,
) -> Result<Json<BalanceResponse>, Problem> {
    let balance = state.services().read_balance.execute(user).await?;
    Ok(Json(BalanceResponse::new(user, balance)))
}

/// A page of a user's ledger, newest first.
#[utoipa::path(
    get,
    path = "/v1/users/{userId}/points/history",
    tag = "points",
    security((), ("identityJwt" = [])),
    params(("userId" = String, Path, format = Uuid, description = "The user"), HistoryParams),
    responses(
        (status = 200, description = "Ledger entries, newest first", body = HistoryResponse),
        (status = 400, description = "VALIDATION_FAILED", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "IDENTITY_INVALID (jwt identity mode)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "IDENTITY_MISMATCH (jwt identity mode: another user's points)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "SERVICE_UNAVAILABLE", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn read_point_history(
    State(state): State<AppState>,
    PathUser(user): PathUser,
    ValidQuery(params): ValidQuery<HistoryParams>,
) -> Result<Json<HistoryResponse>, Problem> {
    let query = HistoryQuery {
        user,
        limit: params.limit,
        before: params.before,
    };
    let entries = state.services().read_point_history.execute(query).await?;
    Ok(Json(HistoryResponse {
        user_id: user.to_string(),
        entries: entries.into_iter().map(LedgerEntryResponse::from).collect(),
    }))
}
