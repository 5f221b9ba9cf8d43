//! Section 2 of docs/API.md: the catalog (ACTIVE token).

use axum::Json;
use axum::extract::State;
use concert_application::list_available_seats::SeatList;
use concert_application::ports::{AvailableSeat, DateAvailability};
use concert_application::read_seat_map::SeatMap;
use concert_domain::{Concert, ConcertId, SeatState};
use serde::Serialize;
use time::Date;
use utoipa::ToSchema;

use crate::AppState;
use crate::extract::{Caller, Param, ValidPath};
use crate::format::calendar_date;
use crate::problem::{Problem, ProblemBody};

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConcertSummary {
    #[schema(minimum = 1, example = 1)]
    pub concert_id: i64,
    #[schema(example = "Winter Gala")]
    pub title: String,
}

impl From<Concert> for ConcertSummary {
    fn from(concert: Concert) -> Self {
        Self {
            concert_id: concert.id.get(),
            title: concert.title.into_inner(),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AvailableDate {
    #[serde(with = "calendar_date")]
    #[schema(value_type = String, format = Date, example = "2026-12-24")]
    pub date: Date,
    /// How many seats the seat list of this date would return now.
    #[schema(example = 37)]
    pub available_seats: u32,
}

impl From<DateAvailability> for AvailableDate {
    fn from(entry: DateAvailability) -> Self {
        Self {
            date: entry.date,
            available_seats: entry.available_seats,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConcertDatesResponse {
    pub concert_id: i64,
    pub dates: Vec<AvailableDate>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SeatResponse {
    #[schema(minimum = 1, example = 1)]
    pub seat_no: u16,
    /// In won.
    #[schema(example = 120_000)]
    pub price: i64,
}

impl From<AvailableSeat> for SeatResponse {
    fn from(seat: AvailableSeat) -> Self {
        Self {
            seat_no: seat.seat_no.get(),
            price: seat.price.get(),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SeatListResponse {
    pub concert_id: i64,
    #[serde(with = "calendar_date")]
    #[schema(value_type = String, format = Date, example = "2026-12-24")]
    pub date: Date,
    /// Every seat of the date, available or not.
    #[schema(example = 50)]
    pub total_seats: u16,
    /// The seats that can be reserved now, in seat order.
    pub seats: Vec<SeatResponse>,
}

impl From<SeatList> for SeatListResponse {
    fn from(list: SeatList) -> Self {
        Self {
            concert_id: list.date.concert_id.get(),
            date: list.date.date,
            total_seats: list.date.seats.get(),
            seats: list.seats.into_iter().map(SeatResponse::from).collect(),
        }
    }
}

/// What a seat is now, on the seat map.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SeatStateBody {
    Free,
    /// Under a live hold: its holder may still pay, or let it lapse.
    Held,
    Sold,
}

impl From<SeatState> for SeatStateBody {
    fn from(state: SeatState) -> Self {
        match state {
            SeatState::Free => Self::Free,
            SeatState::Held => Self::Held,
            SeatState::Sold => Self::Sold,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MapSeatResponse {
    #[schema(minimum = 1, example = 1)]
    pub seat_no: u16,
    /// In won.
    #[schema(example = 120_000)]
    pub price: i64,
    pub state: SeatStateBody,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SeatMapResponse {
    pub concert_id: i64,
    #[serde(with = "calendar_date")]
    #[schema(value_type = String, format = Date, example = "2026-12-24")]
    pub date: Date,
    /// Every seat of the date, in seat order.
    pub seats: Vec<MapSeatResponse>,
}

impl From<SeatMap> for SeatMapResponse {
    fn from(map: SeatMap) -> Self {
        Self {
            concert_id: map.date.concert_id.get(),
            date: map.date.date,
            seats: map
                .seats
                .into_iter()
                .map(|seat| MapSeatResponse {
                    seat_no: seat.no.get(),
                    price: seat.price.get(),
                    state: seat.state.into(),
                })
                .collect(),
        }
    }
}

/// Concerts that have a date from today on (UTC), by id.
#[utoipa::path(
    get,
    path = "/v1/concerts",
    tag = "catalog",
    security(("queueToken" = [])),
    responses(
        (status = 200, description = "The concerts", body = [ConcertSummary]),
        (status = 401, description = "TOKEN_INVALID, TOKEN_EXPIRED", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "QUEUE_NOT_ACTIVE", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "SERVICE_UNAVAILABLE", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn list_concerts(
    State(state): State<AppState>,
    Caller(_caller): Caller,
) -> Result<Json<Vec<ConcertSummary>>, Problem> {
    let concerts = state.services().list_concerts.execute().await?;
    Ok(Json(
        concerts.into_iter().map(ConcertSummary::from).collect(),
    ))
}

/// Dates of a concert from today on (UTC) with at least one available seat, in date order.
#[utoipa::path(
    get,
    path = "/v1/concerts/{concertId}/dates",
    tag = "catalog",
    security(("queueToken" = [])),
    params(("concertId" = i64, Path, minimum = 1, description = "The concert")),
    responses(
        (status = 200, description = "The bookable dates", body = ConcertDatesResponse),
        (status = 400, description = "VALIDATION_FAILED", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "TOKEN_INVALID, TOKEN_EXPIRED", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "QUEUE_NOT_ACTIVE; TOKEN_WRONG_ROOM: the concert is another waiting room's", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "CONCERT_NOT_FOUND", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "SERVICE_UNAVAILABLE", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn list_available_dates(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ValidPath(Param(concert)): ValidPath<Param<ConcertId>>,
) -> Result<Json<ConcertDatesResponse>, Problem> {
    let dates = state
        .services()
        .list_available_dates
        .execute(&caller, concert)
        .await?;
    Ok(Json(ConcertDatesResponse {
        concert_id: concert.get(),
        dates: dates.into_iter().map(AvailableDate::from).collect(),
    }))
}

/// Seats of one date that can be reserved now (no live hold by anyone, not sold), in seat order.
#[utoipa::path(
    get,
    path = "/v1/concerts/{concertId}/dates/{date}/seats",
    tag = "catalog",
    security(("queueToken" = [])),
    params(
        ("concertId" = i64, Path, minimum = 1, description = "The concert"),
        ("date" = String, Path, format = Date, description = "The calendar date, YYYY-MM-DD"),
    ),
    responses(
        (status = 200, description = "The available seats", body = SeatListResponse),
        (status = 400, description = "VALIDATION_FAILED", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "TOKEN_INVALID, TOKEN_EXPIRED", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "QUEUE_NOT_ACTIVE; TOKEN_WRONG_ROOM: the concert is another waiting room's", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "CONCERT_NOT_FOUND, DATE_NOT_FOUND", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "SERVICE_UNAVAILABLE", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn list_available_seats(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ValidPath(path): ValidPath<(Param<ConcertId>, Param<Date>)>,
) -> Result<Json<SeatListResponse>, Problem> {
    let (Param(concert), Param(date)) = path;
    let seats = state
        .services()
        .list_available_seats
        .execute(&caller, concert, date)
        .await?;
    Ok(Json(seats.into()))
}

/// **Extension.** Every seat of one date and what it is now: `FREE`, `HELD` (a live hold) or
/// `SOLD`, in seat order; for a seat map. A lapsed hold shows `FREE`.
#[utoipa::path(
    get,
    path = "/v1/concerts/{concertId}/dates/{date}/seat-map",
    tag = "catalog",
    security(("queueToken" = [])),
    params(
        ("concertId" = i64, Path, minimum = 1, description = "The concert"),
        ("date" = String, Path, format = Date, description = "The calendar date, YYYY-MM-DD"),
    ),
    responses(
        (status = 200, description = "Every seat with its state", body = SeatMapResponse),
        (status = 400, description = "VALIDATION_FAILED", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "TOKEN_INVALID, TOKEN_EXPIRED", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "QUEUE_NOT_ACTIVE; TOKEN_WRONG_ROOM: the concert is another waiting room's", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "CONCERT_NOT_FOUND, DATE_NOT_FOUND", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "SERVICE_UNAVAILABLE", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn read_seat_map(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ValidPath(path): ValidPath<(Param<ConcertId>, Param<Date>)>,
) -> Result<Json<SeatMapResponse>, Problem> {
    let (Param(concert), Param(date)) = path;
    let map = state
        .services()
        .read_seat_map
        .execute(&caller, concert, date)
        .await?;
    Ok(Json(map.into()))
}
