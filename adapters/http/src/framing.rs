//! HTTP framing the handlers never see: request heads kept within limits (answered `414` and
//! `431` as problem+json, like every other refusal, rather than by the HTTP library's bare
//! answers), and `Connection: close` on an answer given before its request body was read.
//!
//! The second matters to keep-alive clients: the server cannot parse the next request from a
//! connection whose previous body it left unread, so it closes it after the answer. Saying so in
//! the answer lets the client open a new connection instead of sending its next request into a
//! socket that is about to close.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use http_body::{Frame, SizeHint};

use crate::problem::{ErrorCode, Problem};

/// The longest request target accepted (path and query), as common proxies allow.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// The most header lines a request may carry.
pub const MAX_HEADER_COUNT: usize = 100;
/// The largest header section accepted, names and values together.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Refuses a request whose head is over the limits, before anything else looks at it.
pub async fn limit_request_head(request: Request, next: Next) -> Response {
    let uri_bytes = request.uri().to_string().len();
    if uri_bytes > MAX_URI_BYTES {
        return Problem::new(
            ErrorCode::UriTooLong,
            format!(
                "the request target is {uri_bytes} bytes; at most {MAX_URI_BYTES} are accepted"
            ),
        )
        .into_response();
    }
    let headers = request.headers();
    if headers.len() > MAX_HEADER_COUNT {
        return Problem::new(
            ErrorCode::HeadersTooLarge,
            format!(
                "the request has {} header lines; at most {MAX_HEADER_COUNT} are accepted",
                headers.len()
            ),
        )
        .into_response();
    }
    let header_bytes = header_section_bytes(headers);
    if header_bytes > MAX_HEADER_BYTES {
        return Problem::new(
            ErrorCode::HeadersTooLarge,
            format!(
                "the request's headers are {header_bytes} bytes; at most {MAX_HEADER_BYTES} are accepted"
            ),
        )
        .into_response();
    }
    next.run(request).await
}

/// The header section's size as sent: `name: value\r\n` per line.
fn header_section_bytes(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum()
}

/// Adds `Connection: close` to an answer given while its request body was not read to its end
/// (a body over the limit, a refusal decided from the headers alone, an unknown route).
pub async fn close_after_unread_body(request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let read_to_end = Arc::new(AtomicBool::new(body.is_end_stream()));
    let body = Body::new(EndTracked {
        inner: body,
        read_to_end: Arc::clone(&read_to_end),
    });
    let mut response = next.run(Request::from_parts(parts, body)).await;
    if !read_to_end.load(Ordering::Acquire) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// A request body that records when it has been read to its end.
struct EndTracked {
    inner: Body,
    read_to_end: Arc<AtomicBool>,
}

impl HttpBody for EndTracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(context);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.read_to_end.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
