//! Every kind of input the router or an extractor refuses answers problem+json, never a 500 nor a
//! plain-text rejection, and `VALIDATION_FAILED` names the field at fault.

use serde_json::json;

use super::*;

fn hold() -> Call {
    post("/v1/reservations").bearer(TOKEN_ACTIVE)
}

#[track_caller]
fn assert_names(detail: &str, field: &str) {
    assert!(
        detail.contains(field),
        "detail {detail:?} does not name {field}"
    );
}

#[tokio::test]
async fn malformed_json_is_a_validation_failure() {
    let app = app().await;
    for body in ["{", "{\"concertId\": 1,}", "", "null x", "[1, 2"] {
        let answer = hold()
            .header("content-type", "application/json")
            .raw_body(body)
            .send(&app)
            .await;
        answer.problem(400, "VALIDATION_FAILED");
    }
}

#[tokio::test]
async fn a_missing_field_is_named() {
    let app = app().await;
    let detail = hold()
        .json(&json!({ "concertId": 1, "date": "2026-12-24" }))
        .send(&app)
        .await
        .problem(400, "VALIDATION_FAILED");
    assert_names(&detail, "seatNo");
}

#[tokio::test]
async fn a_mistyped_field_is_named() {
    let app = app().await;
    for (body, field) in [
        (
            json!({ "concertId": "1", "date": "2026-12-24", "seatNo": 1 }),
            "concertId",
        ),
        (
            json!({ "concertId": 1, "date": "2026-12-24", "seatNo": 1.5 }),
            "seatNo",
        ),
        (
            json!({ "concertId": 1, "date": 20261224, "seatNo": 1 }),
            "date",
        ),
        (
            json!({ "concertId": 1, "date": "2026-12-24", "seatNo": null }),
            "seatNo",
        ),
        (
            json!({ "concertId": 1e30, "date": "2026-12-24", "seatNo": 1 }),
            "concertId",
        ),
    ] {
        let detail = hold()
            .json(&body)
            .send(&app)
            .await
            .problem(400, "VALIDATION_FAILED");
        assert_names(&detail, field);
    }
    let detail = post("/v1/users/00000000-0000-0000-0000-00000000000a/points/charge")
        .header("content-type", "application/json")
        .raw_body(r#"{"amount": 99999999999999999999999}"#)
        .send(&app)
        .await
        .problem(400, "VALIDATION_FAILED");
    assert_names(&detail, "amount");
    for body in [
        json!([USER_A.to_string()]),
        json!(USER_A.to_string()),
        json!(null),
    ] {
        let detail = post("/v1/queue/tokens")
            .json(&body)
            .send(&app)
            .await
            .problem(400, "VALIDATION_FAILED");
        assert_names(&detail, "object");
    }
}

#[tokio::test]
async fn a_bad_uuid_in_the_path_is_named() {
    let app = app().await;
    for uri in [
        "/v1/users/not-a-uuid/points",
        "/v1/users/123/points/history",
        "/v1/users/%FF%FE/points",
    ] {
        let detail = get(uri).send(&app).await.problem(400, "VALIDATION_FAILED");
        assert_names(&detail, "userId");
    }
    let detail = post("/v1/users/zzz/points/charge")
        .json(&json!({ "amount": 1 }))
        .send(&app)
        .await
        .problem(400, "VALIDATION_FAILED");
    assert_names(&detail, "userId");
}

#[tokio::test]
async fn a_bad_date_is_named_in_the_path_and_in_the_body() {
    let app = app().await;
    for date in [
        "2026-13-01",
        "2026-02-30",
        "tomorrow",
        "24-12-2026",
        "2026-1-1",
    ] {
        let detail = get(&format!("/v1/concerts/1/dates/{date}/seats"))
            .bearer(TOKEN_ACTIVE)
            .send(&app)
            .await
            .problem(400, "VALIDATION_FAILED");
        assert_names(&detail, "date");
        let detail = hold()
            .json(&json!({ "concertId": 1, "date": date, "seatNo": 1 }))
            .send(&app)
            .await
            .problem(400, "VALIDATION_FAILED");
        assert_names(&detail, "date");
    }
}

#[tokio::test]
async fn zero_negative_or_non_numeric_ids_in_a_path_are_named() {
    let app = app().await;
    for id in ["0", "-1", "abc", "1.5", "99999999999999999999", "%20"] {
        let detail = get(&format!("/v1/reservations/{id}"))
            .bearer(TOKEN_ACTIVE)
            .send(&app)
            .await
            .problem(400, "VALIDATION_FAILED");
        assert_names(&detail, "reservationId");
        let detail = delete(&format!("/v1/reservations/{id}"))
            .bearer(TOKEN_ACTIVE)
            .send(&app)
            .await
            .problem(400, "VALIDATION_FAILED");
        assert_names(&detail, "reservationId");
        let detail = get(&format!("/v1/concerts/{id}/dates"))
            .bearer(TOKEN_ACTIVE)
            .send(&app)
            .await
            .problem(400, "VALIDATION_FAILED");
        assert_names(&detail, "concertId");
        let detail = get(&format!("/v1/concerts/{id}/dates/2026-12-24/seats"))
            .bearer(TOKEN_ACTIVE)
            .send(&app)
            .await
            .problem(400, "VALIDATION_FAILED");
        assert_names(&detail, "concertId");
    }
}

#[tokio::test]
async fn a_body_over_64_kib_is_too_large() {
    let app = app().await;
    let padding = "x".repeat(crate::MAX_BODY_BYTES);
    let body = json!({ "concertId": 1, "date": "2026-12-24", "seatNo": 1, "padding": padding });
    hold()
        .json(&body)
        .send(&app)
        .await
        .problem(413, "PAYLOAD_TOO_LARGE");
    post("/v1/queue/tokens")
        .json(&json!({ "userId": USER_A.to_string(), "padding": padding }))
        .send(&app)
        .await
        .problem(413, "PAYLOAD_TOO_LARGE");
    let just_under = "x".repeat(crate::MAX_BODY_BYTES - 100);
    post("/v1/queue/tokens")
        .json(&json!({ "userId": USER_A.to_string(), "padding": just_under }))
        .send(&app)
        .await
        .ok(200);
}

#[tokio::test]
async fn a_json_body_needs_a_json_content_type() {
    let app = app().await;
    let body = json!({ "userId": USER_A.to_string() }).to_string();
    post("/v1/queue/tokens")
        .raw_body(body.clone())
        .send(&app)
        .await
        .problem(415, "UNSUPPORTED_MEDIA_TYPE");
    post("/v1/queue/tokens")
        .header("content-type", "text/plain")
        .raw_body(body.clone())
        .send(&app)
        .await
        .problem(415, "UNSUPPORTED_MEDIA_TYPE");
    post("/v1/queue/tokens")
        .header("content-type", "application/x-www-form-urlencoded")
        .raw_body("userId=x")
        .send(&app)
        .await
        .problem(415, "UNSUPPORTED_MEDIA_TYPE");
    post("/v1/queue/tokens")
        .header("content-type", "application/json; charset=utf-8")
        .raw_body(body)
        .send(&app)
        .await
        .ok(200);
}

#[tokio::test]
async fn an_unknown_path_is_not_found() {
    let app = app().await;
    for uri in [
        "/index.html",
        "/v1",
        "/v1/concerts/1/nothing",
        "/v2/concerts",
        "/v1/concerts/",
        "/health",
    ] {
        get(uri).send(&app).await.problem(404, "NOT_FOUND");
    }
    post("/nowhere")
        .json(&json!({}))
        .send(&app)
        .await
        .problem(404, "NOT_FOUND");
}

#[tokio::test]
async fn a_wrong_method_is_not_allowed_and_says_what_is() {
    let app = app().await;
    for (method, uri) in [
        (Method::GET, "/v1/queue/tokens"),
        (Method::POST, "/v1/queue/status"),
        (Method::PUT, "/v1/reservations/41"),
        (Method::PATCH, "/v1/payments"),
        (Method::DELETE, "/v1/concerts"),
        (Method::POST, "/health/live"),
        (
            Method::GET,
            "/v1/users/00000000-0000-0000-0000-00000000000a/points/charge",
        ),
    ] {
        let answer = call(method.clone(), uri).send(&app).await;
        answer.problem(405, "METHOD_NOT_ALLOWED");
        assert!(
            answer.header("allow").is_some(),
            "{method} {uri}: no Allow header"
        );
    }
    let answer = call(Method::PUT, "/v1/reservations/41").send(&app).await;
    let allow = answer.header("allow").expect("allow");
    assert!(allow.contains("GET") && allow.contains("DELETE"), "{allow}");
}

#[tokio::test]
async fn an_invalid_idempotency_key_is_named() {
    let app = app().await;
    let too_long = "k".repeat(65);
    for key in ["", "has space", too_long.as_str(), "tab\there"] {
        let detail = post(&format!("/v1/users/{USER_A}/points/charge"))
            .header("Idempotency-Key", key)
            .json(&json!({ "amount": 1 }))
            .send(&app)
            .await
            .problem(400, "VALIDATION_FAILED");
        assert_names(&detail, "Idempotency-Key");
        let detail = post("/v1/payments")
            .bearer(TOKEN_ACTIVE)
            .header("Idempotency-Key", key)
            .json(&json!({ "reservationId": HELD_A }))
            .send(&app)
            .await
            .problem(400, "VALIDATION_FAILED");
        assert_names(&detail, "Idempotency-Key");
    }
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("/v1/users/{USER_A}/points/charge"))
        .header("content-type", "application/json")
        .header(
            "Idempotency-Key",
            axum::http::HeaderValue::from_bytes(b"caf\xc3\xa9").expect("value"),
        )
        .body(Body::from(r#"{"amount": 1}"#))
        .expect("request");
    let response = app.clone().oneshot(request).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let detail = post(&format!("/v1/users/{USER_A}/points/charge"))
        .header("Idempotency-Key", "one")
        .header("Idempotency-Key", "two")
        .json(&json!({ "amount": 1 }))
        .send(&app)
        .await
        .problem(400, "VALIDATION_FAILED");
    assert_names(&detail, "Idempotency-Key");
}

#[tokio::test]
async fn a_request_target_over_8_kib_is_too_long() {
    let app = app().await;
    let query = "x".repeat(crate::framing::MAX_URI_BYTES);
    let answer = get(&format!("/v1/concerts?padding={query}"))
        .send(&app)
        .await;
    answer.problem(414, "URI_TOO_LONG");
    assert!(answer.header("x-request-id").is_some());
    let just_under = "x".repeat(crate::framing::MAX_URI_BYTES - 100);
    get(&format!("/health/live?padding={just_under}"))
        .send(&app)
        .await
        .ok(200);
}

#[tokio::test]
async fn headers_over_the_limits_are_too_large() {
    let app = app().await;
    let mut many = get("/health/live");
    for line in 0..=crate::framing::MAX_HEADER_COUNT {
        many = many.header(&format!("x-filler-{line}"), "1");
    }
    let answer = many.send(&app).await;
    answer.problem(431, "HEADERS_TOO_LARGE");
    assert!(answer.header("x-request-id").is_some());

    let cookie = "c".repeat(crate::framing::MAX_HEADER_BYTES);
    get("/health/live")
        .header("cookie", &cookie)
        .send(&app)
        .await
        .problem(431, "HEADERS_TOO_LARGE");
    let just_under = "c".repeat(crate::framing::MAX_HEADER_BYTES - 200);
    get("/health/live")
        .header("cookie", &just_under)
        .send(&app)
        .await
        .ok(200);
}

#[tokio::test]
async fn an_answer_given_before_the_body_was_read_says_connection_close() {
    let app = app().await;
    // A body that arrives in parts, as from a socket, of which only the first 64 KiB are read.
    let part = || Ok::<_, std::io::Error>(axum::body::Bytes::from(vec![b' '; 16 * 1024]));
    let parts = futures::stream::iter(std::iter::repeat_with(part).take(8));
    let too_large = post("/v1/queue/tokens")
        .header("content-type", "application/json")
        .raw_body(Body::from_stream(parts))
        .send(&app)
        .await;
    too_large.problem(413, "PAYLOAD_TOO_LARGE");
    assert_eq!(too_large.header("connection"), Some("close"));

    // Refused on its token alone: the body is never read.
    let refused = post("/v1/reservations")
        .bearer("not-a-token")
        .json(&json!({ "concertId": 1, "date": "2026-12-24", "seatNo": 1 }))
        .send(&app)
        .await;
    refused.problem(401, "TOKEN_INVALID");
    assert_eq!(refused.header("connection"), Some("close"));

    // A body read to its end, or none at all, leaves the connection open.
    let joined = post("/v1/queue/tokens")
        .json(&json!({ "userId": USER_A.to_string() }))
        .send(&app)
        .await;
    joined.ok(200);
    assert_eq!(joined.header("connection"), None);
    let live = get("/health/live").send(&app).await;
    assert_eq!(live.header("connection"), None);
}
