//! Every error `code` of docs/API.md, answered as problem+json with the documented status.

use concert_e2e::{Answer, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

fn assert_problem(answer: &Answer, status: StatusCode, code: &str) {
    assert_eq!(answer.status, status, "{}", answer.text);
    assert_eq!(answer.code(), code, "{}", answer.text);
    assert!(
        answer
            .content_type()
            .starts_with("application/problem+json"),
        "{}",
        answer.content_type()
    );
    assert_eq!(answer.body["status"], status.as_u16());
    assert!(
        answer.body["title"].is_string()
            && answer.body["type"].is_string()
            && answer.body["detail"].is_string()
    );
    assert!(answer.header("x-request-id").is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn queue_token_errors() -> anyhow::Result<()> {
    let app = TestApp::spawn_with(|config| config.queue_max_active = 1).await?;
    let client = &app.client;
    assert_problem(
        &client.get("/v1/concerts", None).await?,
        StatusCode::UNAUTHORIZED,
        "TOKEN_INVALID",
    );
    assert_problem(
        &client.get("/v1/concerts", Some("garbage")).await?,
        StatusCode::UNAUTHORIZED,
        "TOKEN_INVALID",
    );
    assert_problem(
        &client.queue_status("not.a-token").await?,
        StatusCode::UNAUTHORIZED,
        "TOKEN_INVALID",
    );

    // Altered: a valid token with its last character changed.
    let first = client.active_token(Uuid::new_v4()).await?;
    let mut altered = first.clone();
    let last = altered.pop().expect("non-empty");
    altered.push(if last == 'A' { 'B' } else { 'A' });
    assert_problem(
        &client.get("/v1/concerts", Some(&altered)).await?,
        StatusCode::UNAUTHORIZED,
        "TOKEN_INVALID",
    );

    // A second user waits behind the first.
    let waiting = client.issue_token(Uuid::new_v4()).await?;
    let waiting = waiting.body["token"].as_str().expect("token").to_owned();
    assert_problem(
        &client.get("/v1/concerts", Some(&waiting)).await?,
        StatusCode::FORBIDDEN,
        "QUEUE_NOT_ACTIVE",
    );
    app.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn catalog_and_reservation_errors() -> anyhow::Result<()> {
    let app = TestApp::spawn_with(|config| config.max_holds_per_user = 2).await?;
    let client = &app.client;
    let (concert, date) = client.concert_with_date(10, 5_000, 5).await?;
    let alice = Uuid::new_v4();
    let token = client.active_token(alice).await?;
    let other = client.active_token(Uuid::new_v4()).await?;

    assert_problem(
        &client
            .get("/v1/concerts/999999/dates", Some(&token))
            .await?,
        StatusCode::NOT_FOUND,
        "CONCERT_NOT_FOUND",
    );
    assert_problem(
        &client
            .get(
                &format!("/v1/concerts/999999/dates/{date}/seats"),
                Some(&token),
            )
            .await?,
        StatusCode::NOT_FOUND,
        "CONCERT_NOT_FOUND",
    );
    assert_problem(
        &client
            .get(
                &format!("/v1/concerts/{concert}/dates/2099-01-01/seats"),
                Some(&token),
            )
            .await?,
        StatusCode::NOT_FOUND,
        "DATE_NOT_FOUND",
    );
    assert_problem(
        &client.hold(&token, 999_999, &date, 1).await?,
        StatusCode::NOT_FOUND,
        "CONCERT_NOT_FOUND",
    );
    assert_problem(
        &client.hold(&token, concert, "2099-01-01", 1).await?,
        StatusCode::NOT_FOUND,
        "DATE_NOT_FOUND",
    );
    assert_problem(
        &client.hold(&token, concert, &date, 11).await?,
        StatusCode::BAD_REQUEST,
        "VALIDATION_FAILED",
    );

    let first = client.hold(&token, concert, &date, 1).await?;
    assert_eq!(first.status, StatusCode::CREATED);
    let reservation = first.body["reservationId"].as_i64().expect("id");
    assert_problem(
        &client.hold(&token, concert, &date, 1).await?,
        StatusCode::CONFLICT,
        "SEAT_UNAVAILABLE",
    );
    assert_problem(
        &client.hold(&other, concert, &date, 1).await?,
        StatusCode::CONFLICT,
        "SEAT_UNAVAILABLE",
    );
    assert_eq!(
        client.hold(&token, concert, &date, 2).await?.status,
        StatusCode::CREATED
    );
    assert_problem(
        &client.hold(&token, concert, &date, 3).await?,
        StatusCode::CONFLICT,
        "HOLD_LIMIT_REACHED",
    );

    // Another user's reservation answers like a missing one, whatever the method.
    let path = format!("/v1/reservations/{reservation}");
    assert_problem(
        &client.get(&path, Some(&other)).await?,
        StatusCode::NOT_FOUND,
        "RESERVATION_NOT_FOUND",
    );
    let delete = client.raw(Method::DELETE, &path).bearer_auth(&other);
    assert_problem(
        &client.send(delete).await?,
        StatusCode::NOT_FOUND,
        "RESERVATION_NOT_FOUND",
    );
    assert_problem(
        &client.pay(&other, reservation, None).await?,
        StatusCode::NOT_FOUND,
        "RESERVATION_NOT_FOUND",
    );
    assert_problem(
        &client.get("/v1/reservations/987654", Some(&token)).await?,
        StatusCode::NOT_FOUND,
        "RESERVATION_NOT_FOUND",
    );

    // Short balance: nothing changes, the hold stays.
    assert_problem(
        &client.pay(&token, reservation, None).await?,
        StatusCode::CONFLICT,
        "INSUFFICIENT_BALANCE",
    );
    assert_eq!(
        client.get(&path, Some(&token)).await?.body["status"],
        "HELD"
    );

    // Cancelled: no longer held, for cancel and for pay.
    let cancel = || client.raw(Method::DELETE, &path).bearer_auth(&token);
    assert_eq!(client.send(cancel()).await?.status, StatusCode::OK);
    assert_problem(
        &client.send(cancel()).await?,
        StatusCode::CONFLICT,
        "RESERVATION_NOT_HELD",
    );
    client.charge(alice, 10_000, None).await?;
    assert_problem(
        &client.pay(&token, reservation, None).await?,
        StatusCode::CONFLICT,
        "RESERVATION_NOT_HELD",
    );
    app.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_payment_without_a_key_is_not_held_and_the_token_is_expired() -> anyhow::Result<()>
{
    let app = TestApp::spawn().await?;
    let client = &app.client;
    let (concert, date) = client.concert_with_date(3, 100, 2).await?;
    let user = Uuid::new_v4();
    let token = client.active_token(user).await?;
    client.charge(user, 1_000, None).await?;
    let reservation = client.hold(&token, concert, &date, 1).await?.body["reservationId"]
        .as_i64()
        .expect("id");
    assert_eq!(
        client.pay(&token, reservation, None).await?.status,
        StatusCode::CREATED
    );
    assert_problem(
        &client.pay(&token, reservation, None).await?,
        StatusCode::UNAUTHORIZED,
        "TOKEN_EXPIRED",
    );
    // With a new token, the second payment of the paid reservation is not held.
    let again = client.active_token(user).await?;
    assert_problem(
        &client.pay(&again, reservation, None).await?,
        StatusCode::CONFLICT,
        "RESERVATION_NOT_HELD",
    );
    assert_eq!(client.balance(user).await?, 900, "charged once");
    app.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn points_errors() -> anyhow::Result<()> {
    let app = TestApp::spawn_with(|config| {
        config.max_charge_amount = 1_000;
        config.max_balance = 1_500;
    })
    .await?;
    let client = &app.client;
    let user = Uuid::new_v4();
    assert_problem(
        &client.charge(user, 0, None).await?,
        StatusCode::BAD_REQUEST,
        "VALIDATION_FAILED",
    );
    assert_problem(
        &client.charge(user, 1_001, None).await?,
        StatusCode::BAD_REQUEST,
        "VALIDATION_FAILED",
    );
    assert_eq!(
        client.charge(user, 1_000, None).await?.status,
        StatusCode::OK
    );
    assert_problem(
        &client.charge(user, 501, None).await?,
        StatusCode::CONFLICT,
        "BALANCE_LIMIT_EXCEEDED",
    );
    assert_eq!(client.balance(user).await?, 1_000);

    // Idempotency: the same key returns the first answer and charges once; another body is refused.
    let first = client.charge(user, 100, Some("charge-1")).await?;
    let retry = client.charge(user, 100, Some("charge-1")).await?;
    assert_eq!(first.body, retry.body);
    assert_eq!(client.balance(user).await?, 1_100);
    assert_problem(
        &client.charge(user, 200, Some("charge-1")).await?,
        StatusCode::CONFLICT,
        "IDEMPOTENCY_KEY_REUSED",
    );
    assert_problem(
        &client.charge(user, 100, Some("bad key")).await?,
        StatusCode::BAD_REQUEST,
        "VALIDATION_FAILED",
    );
    let too_long = "k".repeat(65);
    let answer = client.charge(user, 100, Some(&too_long)).await?;
    assert_problem(&answer, StatusCode::BAD_REQUEST, "VALIDATION_FAILED");
    assert!(
        answer.body["detail"]
            .as_str()
            .unwrap_or("")
            .contains("Idempotency-Key")
    );

    // History paging bounds.
    for query in ["limit=0", "limit=101", "before=0", "limit=abc"] {
        let answer = client
            .get(&format!("/v1/users/{user}/points/history?{query}"), None)
            .await?;
        assert_problem(&answer, StatusCode::BAD_REQUEST, "VALIDATION_FAILED");
    }
    let page = client
        .get(&format!("/v1/users/{user}/points/history?limit=1"), None)
        .await?;
    assert_eq!(page.body["entries"].as_array().map(Vec::len), Some(1));
    assert_problem(
        &client.get("/v1/users/not-a-uuid/points", None).await?,
        StatusCode::BAD_REQUEST,
        "VALIDATION_FAILED",
    );
    app.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_and_router_errors() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let client = &app.client;
    let body = json!({ "title": "Gala", "dates": [{ "date": "2099-12-24", "price": 100 }] });
    assert_problem(
        &client.post("/v1/admin/concerts", None, &body).await?,
        StatusCode::UNAUTHORIZED,
        "ADMIN_KEY_INVALID",
    );
    assert_problem(
        &client
            .post("/v1/admin/concerts", Some("wrong"), &body)
            .await?,
        StatusCode::UNAUTHORIZED,
        "ADMIN_KEY_INVALID",
    );
    let past = json!({ "title": "Gala", "dates": [{ "date": "2000-01-01", "price": 100 }] });
    assert_problem(
        &client.create_concert(&past).await?,
        StatusCode::BAD_REQUEST,
        "VALIDATION_FAILED",
    );
    let no_dates = json!({ "title": "Gala", "dates": [] });
    assert_problem(
        &client.create_concert(&no_dates).await?,
        StatusCode::BAD_REQUEST,
        "VALIDATION_FAILED",
    );
    let created = client.create_concert(&body).await?;
    assert_eq!(created.status, StatusCode::CREATED);

    assert_problem(
        &client.get("/v1/nowhere", None).await?,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    let wrong_method = client.raw(Method::PUT, "/v1/queue/tokens");
    assert_problem(
        &client.send(wrong_method).await?,
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
    );
    let user = Uuid::new_v4();
    let huge = client
        .raw(Method::POST, &format!("/v1/users/{user}/points/charge"))
        .header("content-type", "application/json")
        .body(format!(
            "{{\"amount\": 1, \"pad\": \"{}\"}}",
            "x".repeat(70 * 1024)
        ));
    assert_problem(
        &client.send(huge).await?,
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
    );
    let not_json = client
        .raw(Method::POST, &format!("/v1/users/{user}/points/charge"))
        .header("content-type", "text/plain")
        .body("{\"amount\": 1}");
    assert_problem(
        &client.send(not_json).await?,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UNSUPPORTED_MEDIA_TYPE",
    );
    let malformed = client
        .raw(Method::POST, "/v1/queue/tokens")
        .header("content-type", "application/json")
        .body("{\"userId\": ");
    assert_problem(
        &client.send(malformed).await?,
        StatusCode::BAD_REQUEST,
        "VALIDATION_FAILED",
    );
    let missing = client.post("/v1/queue/tokens", None, &json!({})).await?;
    assert_problem(&missing, StatusCode::BAD_REQUEST, "VALIDATION_FAILED");
    assert!(
        missing.body["detail"]
            .as_str()
            .unwrap_or("")
            .contains("userId")
    );
    let token = client.active_token(user).await?;
    assert_problem(
        &client.get("/v1/reservations/0", Some(&token)).await?,
        StatusCode::BAD_REQUEST,
        "VALIDATION_FAILED",
    );
    assert_problem(
        &client.get("/v1/concerts/abc/dates", Some(&token)).await?,
        StatusCode::BAD_REQUEST,
        "VALIDATION_FAILED",
    );
    assert_problem(
        &client
            .get("/v1/concerts/1/dates/2026-13-45/seats", Some(&token))
            .await?,
        StatusCode::BAD_REQUEST,
        "VALIDATION_FAILED",
    );
    app.shutdown().await
}

/// Twins in flight: many charges with one key sent at once. Every one answers the first
/// answer and the balance grows once: a twin that loses the race to write finds the key stored
/// with the winner's effect and replays it (this implementation never answers
/// `IDEMPOTENCY_KEY_IN_USE`).
#[tokio::test(flavor = "multi_thread")]
async fn twins_in_flight_charge_once_and_share_the_answer() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let client = &app.client;
    let user = Uuid::new_v4();
    let twins = (0..20).map(|_| client.charge(user, 100, Some("twin-key")));
    let answers = futures::future::try_join_all(twins).await?;
    for answer in &answers {
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        assert_eq!(answer.body["balance"], 100, "{}", answer.text);
    }
    assert_eq!(client.balance(user).await?, 100, "charged once");
    let history = client
        .get(&format!("/v1/users/{user}/points/history"), None)
        .await?;
    assert_eq!(
        history.body["entries"].as_array().map(Vec::len),
        Some(1),
        "one ledger entry: {}",
        history.text
    );
    app.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_wrong_admin_keys_is_throttled_for_the_rest_of_the_minute() -> anyhow::Result<()>
{
    let app = TestApp::spawn().await?;
    let client = &app.client;
    let body = json!({ "title": "Gala", "dates": [{ "date": "2099-12-24", "price": 100 }] });
    for guess in 0..10 {
        let refused = client
            .post("/v1/admin/concerts", Some(&format!("guess-{guess}")), &body)
            .await?;
        assert_problem(&refused, StatusCode::UNAUTHORIZED, "ADMIN_KEY_INVALID");
    }
    // The eleventh is not even looked at, the right key included.
    let throttled = client.create_concert(&body).await?;
    assert_problem(&throttled, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED");
    let retry_after: u64 = throttled
        .header("retry-after")
        .expect("Retry-After")
        .parse()?;
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    app.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn joins_beyond_the_configured_rates_are_refused_until_the_budget_returns()
-> anyhow::Result<()> {
    let app = TestApp::spawn_with(|config| {
        config.join_rate_limit_per_user = 2;
        config.join_rate_limit_per_address = 4;
    })
    .await?;
    let client = &app.client;
    let someone = Uuid::new_v4();

    // Per user: asking again for one's own token counts too.
    for _ in 0..2 {
        assert!(client.issue_token(someone).await?.status.is_success());
    }
    let refused = client.issue_token(someone).await?;
    assert_problem(&refused, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED");
    assert!(refused.header("retry-after").is_some());

    // Per address: every join from this test's address (127.0.0.1) counts, whoever joins.
    assert!(
        client
            .issue_token(Uuid::new_v4())
            .await?
            .status
            .is_success()
    );
    let crowd = client.issue_token(Uuid::new_v4()).await?;
    assert_problem(&crowd, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED");
    assert!(crowd.text.contains("address"), "{}", crowd.text);
    app.shutdown().await
}
