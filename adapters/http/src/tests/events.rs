//! `GET /v1/queue/events`: the status as server-sent events, a problem+json answer for a bad
//! token or one the line does not know, and `503` beyond the instance's most streams. (These fakes never refresh the view, so a
//! stream ends after its first event; the end-to-end tests follow a stream through changes.)

use axum::body::Body;
use axum::http::Request;
use futures::StreamExt;
use serde_json::Value;
use tower::ServiceExt;

use super::*;

/// The `data` of each `event: status` in a finished stream's body.
fn status_events(body: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(body).expect("UTF-8");
    text.split("\n\n")
        .filter(|event| event.contains("event: status"))
        .filter_map(|event| {
            event
                .lines()
                .find_map(|line| line.strip_prefix("data: "))
                .map(|data| serde_json::from_str(data).expect("JSON data"))
        })
        .collect()
}

#[tokio::test]
async fn a_stream_opens_with_the_status_the_poll_would_answer() {
    let app = app().await;
    let stream = get("/v1/queue/events")
        .bearer(TOKEN_WAITING)
        .send(&app)
        .await;
    assert_eq!(stream.status, StatusCode::OK);
    assert_eq!(stream.header("content-type"), Some("text/event-stream"));
    let polled = get("/v1/queue/status")
        .bearer(TOKEN_WAITING)
        .send(&app)
        .await
        .ok(200);
    assert_eq!(status_events(&stream.body), vec![polled]);
}

#[tokio::test]
async fn a_bad_token_gets_a_problem_not_a_stream() {
    let app = app().await;
    get("/v1/queue/events")
        .bearer("forged")
        .send(&app)
        .await
        .problem(401, "TOKEN_INVALID");
    get("/v1/queue/events")
        .send(&app)
        .await
        .problem(401, "TOKEN_INVALID");
    // Validly signed, but its ticket is not on the line: known before the stream would start.
    get("/v1/queue/events")
        .bearer(TOKEN_UNKNOWN)
        .send(&app)
        .await
        .problem(401, "TOKEN_INVALID");
}

#[tokio::test]
async fn beyond_the_most_streams_the_instance_answers_503_with_retry_after() {
    let app = app().await;
    let open = |token: &str| {
        Request::get("/v1/queue/events")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .expect("request")
    };
    // The fakes allow one stream; this one stays open while its body is not read.
    let first = app
        .clone()
        .oneshot(open(TOKEN_WAITING))
        .await
        .expect("infallible");
    assert_eq!(first.status(), StatusCode::OK);
    let refused = get("/v1/queue/events")
        .bearer(TOKEN_WAITING_FAR)
        .send(&app)
        .await;
    assert_eq!(refused.header("retry-after"), Some("5"));
    refused.problem(503, "SERVICE_UNAVAILABLE");
    drop(first);
    let again = get("/v1/queue/events")
        .bearer(TOKEN_WAITING_FAR)
        .send(&app)
        .await;
    assert_eq!(
        again.status,
        StatusCode::OK,
        "the closed stream freed its place"
    );
}

#[tokio::test]
async fn a_quiet_stream_sends_a_comment_line_as_heartbeat() {
    let mut use_cases = use_cases(Scenario::default()).await;
    // Live signals this time, so the stream stays open after its first event.
    let (refreshes, refreshed) = tokio::sync::watch::channel(0);
    let (draining_tx, draining) = tokio::sync::watch::channel(false);
    use_cases.queue_events = crate::QueueEvents {
        refreshed,
        draining,
        heartbeat: std::time::Duration::from_millis(100),
    };
    let app = crate::router(use_cases);
    let request = Request::get("/v1/queue/events")
        .header("authorization", format!("Bearer {TOKEN_WAITING}"))
        .body(Body::empty())
        .expect("request");
    let response = app.oneshot(request).await.expect("infallible");
    let mut body = response.into_body().into_data_stream();
    let mut seen = String::new();
    while !seen.contains("\n:") && !seen.starts_with(':') {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(2), body.next())
            .await
            .expect("a heartbeat within 2 s")
            .expect("the stream is open")
            .expect("a chunk");
        seen.push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
    }
    assert!(seen.starts_with("event: status"), "{seen}");
    // Draining ends the stream.
    draining_tx.send(true).expect("draining");
    let rest = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        while let Some(chunk) = body.next().await {
            chunk.expect("a chunk");
        }
    })
    .await;
    assert!(rest.is_ok(), "the stream ended when the server drained");
    drop(refreshes);
}
