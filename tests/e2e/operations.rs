//! Operations endpoints: health, metrics, the OpenAPI document, the docs page, request ids.

use concert_e2e::TestApp;
use reqwest::StatusCode;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread")]
async fn health_metrics_and_request_ids() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let client = &app.client;
    assert_eq!(
        client.get("/health/live", None).await?.status,
        StatusCode::OK
    );
    assert_eq!(
        client.get("/health/ready", None).await?.status,
        StatusCode::OK
    );

    let echoed = client
        .send(
            client
                .raw(reqwest::Method::GET, "/health/live")
                .header("x-request-id", "trace-me-42"),
        )
        .await?;
    assert_eq!(echoed.header("x-request-id"), Some("trace-me-42"));
    let generated = client.get("/health/live", None).await?;
    assert!(
        generated
            .header("x-request-id")
            .is_some_and(|id| !id.is_empty())
    );

    // Some traffic, so every family has a sample.
    let user = Uuid::new_v4();
    let token = client.active_token(user).await?;
    let (concert, date) = client.concert_with_date(3, 0, 1).await?;
    let held = client.hold(&token, concert, &date, 1).await?;
    let reservation = held.body["reservationId"].as_i64().expect("id");
    assert_eq!(
        client.pay(&token, reservation, None).await?.status,
        StatusCode::CREATED
    );
    client
        .get(&format!("/v1/reservations/{reservation}"), Some(&token))
        .await?;

    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let metrics = client.get("/metrics", None).await?;
        assert_eq!(metrics.status, StatusCode::OK);
        let text = &metrics.text;
        let complete = [
            "http_requests_total",
            "http_request_duration_seconds",
            "queue_waiting_tokens",
            "queue_active_tokens",
            "seat_holds_live",
            "payments_total",
            "seat_holds_total",
            "queue_admissions_total",
            "queue_tickets_ended_total{room=\"default\",reason=\"PAID\"}",
            "queue_waiting_tokens{room=\"default\"}",
            "route=\"/v1/reservations/{reservationId}\"",
        ]
        .iter()
        .all(|name| text.contains(name));
        if complete {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "metrics incomplete:\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    app.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn openapi_document_and_docs_page_are_served() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let client = &app.client;
    let document = client.get("/openapi.json", None).await?;
    assert_eq!(document.status, StatusCode::OK);
    assert!(
        document.body["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1"))
    );
    let paths = document.body["paths"].as_object().expect("paths");
    for path in [
        "/v1/queue/tokens",
        "/v1/queue/status",
        "/v1/concerts",
        "/v1/concerts/{concertId}/dates",
        "/v1/concerts/{concertId}/dates/{date}/seats",
        "/v1/reservations",
        "/v1/reservations/{reservationId}",
        "/v1/users/{userId}/points/charge",
        "/v1/users/{userId}/points",
        "/v1/users/{userId}/points/history",
        "/v1/payments",
        "/v1/admin/concerts",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} missing from the OpenAPI document"
        );
    }
    let docs = client.get("/docs/", None).await?;
    assert_eq!(docs.status, StatusCode::OK);
    assert!(docs.text.to_lowercase().contains("swagger"));
    app.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn with_an_ops_address_health_and_metrics_leave_the_public_one() -> anyhow::Result<()> {
    let app = TestApp::spawn_with(|config| {
        config.ops_bind_addr = Some("127.0.0.1:0".parse().expect("an address"));
    })
    .await?;
    let public = &app.client;
    let ops = concert_e2e::Client::new(app.server.ops_addr.expect("an ops address"));

    for path in ["/health/live", "/health/ready", "/metrics"] {
        assert_eq!(ops.get(path, None).await?.status, StatusCode::OK, "{path}");
        let hidden = public.get(path, None).await?;
        assert_eq!(
            (hidden.status, hidden.code()),
            (StatusCode::NOT_FOUND, "NOT_FOUND"),
            "{path}"
        );
    }
    let token = public.active_token(Uuid::new_v4()).await?;
    assert_eq!(
        public.get("/v1/concerts", Some(&token)).await?.status,
        StatusCode::OK
    );
    assert_eq!(
        ops.get("/v1/concerts", Some(&token)).await?.status,
        StatusCode::NOT_FOUND
    );
    app.shutdown().await
}
