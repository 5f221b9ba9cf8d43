//! The HTTP/1.1 accept loop, in place of `axum::serve`, for what a public on-sale needs and
//! `axum::serve` cannot set: a deadline on request headers (a slow client trickling them, or a
//! keep-alive connection idle between requests, is closed), a cap on open connections with a
//! clear answer beyond it, and accept failures (out of file descriptors) logged instead of
//! stalling silently. Connections close lingering (`crate::lingering`), so an answer given
//! before the request body was read reaches a client that is still sending.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::ServiceExt;

use crate::lingering::LingeringStream;

/// How long accepting pauses after a failure (e.g. no file descriptor left), so that the loop
/// does not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// A request's headers must arrive within this; it also bounds how long a keep-alive
    /// connection may sit idle between requests.
    pub header_read_timeout: Duration,
    /// Connections open at once; beyond it a new connection gets `503` and is closed.
    pub max_connections: usize,
}

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting and waits for
/// the open connections to finish their requests (the caller bounds that wait).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // Above the router's own limit of 100 lines, so that the router refuses with a
        // problem+json answer rather than hyper with a bare one.
        .max_headers(2 * concert_http::framing::MAX_HEADER_COUNT)
        .keep_alive(true);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::error!(%error, "accepting a connection failed (out of file descriptors?)");
                    metrics::counter!("http_accept_errors_total").increment(1);
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            metrics::counter!("http_connections_refused_total").increment(1);
            tokio::spawn(refuse(stream));
            continue;
        };
        let service =
            router
                .clone()
                .map_request(move |mut request: axum::http::Request<Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(peer));
                    request
                });
        let connection = http.serve_connection(
            TokioIo::new(LingeringStream::new(stream)),
            TowerToHyperService::new(service),
        );
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// The answer to a connection over the cap: `503` problem+json, then close.
async fn refuse(mut stream: TcpStream) {
    let body = r#"{"type":"urn:concert-queue:problem:service-unavailable","title":"The service is temporarily unavailable","status":503,"detail":"this instance has too many open connections; retry shortly","code":"SERVICE_UNAVAILABLE"}"#;
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\n\
         retry-after: 1\r\nx-request-id: {}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        uuid::Uuid::new_v4(),
        body.len()
    );
    // The client may be gone already; nothing more to do then.
    if stream.write_all(answer.as_bytes()).await.is_ok() {
        let _ = stream.shutdown().await;
    }
}

/// File descriptors this process may open (the soft limit), read from `/proc/self/limits`.
pub fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Descriptors kept for everything but client connections: the database pool, the listeners,
/// log and metric files, a margin.
const RESERVED_FILES: usize = 128;

/// The connection cap: `configured`, or the open-files limit less what the rest needs.
pub fn connection_cap(configured: Option<usize>) -> usize {
    let room = open_files_limit().map(|limit| limit.saturating_sub(RESERVED_FILES).max(16));
    match (configured, room) {
        (Some(configured), Some(room)) if configured > room => {
            tracing::warn!(
                configured,
                room,
                "MAX_CONNECTIONS exceeds what the open-files limit leaves; raise `ulimit -n`"
            );
            configured
        }
        (Some(configured), _) => configured,
        (None, Some(room)) => room,
        (None, None) => 1024,
    }
}
