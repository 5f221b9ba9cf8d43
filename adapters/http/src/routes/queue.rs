//! Section 1 of docs/API.md: the waiting queue.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use concert_application::issue_queue_token::IssuedToken;
use concert_application::read_queue_status::QueueStatusView;
use concert_domain::{EndReason, RoomId, TicketStatus, UserId};
use futures::Stream;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::AppState;
use crate::extract::{ClientAddress, IdentityCredentials, QueueToken, ValidJson};
use crate::format::utc;
use crate::problem::{Problem, ProblemBody, rate_limited};

/// Where a queue token stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum QueueStatus {
    /// **Extension.** Waiting for the room's opening (`opensAt`); no position yet. At the
    /// opening every such token gets a place, ahead of everyone who comes later.
    PreQueue,
    /// In line; `position` is 1 for the first in line.
    Waiting,
    /// May use the protected endpoints until `activeUntil`.
    Active,
    /// Ended: paid, timed out, idle, revoked or left (`reason`). Ask for a new token.
    Expired,
}

/// Why a token ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExpiryReason {
    /// Its user paid.
    Paid,
    /// Active for the whole active time.
    ActiveTimeOver,
    /// Active, but idle for longer than the idle timeout.
    Idle,
    /// An operator revoked it.
    Revoked,
    /// Its user left the line.
    Left,
}

impl From<EndReason> for ExpiryReason {
    fn from(reason: EndReason) -> Self {
        match reason {
            EndReason::Paid => Self::Paid,
            EndReason::ActiveTimeOver => Self::ActiveTimeOver,
            EndReason::Idle => Self::Idle,
            EndReason::Revoked => Self::Revoked,
            EndReason::Left => Self::Left,
        }
    }
}

impl From<TicketStatus> for QueueStatus {
    fn from(status: TicketStatus) -> Self {
        match status {
            TicketStatus::Waiting => Self::Waiting,
            TicketStatus::Active => Self::Active,
            TicketStatus::Expired => Self::Expired,
        }
    }
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssueTokenRequest {
    /// The user, as a UUID of the outside identity system. Required in `trusted` identity mode;
    /// in `jwt` mode optional, and when given it must be the identity token's `sub`.
    #[schema(format = Uuid, example = "3f1c9a52-4c1e-4d8e-9b1a-2f6c1d3e4a5b")]
    pub user_id: Option<String>,
    /// The waiting room whose line to join; without it, `default` (the room of every concert
    /// no other room names).
    #[schema(example = "spring-gala")]
    pub room_id: Option<String>,
}

/// A token's place in line. `position` and `estimatedWaitSeconds` are set only while
/// `WAITING`; `activeUntil` only while `ACTIVE`; `reason` only once `EXPIRED`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueStatusResponse {
    pub status: QueueStatus,
    #[schema(minimum = 1, example = 598)]
    pub position: Option<u64>,
    #[schema(example = 240)]
    pub estimated_wait_seconds: Option<u64>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub active_until: Option<OffsetDateTime>,
    /// **Extension.** Why the token ended; absent while it lives (and for tokens that ended
    /// before reasons were recorded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<ExpiryReason>,
    /// **Extension.** While `PRE_QUEUE`: when the room opens.
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub opens_at: Option<OffsetDateTime>,
}

impl From<QueueStatusView> for QueueStatusResponse {
    fn from(view: QueueStatusView) -> Self {
        Self {
            status: if view.pre_queue {
                QueueStatus::PreQueue
            } else {
                view.status.into()
            },
            opens_at: view.opens_at.map(utc),
            position: view.position,
            estimated_wait_seconds: view.estimated_wait_seconds,
            active_until: view.active_until.map(utc),
            reason: view.reason.map(ExpiryReason::from),
        }
    }
}

/// A queue token with its place in line.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenResponse {
    /// Send it as `Authorization: Bearer <token>`.
    pub token: String,
    #[serde(flatten)]
    pub queue: QueueStatusResponse,
}

impl From<IssuedToken> for TokenResponse {
    fn from(issued: IssuedToken) -> Self {
        Self {
            token: issued.token,
            queue: issued.status.into(),
        }
    }
}

/// Joins the line, or returns the user's live token.
///
/// `201` for a new token; `200` with the same token when the user already holds a live one, so
/// asking again never creates a second place in line.
#[utoipa::path(
    post,
    path = "/v1/queue/tokens",
    tag = "queue",
    security((), ("identityJwt" = [])),
    request_body = IssueTokenRequest,
    responses(
        (status = 201, description = "A new token at the end of the line", body = TokenResponse,
            headers(("Cache-Control" = String, description = "`no-store`: the answer holds a credential"))),
        (status = 200, description = "The user's live token, unchanged", body = TokenResponse,
            headers(("Cache-Control" = String, description = "`no-store`: the answer holds a credential"))),
        (status = 400, description = "VALIDATION_FAILED", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "IDENTITY_INVALID (jwt identity mode)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "IDENTITY_MISMATCH (jwt identity mode: `userId` is not the verified user)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "ROOM_NOT_FOUND: no room has this `roomId`", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "ROOM_CLOSED: the room takes no newcomers (a user who already holds a live token gets it back)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "RATE_LIMITED: too many joins from this address or by this user (only with JOIN_RATE_LIMIT_* set); see Retry-After", body = ProblemBody, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "Seconds until a join may succeed"))),
        (status = 413, description = "PAYLOAD_TOO_LARGE", body = ProblemBody, content_type = "application/problem+json"),
        (status = 415, description = "UNSUPPORTED_MEDIA_TYPE", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "SERVICE_UNAVAILABLE", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn issue_queue_token(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    IdentityCredentials(credentials): IdentityCredentials,
    ValidJson(body): ValidJson<IssueTokenRequest>,
) -> Result<Response, Problem> {
    state
        .join_limits
        .check_address(address)
        .map_err(|wait| rate_limited("joins from this address", wait))?;
    let named = body.user_id.as_deref().map(UserId::parse).transpose()?;
    let room = body
        .room_id
        .as_deref()
        .map_or_else(|| Ok(RoomId::default_room()), RoomId::parse)?;
    let user = state
        .services()
        .identify_caller
        .acting_user(credentials.as_deref(), named)?;
    state
        .join_limits
        .check_user(user)
        .map_err(|wait| rate_limited("joins by this user", wait))?;
    let issued = state
        .services()
        .issue_queue_token
        .execute(user, &room)
        .await?;
    let status = if issued.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    // The answer carries a bearer credential: no cache may keep it.
    let no_store = [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))];
    Ok((status, no_store, Json(TokenResponse::from(issued))).into_response())
}

/// The status of the caller's token, including an expired one.
///
/// A `WAITING` answer carries `Retry-After`: when to poll next.
#[utoipa::path(
    get,
    path = "/v1/queue/status",
    tag = "queue",
    security(("queueToken" = [])),
    responses(
        (status = 200, description = "The token's status", body = QueueStatusResponse,
            headers(("Retry-After" = u32, description = "While WAITING: seconds until the next poll (1 to 30); while PRE_QUEUE: the seconds until the opening (1 to 30)"))),
        (status = 401, description = "TOKEN_INVALID", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "SERVICE_UNAVAILABLE", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn read_queue_status(
    State(state): State<AppState>,
    QueueToken(token): QueueToken,
) -> Result<Response, Problem> {
    let view = state.services().read_queue_status.execute(&token).await?;
    let retry_after = match view.status {
        TicketStatus::Waiting => view.retry_after_seconds,
        TicketStatus::Active | TicketStatus::Expired => None,
    };
    let mut response = Json(QueueStatusResponse::from(view)).into_response();
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    Ok(response)
}

/// **Extension.** The caller's token's status as a stream of server-sent events, instead of
/// polling: an event `status` at once, then one on every change (position moved, admitted,
/// ended and why), each with the JSON `GET /v1/queue/status` would answer; a comment line every
/// 15 s while nothing changes. The stream ends after the `EXPIRED` event, when the server shuts
/// down, and when the line cannot be read (reconnect, or poll). The first status is worked out
/// before the answer, so a token the line does not know, or a line that cannot be read now, is
/// answered with its problem rather than a stream that ends at once. Watching is not activity:
/// an `ACTIVE` token still needs requests to stay alive.
#[utoipa::path(
    get,
    path = "/v1/queue/events",
    tag = "queue",
    security(("queueToken" = [])),
    responses(
        (status = 200, description = "`event: status` lines whose data is a QueueStatusResponse", content_type = "text/event-stream", body = String),
        (status = 401, description = "TOKEN_INVALID", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "SERVICE_UNAVAILABLE: the line cannot be read now, or this instance already serves its most event streams (QUEUE_EVENT_STREAMS_MAX); poll, or try again after Retry-After", body = ProblemBody, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "Seconds to wait before trying again"))),
    )
)]
pub async fn queue_events(
    State(state): State<AppState>,
    QueueToken(token): QueueToken,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Problem> {
    let use_cases = Arc::clone(&state.use_cases);
    let mut watch = use_cases.services.watch_queue_status.open(&token)?;
    let first = use_cases
        .services
        .watch_queue_status
        .changed(&mut watch)
        .await?;
    let events = use_cases.queue_events.clone();
    let heartbeat = events.heartbeat;
    let stream = futures::stream::unfold(
        (watch, events, use_cases, first),
        |(mut watch, mut events, use_cases, first)| async move {
            if let Some(status) = first {
                return Some((Ok(status_event(status)), (watch, events, use_cases, None)));
            }
            loop {
                if watch.is_over() {
                    return None;
                }
                match use_cases
                    .services
                    .watch_queue_status
                    .changed(&mut watch)
                    .await
                {
                    Ok(Some(status)) => {
                        return Some((Ok(status_event(status)), (watch, events, use_cases, None)));
                    }
                    Ok(None) => {}
                    Err(error) => {
                        tracing::warn!(error = %error, "queue event stream ended");
                        return None;
                    }
                }
                tokio::select! {
                    changed = events.refreshed.changed() => changed.ok()?,
                    _ = events.draining.wait_for(|draining| *draining) => return None,
                }
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(heartbeat)))
}

/// One `status` event, whose data is what `GET /v1/queue/status` answers.
fn status_event(status: QueueStatusView) -> Event {
    Event::default()
        .event("status")
        .json_data(QueueStatusResponse::from(status))
        .unwrap_or_else(|_| Event::default().comment("status unavailable"))
}

/// **Extension.** Leaves the line: the caller's token ends (`reason` `LEFT`) and its place, or its
/// active slot, goes to the next in line at once.
///
/// Leaving again with the same token answers `204` too.
#[utoipa::path(
    delete,
    path = "/v1/queue/tokens/current",
    tag = "queue",
    security(("queueToken" = [])),
    responses(
        (status = 204, description = "The token has ended; its place or slot is freed"),
        (status = 401, description = "TOKEN_INVALID, or TOKEN_EXPIRED for a token that ended otherwise (paid, timed out, idle, revoked)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "SERVICE_UNAVAILABLE", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn leave_queue(
    State(state): State<AppState>,
    QueueToken(token): QueueToken,
) -> Result<StatusCode, Problem> {
    state.services().leave_queue.execute(&token).await?;
    Ok(StatusCode::NO_CONTENT)
}
