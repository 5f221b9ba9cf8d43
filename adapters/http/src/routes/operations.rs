//! Section 7 of docs/API.md: health, metrics and the API description.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::problem::{ErrorChain, ErrorCode, Problem, ProblemBody};

/// Prometheus text exposition format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HealthResponse {
    #[schema(example = "ok")]
    pub status: &'static str,
}

const OK: HealthResponse = HealthResponse { status: "ok" };

/// The process is up.
#[utoipa::path(
    get,
    path = "/health/live",
    tag = "operations",
    responses((status = 200, description = "Up", body = HealthResponse))
)]
pub async fn live() -> Json<HealthResponse> {
    Json(OK)
}

/// The database is reachable.
#[utoipa::path(
    get,
    path = "/health/ready",
    tag = "operations",
    responses(
        (status = 200, description = "Ready to serve", body = HealthResponse),
        (status = 503, description = "SERVICE_UNAVAILABLE: the database cannot be reached", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn ready(State(state): State<AppState>) -> Result<Json<HealthResponse>, Problem> {
    match state.use_cases.readiness.check().await {
        Ok(()) => Ok(Json(OK)),
        Err(error) => {
            tracing::warn!(error = %ErrorChain(&error), "readiness check failed");
            Err(Problem::new(
                ErrorCode::ServiceUnavailable,
                "the database cannot be reached",
            )
            .with_retry_after(1))
        }
    }
}

/// Metrics in the Prometheus text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format", body = String, content_type = "text/plain"))
)]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let text = (state.use_cases.render_metrics)();
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(PROMETHEUS_TEXT),
    );
    response
}

/// This document: the OpenAPI 3.1 description of the API, generated from the handlers.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI document", body = Object, content_type = "application/json"))
)]
pub async fn openapi_json(State(state): State<AppState>) -> Response {
    let mut response = state.openapi_json.clone().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
