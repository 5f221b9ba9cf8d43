//! What browsers rely on: security headers (and a content security policy on the HTML pages),
//! and CORS for the configured origins only.

use axum::http::Method;

use super::{Scenario, TOKEN_ACTIVE, app, call, get, use_cases};
use crate::middleware::DOCS_CONTENT_SECURITY_POLICY;
use crate::{RouterOptions, router_with};

const SHOP: &str = "https://tickets.example";

async fn with_cors() -> axum::Router {
    router_with(
        use_cases(Scenario::default()).await,
        RouterOptions {
            cors_origins: vec![SHOP.parse().expect("an origin")],
            ..RouterOptions::default()
        },
    )
}

fn preflight(origin: &str) -> super::Call {
    call(Method::OPTIONS, "/v1/reservations")
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
}

#[tokio::test]
async fn the_docs_page_forbids_framing_and_foreign_scripts() {
    let page = get("/docs/").send(&app().await).await;

    assert_eq!(page.status.as_u16(), 200);
    assert_eq!(
        page.header("content-security-policy"),
        Some(DOCS_CONTENT_SECURITY_POLICY)
    );
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
}

#[tokio::test]
async fn api_answers_carry_nosniff_and_no_referrer_but_no_page_policy() {
    let answer = get("/v1/concerts")
        .bearer(TOKEN_ACTIVE)
        .send(&app().await)
        .await;

    assert_eq!(answer.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(answer.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(answer.header("content-security-policy"), None);
}

#[tokio::test]
async fn a_configured_origin_passes_the_preflight_and_reads_the_answer() {
    let app = with_cors().await;

    let allowed = preflight(SHOP).send(&app).await;
    assert_eq!(allowed.status.as_u16(), 200);
    assert_eq!(allowed.header("access-control-allow-origin"), Some(SHOP));
    let headers = allowed
        .header("access-control-allow-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(headers.contains("authorization") && headers.contains("idempotency-key"));

    let answer = get("/v1/concerts")
        .bearer(TOKEN_ACTIVE)
        .header("origin", SHOP)
        .send(&app)
        .await;
    assert_eq!(answer.header("access-control-allow-origin"), Some(SHOP));
    assert!(
        answer
            .header("access-control-expose-headers")
            .is_some_and(|h| h.to_ascii_lowercase().contains("x-request-id"))
    );
}

#[tokio::test]
async fn other_origins_and_unconfigured_servers_get_no_cors_headers() {
    let configured = with_cors().await;
    let foreign = preflight("https://evil.example").send(&configured).await;
    assert_eq!(foreign.header("access-control-allow-origin"), None);

    let unconfigured = app().await;
    let answer = preflight(SHOP).send(&unconfigured).await;
    assert_eq!(answer.header("access-control-allow-origin"), None);
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_answered_408() {
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let app = router_with(
        use_cases(Scenario::default()).await,
        RouterOptions {
            body_timeout: Some(Duration::from_millis(300)),
            ..RouterOptions::default()
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    // Ten bytes of a promised hundred, then nothing.
    stream
        .write_all(
            b"POST /v1/queue/tokens HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
              content-length: 100\r\n\r\n{\"userId\":",
        )
        .await
        .expect("write");
    let mut answer = vec![0_u8; 2048];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
        .await
        .expect("answered within the deadline")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("REQUEST_TIMEOUT"), "{answer}");
    server.abort();
}
