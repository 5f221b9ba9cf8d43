//! The HTTP adapter of the concert booking service: the route table of docs/API.md, problem+json
//! errors, request ids, metrics, OpenAPI 3.1 at `/openapi.json` and Swagger UI at `/docs`.
//!
//! Handlers hold no business rule: each parses its input into domain values, calls one use case
//! and maps the answer (or the use case's error, through [`problem::Problem`]).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::IntoResponse as _;
use concert_application::ports::ReadinessProbe;
use concert_application::services::Services;
use limits::{JoinLimitSettings, JoinLimits};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::timeout::{RequestBodyDeadlineLayer, TimeoutLayer};
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::{Config, SwaggerUi};

pub mod extract;
pub mod format;
pub mod framing;
pub mod limits;
pub mod middleware;
pub mod openapi;
pub mod pages;
pub mod problem;
pub mod routes;

#[cfg(test)]
mod tests;

/// The largest request body accepted: 64 KiB (`413 PAYLOAD_TOO_LARGE` beyond).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Where the OpenAPI document and the interactive API page are served.
pub const OPENAPI_PATH: &str = "/openapi.json";
pub const DOCS_PATH: &str = "/docs";

/// What the HTTP API calls: every use case, the readiness probe and the metrics text, built by
/// the bootstrap crate.
#[derive(Clone)]
pub struct UseCases {
    pub services: Arc<Services>,
    pub readiness: Arc<dyn ReadinessProbe>,
    /// The Prometheus text of the recorder that the bootstrap crate installed.
    pub render_metrics: Arc<dyn Fn() -> String + Send + Sync>,
    /// What the queue's event streams wait on.
    pub queue_events: QueueEvents,
}

/// The signals an event stream of `GET /v1/queue/events` waits for between changes.
#[derive(Clone)]
pub struct QueueEvents {
    /// Moves when a refresh of this instance's view of the line changed what streams tell.
    pub refreshed: tokio::sync::watch::Receiver<u64>,
    /// Turns `true` when the server starts draining: every stream ends, so shutdown is not held.
    pub draining: tokio::sync::watch::Receiver<bool>,
    /// How often an idle stream sends a comment line (15 s), so proxies keep it open.
    pub heartbeat: std::time::Duration,
}

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub use_cases: Arc<UseCases>,
    /// The OpenAPI document, serialised once.
    openapi_json: Bytes,
    pub join_limits: Arc<JoinLimits>,
    /// The buyer's page (`/`): the embedded one or the operator's template.
    pub page: Arc<str>,
}

impl AppState {
    /// The use cases the handlers call.
    pub fn services(&self) -> &Services {
        &self.use_cases.services
    }
}

/// The documented route table: every endpoint of docs/API.md, registered together with its OpenAPI
/// operation so the two cannot drift apart.
fn api_routes() -> OpenApiRouter<AppState> {
    use routes::{admin, catalog, operations, payments, points, queue, reservations};

    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(queue::issue_queue_token))
        .routes(routes!(queue::read_queue_status))
        .routes(routes!(queue::leave_queue))
        .routes(routes!(queue::queue_events))
        .routes(routes!(catalog::list_concerts))
        .routes(routes!(catalog::list_available_dates))
        .routes(routes!(catalog::list_available_seats))
        .routes(routes!(catalog::read_seat_map))
        .routes(routes!(reservations::hold_seat))
        .routes(routes!(
            reservations::read_reservation,
            reservations::cancel_reservation
        ))
        .routes(routes!(points::charge_points))
        .routes(routes!(points::read_balance))
        .routes(routes!(points::read_point_history))
        .routes(routes!(payments::pay_reservation))
        .routes(routes!(admin::create_concert))
        .routes(routes!(admin::revoke_queue_token))
        .routes(routes!(admin::create_room, admin::list_rooms))
        .routes(routes!(admin::read_room, admin::update_room))
        .routes(routes!(operations::live))
        .routes(routes!(operations::ready))
        .routes(routes!(operations::metrics))
        .routes(routes!(operations::openapi_json))
}

/// The OpenAPI 3.1 document served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    openapi::complete(api_routes().into_openapi())
}

/// Which endpoints a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoints {
    /// Every endpoint on one address.
    All,
    /// Everything but the operations endpoints (`/health/*`, `/metrics`), which are served on
    /// a separate address (`OPS_BIND_ADDR`), out of the public's reach.
    Public,
    /// The operations endpoints only.
    Operations,
}

impl Endpoints {
    fn serves(self, path: &str) -> bool {
        let operations = path == "/metrics" || path.starts_with("/health/");
        match self {
            Self::All => true,
            Self::Public => !operations,
            Self::Operations => operations,
        }
    }
}

/// How a listener serves the application.
#[derive(Debug, Clone)]
pub struct RouterOptions {
    /// Which endpoints; any other path is `404 NOT_FOUND` as if it did not exist.
    pub endpoints: Endpoints,
    /// Browser origins (`https://tickets.example`) whose pages may call the API (CORS); none:
    /// no CORS headers, browsers allow same-origin calls only.
    pub cors_origins: Vec<HeaderValue>,
    /// Rate limits on joining the line (none by default).
    pub join_limits: JoinLimitSettings,
    /// The longest a request may take from its headers to its answer (`408 REQUEST_TIMEOUT`).
    pub request_timeout: Option<std::time::Duration>,
    /// The longest the request body may take to arrive (`408 REQUEST_TIMEOUT`).
    pub body_timeout: Option<std::time::Duration>,
    /// The operator's page in place of the embedded one (`PAGES_DIR`).
    pub pages: Option<pages::PagesTemplate>,
}

impl Default for RouterOptions {
    fn default() -> Self {
        Self {
            endpoints: Endpoints::All,
            cors_origins: Vec::new(),
            join_limits: JoinLimitSettings::default(),
            request_timeout: None,
            body_timeout: None,
            pages: None,
        }
    }
}

/// The complete application, middleware included, ready to serve.
pub fn router(use_cases: UseCases) -> Router {
    router_with(use_cases, RouterOptions::default())
}

/// The application serving only `endpoints`.
pub fn router_for(use_cases: UseCases, endpoints: Endpoints) -> Router {
    router_with(
        use_cases,
        RouterOptions {
            endpoints,
            ..RouterOptions::default()
        },
    )
}

/// Answers preflights and marks answers for the configured origins only. Bearer tokens travel
/// in `Authorization`, not cookies, so credentials stay off.
fn cors(origins: Vec<HeaderValue>) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("idempotency-key"),
                middleware::X_REQUEST_ID,
            ])
            .expose_headers([middleware::X_REQUEST_ID, header::RETRY_AFTER])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

/// The application as `options` say.
pub fn router_with(use_cases: UseCases, options: RouterOptions) -> Router {
    let RouterOptions {
        endpoints,
        cors_origins,
        join_limits,
        request_timeout,
        body_timeout,
        pages,
    } = options;
    let (api, openapi) = api_routes().split_for_parts();
    let openapi_json = openapi::complete(openapi)
        .to_json()
        .map(Bytes::from)
        .unwrap_or_else(|error| {
            tracing::error!(%error, "the OpenAPI document could not be serialised");
            Bytes::from_static(b"{}")
        });
    let state = AppState {
        use_cases: Arc::new(use_cases),
        openapi_json,
        join_limits: Arc::new(JoinLimits::new(join_limits)),
        page: Arc::from(
            pages
                .as_ref()
                .map_or(pages::INDEX, |template| template.index.as_str()),
        ),
    };
    let docs: Router<AppState> = SwaggerUi::new(DOCS_PATH)
        .config(Config::from(OPENAPI_PATH))
        .into();
    let mut site = api
        .merge(docs)
        .route("/", axum::routing::get(pages::index))
        .route("/app.js", axum::routing::get(pages::script))
        .route("/app.css", axum::routing::get(pages::style));
    if let Some(template) = &pages {
        site = site.nest_service(
            "/assets",
            tower_http::services::ServeDir::new(&template.assets)
                .fallback(axum::routing::any(middleware::not_found)),
        );
    }
    site.fallback(middleware::not_found)
        .method_not_allowed_fallback(middleware::method_not_allowed)
        .layer(
            ServiceBuilder::new()
                .layer(axum::middleware::from_fn(middleware::observe))
                .layer(axum::middleware::from_fn(framing::close_after_unread_body))
                .layer(axum::middleware::from_fn(framing::limit_request_head))
                .layer(axum::middleware::from_fn(middleware::security_headers))
                .option_layer(cors(cors_origins))
                .option_layer(request_timeout.map(|timeout| {
                    TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, timeout)
                }))
                .layer(axum::middleware::from_fn(
                    move |request: axum::extract::Request, next: axum::middleware::Next| async move {
                        if endpoints.serves(request.uri().path()) {
                            next.run(request).await
                        } else {
                            middleware::not_found(request.method().clone(), request.uri().clone())
                                .await
                                .into_response()
                        }
                    },
                ))
                .option_layer(body_timeout.map(RequestBodyDeadlineLayer::new))
                .layer(CatchPanicLayer::custom(middleware::panic_response))
                .layer(DefaultBodyLimit::max(MAX_BODY_BYTES)),
        )
        .with_state(state)
}
