//! Section 6 of docs/API.md: administration (`Authorization: Bearer <ADMIN_API_KEY>`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use concert_application::create_concert::{CreateConcertCommand, NewDateCommand};
use concert_application::manage_rooms::{RoomReport, RoomRequest};
use concert_domain::{RoomChange, RoomPhase, RoomState};
use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};
use utoipa::ToSchema;

use crate::AppState;
use crate::extract::{AdminBearer, ValidJson};
use crate::format::{calendar_date, utc};
use crate::problem::{Problem, ProblemBody, admin_key_invalid};

/// The body of an administration request, once the key is judged first: a caller without the
/// right key learns nothing about what the endpoint accepts, whatever it sent.
fn admin_body<T>(
    state: &AppState,
    key: &str,
    body: Result<ValidJson<T>, Problem>,
) -> Result<T, Problem> {
    match body {
        Ok(ValidJson(body)) => Ok(body),
        Err(_) if !state.services().admin.admits(Some(key)) => Err(admin_key_invalid()),
        Err(problem) => Err(problem),
    }
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewConcertDateRequest {
    /// Today (UTC) or later; each date at most once.
    #[serde(with = "calendar_date")]
    #[schema(value_type = String, format = Date, example = "2026-12-24")]
    pub date: Date,
    /// The price of every seat of the date, 0 to `MAX_CHARGE_AMOUNT`.
    #[schema(minimum = 0, example = 120_000)]
    pub price: i64,
    /// 1 to 1000; 50 when absent.
    #[schema(minimum = 1, maximum = 1000, example = 50)]
    pub seat_count: Option<i64>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateConcertRequest {
    /// 1 to 200 characters, not blank.
    #[schema(example = "Winter Gala")]
    pub title: String,
    /// At least one date.
    #[schema(min_items = 1)]
    pub dates: Vec<NewConcertDateRequest>,
}

impl From<CreateConcertRequest> for CreateConcertCommand {
    fn from(request: CreateConcertRequest) -> Self {
        Self {
            title: request.title,
            dates: request
                .dates
                .into_iter()
                .map(|entry| NewDateCommand {
                    date: entry.date,
                    price: entry.price,
                    seat_count: entry.seat_count,
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConcertCreatedResponse {
    #[schema(minimum = 1, example = 3)]
    pub concert_id: i64,
}

/// Adds a concert with its dates, prices and seat counts.
#[utoipa::path(
    post,
    path = "/v1/admin/concerts",
    tag = "admin",
    security(("adminKey" = [])),
    request_body = CreateConcertRequest,
    responses(
        (status = 201, description = "The concert was created", body = ConcertCreatedResponse),
        (status = 400, description = "VALIDATION_FAILED", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "ADMIN_KEY_INVALID", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "RATE_LIMITED: too many wrong admin keys on this instance in the last minute; see Retry-After", body = ProblemBody, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "Seconds until keys are checked again"))),
        (status = 413, description = "PAYLOAD_TOO_LARGE", body = ProblemBody, content_type = "application/problem+json"),
        (status = 415, description = "UNSUPPORTED_MEDIA_TYPE", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "SERVICE_UNAVAILABLE", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn create_concert(
    State(state): State<AppState>,
    AdminBearer(key): AdminBearer,
    body: Result<ValidJson<CreateConcertRequest>, Problem>,
) -> Result<(StatusCode, Json<ConcertCreatedResponse>), Problem> {
    let request = admin_body(&state, &key, body)?;
    let concert = state
        .services()
        .create_concert
        .execute(Some(&key), request.into())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(ConcertCreatedResponse {
            concert_id: concert.get(),
        }),
    ))
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevocationRequest {
    /// The user whose live token in the room ends.
    #[schema(format = Uuid, example = "3f1c9a52-4c1e-4d8e-9b1a-2f6c1d3e4a5b")]
    pub user_id: String,
}

/// **Extension.** Revokes a user's live token in a waiting room: it ends at once (`reason`
/// `REVOKED`), its next call gets `401 TOKEN_EXPIRED`, and its place or active slot is freed.
///
/// `204` also when the user had no live token.
#[utoipa::path(
    post,
    path = "/v1/admin/rooms/{roomId}/revocations",
    tag = "admin",
    security(("adminKey" = [])),
    params(("roomId" = String, Path, description = "The room: 1 to 64 characters of `a-z`, `0-9` and `-`", example = "default")),
    request_body = RevocationRequest,
    responses(
        (status = 204, description = "The user's live token, if any, has ended"),
        (status = 400, description = "VALIDATION_FAILED", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "ADMIN_KEY_INVALID", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "ROOM_NOT_FOUND", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "RATE_LIMITED: too many wrong admin keys on this instance in the last minute; see Retry-After", body = ProblemBody, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "Seconds until keys are checked again"))),
        (status = 413, description = "PAYLOAD_TOO_LARGE", body = ProblemBody, content_type = "application/problem+json"),
        (status = 415, description = "UNSUPPORTED_MEDIA_TYPE", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "SERVICE_UNAVAILABLE", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn revoke_queue_token(
    State(state): State<AppState>,
    AdminBearer(key): AdminBearer,
    Path(room): Path<String>,
    body: Result<ValidJson<RevocationRequest>, Problem>,
) -> Result<StatusCode, Problem> {
    let request = admin_body(&state, &key, body)?;
    state
        .services()
        .revoke_queue_token
        .execute(Some(&key), &room, &request.user_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Whether a waiting room lets people in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RoomStateBody {
    /// Newcomers join; waiting tokens are admitted as places free up.
    Open,
    /// Newcomers still join; nobody is admitted until the room opens again.
    Paused,
    /// Newcomers get `409 ROOM_CLOSED`; tokens already issued keep their state.
    Closed,
}

impl From<RoomStateBody> for RoomState {
    fn from(state: RoomStateBody) -> Self {
        match state {
            RoomStateBody::Open => Self::Open,
            RoomStateBody::Paused => Self::Paused,
            RoomStateBody::Closed => Self::Closed,
        }
    }
}

/// Where a waiting room stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RoomStateShown {
    /// Before `opensAt`: newcomers gather in the pre-queue.
    PreQueue,
    Open,
    Paused,
    Closed,
}

/// A waiting room's settings and how its line stands now (this instance's view, at most an
/// admission interval old).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoomResponse {
    #[schema(example = "default")]
    pub room_id: String,
    /// The concerts the room guards; empty for `default`, which guards every concert no other
    /// room names.
    #[schema(example = json!([3]))]
    pub concert_ids: Vec<i64>,
    /// Tokens active at once, at most.
    #[schema(minimum = 1, example = 500)]
    pub max_active: u32,
    /// `PRE_QUEUE` until the opening of an `OPEN` room with `opensAt`.
    pub state: RoomStateShown,
    /// At most this many admissions in any 60 seconds, spread evenly; `null`: as fast as places
    /// free up.
    pub admit_per_minute: Option<u32>,
    /// A `WAITING` token whose holder has not polled its status for this long is passed over
    /// (ended, reason `IDLE`) when its turn comes; `null`: waiting users keep their place.
    pub waiting_idle_seconds: Option<i64>,
    /// When the room opens: until then newcomers gather in a pre-queue; `null`: open from its
    /// creation.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub opens_at: Option<OffsetDateTime>,
    /// Whether the pre-queue is put in a random order at the opening (else arrival order).
    pub shuffle_at_open: bool,
    /// Tokens waiting for the opening (`PRE_QUEUE`).
    pub pre_queued: u64,
    /// `WAITING` tokens.
    pub waiting: u64,
    /// `ACTIVE` tokens.
    pub active: u64,
    /// Tokens issued since the line began.
    pub issued: u64,
    /// Tokens admitted in the last minute.
    pub admitted_last_minute: u64,
    /// The wait a newcomer joining now would be told; `null` while the room is paused or
    /// before its opening.
    pub estimated_wait_seconds_at_back: Option<u64>,
}

impl From<RoomReport> for RoomResponse {
    fn from(report: RoomReport) -> Self {
        let opening = report.room.opening();
        Self {
            room_id: report.room.id().to_string(),
            concert_ids: report
                .room
                .concerts()
                .iter()
                .map(|concert| concert.get())
                .collect(),
            opens_at: opening.map(|opening| utc(opening.at)),
            shuffle_at_open: opening.is_some_and(|opening| opening.shuffle),
            max_active: report.room.max_active(),
            state: match report.room.phase() {
                RoomPhase::PreQueue => RoomStateShown::PreQueue,
                RoomPhase::Open => RoomStateShown::Open,
                RoomPhase::Paused => RoomStateShown::Paused,
                RoomPhase::Closed => RoomStateShown::Closed,
            },
            pre_queued: report.pre_queued,
            admit_per_minute: report.room.admit_per_minute(),
            waiting_idle_seconds: report
                .room
                .waiting_idle()
                .map(|idle| idle.after.whole_seconds()),
            waiting: report.waiting,
            active: report.active,
            issued: report.issued,
            admitted_last_minute: report.admitted_last_minute,
            estimated_wait_seconds_at_back: report.estimated_wait_seconds_at_back,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RoomsResponse {
    pub rooms: Vec<RoomResponse>,
}

/// A new waiting room for some concerts.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateRoomRequest {
    /// 1 to 64 characters of `a-z`, `0-9` and `-`.
    #[schema(example = "spring-gala")]
    pub room_id: String,
    /// The concerts it guards (at least one); each must be guarded by `default` until now.
    #[schema(example = json!([3]))]
    pub concert_ids: Vec<i64>,
    /// 1 to 1,000,000 tokens active at once.
    #[schema(minimum = 1, maximum = 1_000_000, example = 500)]
    pub max_active: i64,
    /// 1 to 1,000,000 admissions in any 60 seconds, spread evenly; `null`: as fast as places
    /// free up.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub admit_per_minute: Option<i64>,
    /// When the room opens (RFC 3339). Newcomers before it wait in a pre-queue and get their
    /// places all at once at the opening, ahead of everyone after; `null`: open at once.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime, example = "2026-12-24T10:00:00Z")]
    pub opens_at: Option<OffsetDateTime>,
    /// Gives the pre-queue a uniformly random order at the opening (needs `opensAt`).
    #[serde(default)]
    pub shuffle_at_open: bool,
    /// 5 to 86,400: a waiting token not polled for this long is passed over when its turn
    /// comes; `null`: waiting users keep their place.
    #[serde(default)]
    #[schema(minimum = 5, maximum = 86_400)]
    pub waiting_idle_seconds: Option<i64>,
}

/// A change to a room: each member given is set, the others stay.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoomChangeRequest {
    /// 1 to 1,000,000. Lowered below the tokens active now, nobody is admitted until fewer are.
    #[schema(minimum = 1, maximum = 1_000_000, example = 200)]
    pub max_active: Option<i64>,
    pub state: Option<RoomStateBody>,
    /// 1 to 1,000,000: at most this many admissions in any 60 seconds, spread evenly; `null`
    /// lifts the limit.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 1_000_000, example = 600)]
    pub admit_per_minute: Option<Option<i64>>,
    /// 5 to 86,400: a waiting token not polled for this long is passed over when its turn
    /// comes (polls are recorded from the change on); `null`: waiting users keep their place.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>, minimum = 5, maximum = 86_400, example = 120)]
    pub waiting_idle_seconds: Option<Option<i64>>,
}

/// A member that may be given as `null` (`Some(None)`), apart from one left out (`None`).
fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<i64>>, D::Error> {
    Option::<i64>::deserialize(deserializer).map(Some)
}

/// **Extension.** Creates a waiting room for some concerts, with a line of its own: their
/// dates, seats, holds and payments then take an `ACTIVE` token of this room
/// (`POST /v1/queue/tokens` with its `roomId`); a token of another room gets
/// `403 TOKEN_WRONG_ROOM`. Every instance follows within its admission interval.
#[utoipa::path(
    post,
    path = "/v1/admin/rooms",
    tag = "admin",
    security(("adminKey" = [])),
    request_body = CreateRoomRequest,
    responses(
        (status = 201, description = "The room, open or waiting for its opening", body = RoomResponse),
        (status = 400, description = "VALIDATION_FAILED", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "ADMIN_KEY_INVALID", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "CONCERT_NOT_FOUND", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "ROOM_EXISTS; CONCERT_IN_ANOTHER_ROOM: a concert is guarded by a room other than `default`", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "RATE_LIMITED: too many wrong admin keys on this instance in the last minute; see Retry-After", body = ProblemBody, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "Seconds until keys are checked again"))),
        (status = 413, description = "PAYLOAD_TOO_LARGE", body = ProblemBody, content_type = "application/problem+json"),
        (status = 415, description = "UNSUPPORTED_MEDIA_TYPE", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "SERVICE_UNAVAILABLE", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn create_room(
    State(state): State<AppState>,
    AdminBearer(key): AdminBearer,
    body: Result<ValidJson<CreateRoomRequest>, Problem>,
) -> Result<(StatusCode, Json<RoomResponse>), Problem> {
    let request = admin_body(&state, &key, body)?;
    let request = RoomRequest {
        room_id: request.room_id,
        concert_ids: request.concert_ids,
        max_active: request.max_active,
        admit_per_minute: request.admit_per_minute,
        opens_at: request.opens_at,
        shuffle_at_open: request.shuffle_at_open,
        waiting_idle_seconds: request.waiting_idle_seconds,
    };
    let report = state
        .services()
        .manage_rooms
        .create(Some(&key), &request)
        .await?;
    Ok((StatusCode::CREATED, Json(report.into())))
}

/// **Extension.** The waiting rooms with their live figures: `default` first, then in the order
/// they were created.
#[utoipa::path(
    get,
    path = "/v1/admin/rooms",
    tag = "admin",
    security(("adminKey" = [])),
    responses(
        (status = 200, description = "Every room", body = RoomsResponse),
        (status = 401, description = "ADMIN_KEY_INVALID", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "RATE_LIMITED: too many wrong admin keys on this instance in the last minute; see Retry-After", body = ProblemBody, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "Seconds until keys are checked again"))),
        (status = 503, description = "SERVICE_UNAVAILABLE", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn list_rooms(
    State(state): State<AppState>,
    AdminBearer(key): AdminBearer,
) -> Result<Json<RoomsResponse>, Problem> {
    let rooms = state.services().manage_rooms.list(Some(&key)).await?;
    Ok(Json(RoomsResponse {
        rooms: rooms.into_iter().map(RoomResponse::from).collect(),
    }))
}

/// **Extension.** One waiting room with its live figures.
#[utoipa::path(
    get,
    path = "/v1/admin/rooms/{roomId}",
    tag = "admin",
    security(("adminKey" = [])),
    params(("roomId" = String, Path, description = "The room: 1 to 64 characters of `a-z`, `0-9` and `-`", example = "default")),
    responses(
        (status = 200, description = "The room", body = RoomResponse),
        (status = 400, description = "VALIDATION_FAILED", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "ADMIN_KEY_INVALID", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "ROOM_NOT_FOUND", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "RATE_LIMITED: too many wrong admin keys on this instance in the last minute; see Retry-After", body = ProblemBody, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "Seconds until keys are checked again"))),
        (status = 503, description = "SERVICE_UNAVAILABLE", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn read_room(
    State(state): State<AppState>,
    AdminBearer(key): AdminBearer,
    Path(room): Path<String>,
) -> Result<Json<RoomResponse>, Problem> {
    let report = state
        .services()
        .manage_rooms
        .read(Some(&key), &room)
        .await?;
    Ok(Json(report.into()))
}

/// **Extension.** Changes a waiting room's maximum of active tokens, its pace of admissions, its
/// rule for idle waiters or its state. Every instance follows within its admission interval
/// (250 ms by default).
#[utoipa::path(
    patch,
    path = "/v1/admin/rooms/{roomId}",
    tag = "admin",
    security(("adminKey" = [])),
    params(("roomId" = String, Path, description = "The room: 1 to 64 characters of `a-z`, `0-9` and `-`", example = "default")),
    request_body = RoomChangeRequest,
    responses(
        (status = 200, description = "The room as changed", body = RoomResponse),
        (status = 400, description = "VALIDATION_FAILED", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "ADMIN_KEY_INVALID", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "ROOM_NOT_FOUND", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "RATE_LIMITED: too many wrong admin keys on this instance in the last minute; see Retry-After", body = ProblemBody, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "Seconds until keys are checked again"))),
        (status = 413, description = "PAYLOAD_TOO_LARGE", body = ProblemBody, content_type = "application/problem+json"),
        (status = 415, description = "UNSUPPORTED_MEDIA_TYPE", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "SERVICE_UNAVAILABLE", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn update_room(
    State(state): State<AppState>,
    AdminBearer(key): AdminBearer,
    Path(room): Path<String>,
    body: Result<ValidJson<RoomChangeRequest>, Problem>,
) -> Result<Json<RoomResponse>, Problem> {
    let request = admin_body(&state, &key, body)?;
    let change = RoomChange {
        max_active: request.max_active,
        state: request.state.map(RoomState::from),
        admit_per_minute: request.admit_per_minute,
        waiting_idle_seconds: request.waiting_idle_seconds,
        // The use case knows the line: it sets the grace.
        ..RoomChange::default()
    };
    let report = state
        .services()
        .manage_rooms
        .update(Some(&key), &room, &change)
        .await?;
    Ok(Json(report.into()))
}
