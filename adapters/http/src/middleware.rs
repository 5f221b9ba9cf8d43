//! What every request goes through: a request id, a tracing span, request metrics, panics turned
//! into problem+json, and a last check that no error leaves without a problem+json body.

use std::any::Any;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;
use uuid::Uuid;

use crate::problem::{ErrorCode, PROBLEM_JSON, Problem};

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The `route` label of requests that matched no route, so the label's values stay bounded.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Longest client request id that is echoed.
const MAX_REQUEST_ID_LEN: usize = 128;

/// The id of one request: the client's `x-request-id` when it is sane, else a new UUID v4.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(HeaderValue);

impl RequestId {
    pub fn from_headers(headers: &HeaderMap) -> Self {
        headers
            .get(X_REQUEST_ID)
            .filter(|value| is_sane_request_id(value.as_bytes()))
            .map_or_else(Self::generate, |value| Self(value.clone()))
    }

    pub fn generate() -> Self {
        let id = Uuid::new_v4().to_string();
        Self(HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("invalid")))
    }

    pub fn as_str(&self) -> &str {
        self.0.to_str().unwrap_or_default()
    }
}

/// 1 to 128 visible ASCII characters.
fn is_sane_request_id(raw: &[u8]) -> bool {
    !raw.is_empty() && raw.len() <= MAX_REQUEST_ID_LEN && raw.iter().all(u8::is_ascii_graphic)
}

/// The `method` label: the standard methods by name, anything else as `OTHER`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "OTHER",
    }
}

/// Request id, span, metrics and the problem+json guarantee, around every route and fallback.
/// Installed with `Router::layer`, so it runs after routing and sees the route template.
pub async fn observe(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = RequestId::from_headers(request.headers());
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED_ROUTE, MatchedPath::as_str)
        .to_owned();
    let span = tracing::info_span!(
        "http_request",
        request_id = request_id.as_str(),
        method,
        route = route.as_str(),
    );
    request
        .headers_mut()
        .insert(X_REQUEST_ID, request_id.0.clone());
    request.extensions_mut().insert(request_id.clone());

    let mut response = next.run(request).instrument(span.clone()).await;

    ensure_problem_json(&mut response);
    response.headers_mut().insert(X_REQUEST_ID, request_id.0);
    let status = response.status();
    let elapsed = started.elapsed().as_secs_f64();
    metrics::counter!(
        "http_requests_total",
        "method" => method,
        "route" => route.clone(),
        "status" => status.as_str().to_owned(),
    )
    .increment(1);
    metrics::histogram!(
        "http_request_duration_seconds",
        "method" => method,
        "route" => route,
    )
    .record(elapsed);
    span.in_scope(|| {
        tracing::debug!(
            status = status.as_u16(),
            elapsed_ms = elapsed * 1000.0,
            "request finished"
        );
    });
    response
}

/// Turns an error answer that some layer produced without a problem+json body (a framework
/// default, a static file route's 404...) into one, keeping its status and headers.
fn ensure_problem_json(response: &mut Response) {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return;
    }
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with(PROBLEM_JSON));
    if is_problem {
        return;
    }
    let code = ErrorCode::for_status(status);
    let detail = match code {
        ErrorCode::InternalError => "the server failed to answer this request".to_owned(),
        _ => status
            .canonical_reason()
            .unwrap_or("the request was refused")
            .to_ascii_lowercase(),
    };
    let replacement = Problem::new(code, detail).into_response();
    let (parts, body) = replacement.into_parts();
    let headers = response.headers_mut();
    headers.remove(header::CONTENT_LENGTH);
    for (name, value) in &parts.headers {
        headers.insert(name.clone(), value.clone());
    }
    *response.status_mut() = parts.status;
    *response.body_mut() = body;
}

/// Router fallback: no route has this path.
pub async fn not_found(method: Method, uri: Uri) -> Problem {
    Problem::new(
        ErrorCode::NotFound,
        format!("no resource at {method} {}", shorten(uri.path())),
    )
}

/// A route has this path, but not for this method (axum adds the `Allow` header).
pub async fn method_not_allowed(method: Method, uri: Uri) -> Problem {
    Problem::new(
        ErrorCode::MethodNotAllowed,
        format!("{method} is not allowed on {}", shorten(uri.path())),
    )
}

fn shorten(path: &str) -> String {
    const MAX: usize = 200;
    if path.len() <= MAX {
        return path.to_owned();
    }
    let mut end = MAX;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &path[..end])
}

/// `CatchPanicLayer` handler: a panic is a bug; log it and answer a generic 500.
pub fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response<Body> {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("non-string panic payload");
    tracing::error!(panic = message, "handler panicked");
    Problem::internal().into_response()
}

/// Headers every answer carries: no MIME sniffing, no referrer leaking a path to other sites.
/// The HTML pages (`/docs`) also get a content security policy that allows only this origin's
/// scripts and forbids framing (clickjacking).
pub async fn security_headers(request: Request, next: Next) -> Response {
    let html_page = request.uri().path().starts_with(crate::DOCS_PATH);
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if html_page {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(DOCS_CONTENT_SECURITY_POLICY),
        );
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    response
}

/// Swagger UI loads its scripts and styles from this origin, sets inline styles and draws
/// `data:` images; nothing else is allowed.
pub const DOCS_CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_echoed_only_when_sane() {
        let mut headers = HeaderMap::new();
        headers.insert(X_REQUEST_ID, HeaderValue::from_static("abc-123_XYZ"));
        assert_eq!(RequestId::from_headers(&headers).as_str(), "abc-123_XYZ");

        for bad in ["", "has space", &"x".repeat(129)] {
            headers.insert(X_REQUEST_ID, HeaderValue::from_str(bad).expect("value"));
            let generated = RequestId::from_headers(&headers);
            assert_ne!(generated.as_str(), bad);
            assert!(Uuid::parse_str(generated.as_str()).is_ok());
        }
        headers.insert(
            X_REQUEST_ID,
            HeaderValue::from_str(&"x".repeat(128)).expect("v"),
        );
        assert_eq!(RequestId::from_headers(&headers).as_str().len(), 128);
    }

    #[test]
    fn custom_methods_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        let custom = Method::from_bytes(b"BREW").expect("method");
        assert_eq!(method_label(&custom), "OTHER");
    }

    #[test]
    fn long_paths_are_shortened_on_a_char_boundary() {
        let path = "é".repeat(150);
        let short = shorten(&path);
        assert!(short.len() <= 204);
        assert!(short.ends_with('…'));
    }
}
