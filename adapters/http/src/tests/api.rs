//! Every endpoint of docs/API.md sections 1–7 through the real router: success shapes and the
//! business refusals of each.

use serde_json::json;

use super::*;

fn user_a() -> String {
    USER_A.to_string()
}

// Section 1: the waiting queue.

#[tokio::test]
async fn issuing_a_token_answers_201_for_a_new_one_and_200_for_the_live_one() {
    let app = app().await;
    let fresh = post("/v1/queue/tokens")
        .json(&json!({ "userId": USER_B.to_string() }))
        .send(&app)
        .await;
    let body = fresh.ok(201);
    assert_eq!(body["token"], "signed-101");
    assert_eq!(body["status"], "WAITING");
    assert_eq!(body["position"], 91);
    assert!(body["estimatedWaitSeconds"].as_u64().is_some());
    assert_eq!(body["activeUntil"], Value::Null);

    let again = post("/v1/queue/tokens")
        .json(&json!({ "userId": user_a() }))
        .send(&app)
        .await;
    let body = again.ok(200);
    assert_eq!(body["token"], "signed-100");
    assert_eq!(body["position"], 90);
    for answer in [&fresh, &again] {
        assert_eq!(answer.header("cache-control"), Some("no-store"));
    }
}

#[tokio::test]
async fn issuing_a_token_refuses_a_user_id_that_is_not_a_uuid() {
    let app = app().await;
    let answer = post("/v1/queue/tokens")
        .json(&json!({ "userId": "not-a-uuid" }))
        .send(&app)
        .await;
    assert!(answer.problem(400, "VALIDATION_FAILED").contains("userId"));
}

#[tokio::test]
async fn waiting_status_carries_a_retry_after_that_grows_with_the_position() {
    let app = app().await;
    let near = get("/v1/queue/status")
        .bearer(TOKEN_WAITING)
        .send(&app)
        .await;
    let body = near.ok(200);
    assert_eq!(body["status"], "WAITING");
    assert_eq!(body["position"], 90);
    assert_eq!(body["activeUntil"], Value::Null);
    assert!(body.get("token").is_none());
    let near_retry: u32 = near
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=2).contains(&near_retry));

    let far = get("/v1/queue/status")
        .bearer(TOKEN_WAITING_FAR)
        .send(&app)
        .await;
    assert_eq!(far.ok(200)["position"], 1000);
    let far_retry: u32 = far
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!(far_retry > near_retry && far_retry <= 30);
}

#[tokio::test]
async fn active_status_has_an_active_until_in_utc_and_no_retry_after() {
    let app = app().await;
    let answer = get("/v1/queue/status")
        .bearer(TOKEN_ACTIVE)
        .send(&app)
        .await;
    let body = answer.ok(200);
    assert_eq!(body["status"], "ACTIVE");
    assert_eq!(body["position"], Value::Null);
    assert_eq!(body["estimatedWaitSeconds"], Value::Null);
    assert_eq!(body["activeUntil"], "2026-06-01T12:10:00Z");
    assert!(answer.header("retry-after").is_none());
}

#[tokio::test]
async fn an_expired_token_still_reads_its_status() {
    let app = app().await;
    let answer = get("/v1/queue/status")
        .bearer(TOKEN_EXPIRED)
        .send(&app)
        .await;
    let body = answer.ok(200);
    assert_eq!(body["status"], "EXPIRED");
    assert_eq!(body["reason"], "PAID");
    assert_eq!(body["activeUntil"], Value::Null);
    assert!(answer.header("retry-after").is_none());
}

#[tokio::test]
async fn a_live_status_has_no_reason() {
    let app = app().await;
    for token in [TOKEN_ACTIVE, TOKEN_WAITING] {
        let body = get("/v1/queue/status")
            .bearer(token)
            .send(&app)
            .await
            .ok(200);
        assert!(body.get("reason").is_none(), "{body}");
    }
}

#[tokio::test]
async fn leaving_the_line_answers_204_and_needs_a_live_or_left_token() {
    let app = app().await;
    for token in [TOKEN_ACTIVE, TOKEN_WAITING] {
        let answer = delete("/v1/queue/tokens/current")
            .bearer(token)
            .send(&app)
            .await;
        assert_eq!(answer.status, 204, "{token}");
        assert!(answer.body.is_empty());
    }
    delete("/v1/queue/tokens/current")
        .bearer(TOKEN_EXPIRED)
        .send(&app)
        .await
        .problem(401, "TOKEN_EXPIRED");
    delete("/v1/queue/tokens/current")
        .send(&app)
        .await
        .problem(401, "TOKEN_INVALID");
    delete("/v1/queue/tokens/current")
        .bearer(TOKEN_UNKNOWN)
        .send(&app)
        .await
        .problem(401, "TOKEN_INVALID");
}

#[tokio::test]
async fn queue_status_refuses_a_missing_or_forged_token() {
    let app = app().await;
    get("/v1/queue/status")
        .send(&app)
        .await
        .problem(401, "TOKEN_INVALID");
    let forged = get("/v1/queue/status").bearer("forged").send(&app).await;
    forged.problem(401, "TOKEN_INVALID");
    assert!(
        forged
            .header("www-authenticate")
            .is_some_and(|v| v.starts_with("Bearer"))
    );
    get("/v1/queue/status")
        .header("authorization", "Basic dXNlcjpwYXNz")
        .send(&app)
        .await
        .problem(401, "TOKEN_INVALID");
}

#[tokio::test]
async fn protected_endpoints_answer_by_the_token_status() {
    let app = app().await;
    for uri in [
        "/v1/concerts",
        "/v1/concerts/1/dates",
        "/v1/reservations/41",
    ] {
        get(uri).send(&app).await.problem(401, "TOKEN_INVALID");
        get(uri)
            .bearer("garbage")
            .send(&app)
            .await
            .problem(401, "TOKEN_INVALID");
        get(uri)
            .bearer(TOKEN_UNKNOWN)
            .send(&app)
            .await
            .problem(401, "TOKEN_INVALID");
        get(uri)
            .bearer(TOKEN_EXPIRED)
            .send(&app)
            .await
            .problem(401, "TOKEN_EXPIRED");
        get(uri)
            .bearer(TOKEN_WAITING)
            .send(&app)
            .await
            .problem(403, "QUEUE_NOT_ACTIVE");
    }
}

#[tokio::test]
async fn the_token_is_checked_before_the_body() {
    let app = app().await;
    post("/v1/reservations")
        .bearer(TOKEN_WAITING)
        .raw_body("{not json")
        .send(&app)
        .await
        .problem(403, "QUEUE_NOT_ACTIVE");
    post("/v1/payments")
        .bearer(TOKEN_WAITING)
        .header("content-type", "application/json")
        .raw_body("{not json")
        .send(&app)
        .await
        .problem(403, "QUEUE_NOT_ACTIVE");
    post("/v1/payments")
        .bearer(TOKEN_EXPIRED)
        .header("idempotency-key", "")
        .json(&json!({ "reservationId": HELD_A }))
        .send(&app)
        .await
        .problem(401, "TOKEN_EXPIRED");
}

// Section 2: the catalog.

#[tokio::test]
async fn concerts_are_listed() {
    let app = app().await;
    let body = get("/v1/concerts")
        .bearer(TOKEN_ACTIVE)
        .send(&app)
        .await
        .ok(200);
    assert_eq!(body, json!([{ "concertId": 1, "title": "Winter Gala" }]));
}

#[tokio::test]
async fn dates_of_a_concert_are_listed_or_the_concert_is_not_found() {
    let app = app().await;
    let body = get("/v1/concerts/1/dates")
        .bearer(TOKEN_ACTIVE)
        .send(&app)
        .await
        .ok(200);
    assert_eq!(
        body,
        json!({ "concertId": 1, "dates": [{ "date": "2026-12-24", "availableSeats": 37 }] })
    );
    get("/v1/concerts/99/dates")
        .bearer(TOKEN_ACTIVE)
        .send(&app)
        .await
        .problem(404, "CONCERT_NOT_FOUND");
}

#[tokio::test]
async fn seats_of_a_date_are_listed() {
    let app = app().await;
    let body = get("/v1/concerts/1/dates/2026-12-24/seats")
        .bearer(TOKEN_ACTIVE)
        .send(&app)
        .await
        .ok(200);
    assert_eq!(body["concertId"], 1);
    assert_eq!(body["date"], "2026-12-24");
    assert_eq!(body["totalSeats"], 50);
    assert_eq!(body["seats"][0], json!({ "seatNo": 1, "price": 120000 }));
    assert_eq!(body["seats"].as_array().map(Vec::len), Some(3));
}

#[tokio::test]
async fn the_seat_map_shows_every_seat_free_held_or_sold() {
    let app = app().await;
    let body = get("/v1/concerts/1/dates/2026-12-24/seat-map")
        .bearer(TOKEN_ACTIVE)
        .send(&app)
        .await
        .ok(200);
    assert_eq!(
        (&body["concertId"], &body["date"]),
        (&1.into(), &"2026-12-24".into())
    );
    let states: Vec<&Value> = body["seats"]
        .as_array()
        .expect("seats")
        .iter()
        .map(|seat| &seat["state"])
        .collect();
    assert_eq!(states, vec!["FREE", "HELD", "SOLD"]);
    assert_eq!(
        body["seats"][0],
        json!({ "seatNo": 1, "price": 120000, "state": "FREE" })
    );
    get("/v1/concerts/1/dates/2026-12-25/seat-map")
        .bearer(TOKEN_ACTIVE)
        .send(&app)
        .await
        .problem(404, "DATE_NOT_FOUND");
    get("/v1/concerts/1/dates/2026-12-24/seat-map")
        .bearer(TOKEN_WAITING)
        .send(&app)
        .await
        .problem(403, "QUEUE_NOT_ACTIVE");
}

#[tokio::test]
async fn seats_of_a_missing_concert_or_date_are_not_found() {
    let app = app().await;
    get("/v1/concerts/99/dates/2026-12-24/seats")
        .bearer(TOKEN_ACTIVE)
        .send(&app)
        .await
        .problem(404, "CONCERT_NOT_FOUND");
    get("/v1/concerts/1/dates/2026-12-25/seats")
        .bearer(TOKEN_ACTIVE)
        .send(&app)
        .await
        .problem(404, "DATE_NOT_FOUND");
}

// Section 3: reservations.

#[tokio::test]
async fn holding_a_seat_answers_201_with_the_reservation() {
    let app = app().await;
    let answer = post("/v1/reservations")
        .bearer(TOKEN_ACTIVE)
        .json(&json!({ "concertId": 1, "date": "2026-12-24", "seatNo": 3 }))
        .send(&app)
        .await;
    assert_eq!(
        answer.ok(201),
        json!({
            "reservationId": 41, "concertId": 1, "date": "2026-12-24", "seatNo": 3,
            "price": 120000, "status": "HELD", "expiresAt": "2026-06-01T12:05:00Z"
        })
    );
}

#[tokio::test]
async fn holding_a_seat_reports_each_refusal() {
    let app = app().await;
    let hold = |body: Value| post("/v1/reservations").bearer(TOKEN_ACTIVE).json(&body);
    let detail = hold(json!({ "concertId": 1, "date": "2026-12-24", "seatNo": SEAT_TAKEN }))
        .send(&app)
        .await
        .problem(409, "SEAT_UNAVAILABLE");
    assert!(detail.contains("seat 7"), "{detail}");
    hold(json!({ "concertId": 1, "date": "2026-12-24", "seatNo": SEAT_OVER_LIMIT }))
        .send(&app)
        .await
        .problem(409, "HOLD_LIMIT_REACHED");
    let detail = hold(json!({ "concertId": 1, "date": "2026-12-24", "seatNo": 51 }))
        .send(&app)
        .await
        .problem(400, "VALIDATION_FAILED");
    assert!(detail.contains("seatNo"), "{detail}");
    hold(json!({ "concertId": 99, "date": "2026-12-24", "seatNo": 1 }))
        .send(&app)
        .await
        .problem(404, "CONCERT_NOT_FOUND");
    hold(json!({ "concertId": 1, "date": "2026-12-31", "seatNo": 1 }))
        .send(&app)
        .await
        .problem(404, "DATE_NOT_FOUND");
    hold(json!({ "concertId": 1, "date": "2026-01-10", "seatNo": 1 }))
        .send(&app)
        .await
        .problem(404, "DATE_NOT_FOUND");
    let detail = hold(json!({ "concertId": 0, "date": "2026-12-24", "seatNo": 1 }))
        .send(&app)
        .await
        .problem(400, "VALIDATION_FAILED");
    assert!(detail.contains("concertId"), "{detail}");
}

#[tokio::test]
async fn a_reservation_is_read_by_its_user_only() {
    let app = app().await;
    let body = get("/v1/reservations/41")
        .bearer(TOKEN_ACTIVE)
        .send(&app)
        .await
        .ok(200);
    assert_eq!(body["reservationId"], 41);
    assert_eq!(body["status"], "HELD");
    let lapsed = get("/v1/reservations/44")
        .bearer(TOKEN_ACTIVE)
        .send(&app)
        .await
        .ok(200);
    assert_eq!(lapsed["status"], "EXPIRED");
    get("/v1/reservations/42")
        .bearer(TOKEN_ACTIVE)
        .send(&app)
        .await
        .problem(404, "RESERVATION_NOT_FOUND");
    get("/v1/reservations/999")
        .bearer(TOKEN_ACTIVE)
        .send(&app)
        .await
        .problem(404, "RESERVATION_NOT_FOUND");
    let theirs = get("/v1/reservations/42")
        .bearer(TOKEN_ACTIVE_B)
        .send(&app)
        .await
        .ok(200);
    assert_eq!(theirs["reservationId"], 42);
}

#[tokio::test]
async fn cancelling_answers_the_cancelled_reservation_or_the_refusal() {
    let app = app().await;
    let body = delete("/v1/reservations/41")
        .bearer(TOKEN_ACTIVE)
        .send(&app)
        .await
        .ok(200);
    assert_eq!(body["status"], "CANCELLED");
    delete("/v1/reservations/43")
        .bearer(TOKEN_ACTIVE)
        .send(&app)
        .await
        .problem(409, "RESERVATION_NOT_HELD");
    delete("/v1/reservations/42")
        .bearer(TOKEN_ACTIVE)
        .send(&app)
        .await
        .problem(404, "RESERVATION_NOT_FOUND");
}

// Section 4: points.

fn charge(user: &str) -> Call {
    post(&format!("/v1/users/{user}/points/charge"))
}

#[tokio::test]
async fn charging_answers_the_new_balance() {
    let app = app().await;
    let body = charge(&user_a())
        .json(&json!({ "amount": 50_000 }))
        .send(&app)
        .await
        .ok(200);
    assert_eq!(
        body,
        json!({ "userId": user_a(), "balance": BALANCE + 50_000 })
    );
}

#[tokio::test]
async fn charging_with_a_known_key_replays_the_first_answer() {
    let app = app().await;
    let body = charge(&user_a())
        .header("Idempotency-Key", KEY_REPLAYED)
        .json(&json!({ "amount": 500 }))
        .send(&app)
        .await
        .ok(200);
    assert_eq!(body["balance"], 777);
}

#[tokio::test]
async fn charging_reports_each_refusal() {
    let app = app().await;
    let detail = charge(&user_a())
        .json(&json!({ "amount": 0 }))
        .send(&app)
        .await
        .problem(400, "VALIDATION_FAILED");
    assert!(detail.contains("amount"), "{detail}");
    charge(&user_a())
        .json(&json!({ "amount": -5 }))
        .send(&app)
        .await
        .problem(400, "VALIDATION_FAILED");
    charge(&user_a())
        .json(&json!({ "amount": MAX_CHARGE + 1 }))
        .send(&app)
        .await
        .problem(400, "VALIDATION_FAILED");
    charge(&user_a())
        .json(&json!({ "amount": MAX_BALANCE - BALANCE + 1 }))
        .send(&app)
        .await
        .problem(409, "BALANCE_LIMIT_EXCEEDED");
    charge(&user_a())
        .header("Idempotency-Key", KEY_REUSED)
        .json(&json!({ "amount": 500 }))
        .send(&app)
        .await
        .problem(409, "IDEMPOTENCY_KEY_REUSED");
}

#[tokio::test]
async fn balance_and_history_are_read() {
    let app = app().await;
    let body = get(&format!("/v1/users/{}/points", user_a()))
        .send(&app)
        .await
        .ok(200);
    assert_eq!(body, json!({ "userId": user_a(), "balance": BALANCE }));

    let body = get(&format!("/v1/users/{}/points/history", user_a()))
        .send(&app)
        .await
        .ok(200);
    assert_eq!(body["userId"], user_a());
    assert_eq!(
        body["entries"][0],
        json!({
            "entryId": 3, "kind": "CHARGE", "amount": 1000, "balanceAfter": 3000,
            "at": "2026-06-01T11:00:00Z"
        })
    );
    let page = get(&format!(
        "/v1/users/{}/points/history?limit=1&before=3",
        user_a()
    ))
    .send(&app)
    .await
    .ok(200);
    assert_eq!(page["entries"].as_array().map(Vec::len), Some(1));
    assert_eq!(page["entries"][0]["entryId"], 2);
}

#[tokio::test]
async fn history_refuses_out_of_range_paging() {
    let app = app().await;
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=abc", "limit"),
        ("limit=", "limit"),
        ("limit=99999999999999999999", "limit"),
        ("before=0", "before"),
        ("before=-3", "before"),
        ("before=x", "before"),
    ] {
        let detail = get(&format!("/v1/users/{}/points/history?{query}", user_a()))
            .send(&app)
            .await
            .problem(400, "VALIDATION_FAILED");
        assert!(detail.contains(field), "{query}: {detail}");
    }
}

// Section 5: payments.

fn pay(token: &str, reservation: i64) -> Call {
    post("/v1/payments")
        .bearer(token)
        .json(&json!({ "reservationId": reservation }))
}

#[tokio::test]
async fn paying_answers_201_with_the_receipt() {
    let app = app().await;
    let body = pay(TOKEN_ACTIVE, HELD_A).send(&app).await.ok(201);
    assert_eq!(
        body,
        json!({
            "paymentId": 9, "reservationId": 41, "amount": 120000,
            "balance": BALANCE - 120_000, "paidAt": "2026-06-01T12:00:00Z"
        })
    );
}

#[tokio::test]
async fn paying_reports_each_refusal() {
    let app = app().await;
    pay(TOKEN_ACTIVE, EXPENSIVE_A)
        .send(&app)
        .await
        .problem(409, "INSUFFICIENT_BALANCE");
    pay(TOKEN_ACTIVE, LAPSED_A)
        .send(&app)
        .await
        .problem(409, "RESERVATION_EXPIRED");
    pay(TOKEN_ACTIVE, CONFIRMED_A)
        .send(&app)
        .await
        .problem(409, "RESERVATION_NOT_HELD");
    pay(TOKEN_ACTIVE, HELD_B)
        .send(&app)
        .await
        .problem(404, "RESERVATION_NOT_FOUND");
    pay(TOKEN_ACTIVE, 999)
        .send(&app)
        .await
        .problem(404, "RESERVATION_NOT_FOUND");
    pay(TOKEN_EXPIRED, HELD_A)
        .send(&app)
        .await
        .problem(401, "TOKEN_EXPIRED");
    pay(TOKEN_WAITING, HELD_A)
        .send(&app)
        .await
        .problem(403, "QUEUE_NOT_ACTIVE");
    pay("forged", HELD_A)
        .send(&app)
        .await
        .problem(401, "TOKEN_INVALID");
    pay(TOKEN_ACTIVE, HELD_A)
        .header("Idempotency-Key", KEY_REUSED)
        .send(&app)
        .await
        .problem(409, "IDEMPOTENCY_KEY_REUSED");
    let detail = pay(TOKEN_ACTIVE, 0)
        .send(&app)
        .await
        .problem(400, "VALIDATION_FAILED");
    assert!(detail.contains("reservationId"), "{detail}");
}

#[tokio::test]
async fn a_payment_retry_with_its_key_succeeds_even_with_the_expired_token() {
    let app = app().await;
    let answer = post("/v1/payments")
        .bearer(TOKEN_EXPIRED)
        .header("Idempotency-Key", KEY_REPLAYED)
        .json(&json!({ "reservationId": HELD_A }))
        .send(&app)
        .await;
    assert_eq!(answer.ok(201)["paymentId"], 9);
}

// Section 6: administration.

fn new_concert() -> Value {
    json!({
        "title": "Winter Gala",
        "dates": [{ "date": "2026-12-24", "price": 120_000, "seatCount": 50 },
                  { "date": "2026-12-25", "price": 90_000 }]
    })
}

#[tokio::test]
async fn an_administrator_creates_a_concert() {
    let app = app().await;
    let body = post("/v1/admin/concerts")
        .bearer(ADMIN_KEY)
        .json(&new_concert())
        .send(&app)
        .await
        .ok(201);
    assert_eq!(body, json!({ "concertId": 3 }));
}

#[tokio::test]
async fn creating_a_concert_needs_the_admin_key_before_anything_else() {
    let app = app().await;
    let admin = || post("/v1/admin/concerts");
    admin()
        .json(&new_concert())
        .send(&app)
        .await
        .problem(401, "ADMIN_KEY_INVALID");
    admin()
        .bearer("wrong")
        .json(&new_concert())
        .send(&app)
        .await
        .problem(401, "ADMIN_KEY_INVALID");
    admin()
        .bearer(TOKEN_ACTIVE)
        .json(&new_concert())
        .send(&app)
        .await
        .problem(401, "ADMIN_KEY_INVALID");
    admin()
        .bearer("wrong")
        .raw_body("{ broken")
        .send(&app)
        .await
        .problem(401, "ADMIN_KEY_INVALID");
    admin()
        .header("authorization", ADMIN_KEY)
        .json(&new_concert())
        .send(&app)
        .await
        .problem(401, "ADMIN_KEY_INVALID");
}

#[tokio::test]
async fn creating_a_concert_validates_the_body() {
    let app = app().await;
    let create = |body: Value| post("/v1/admin/concerts").bearer(ADMIN_KEY).json(&body);
    for (body, field) in [
        (
            json!({ "title": " ", "dates": [{ "date": "2026-12-24", "price": 1 }] }),
            "title",
        ),
        (json!({ "title": "T", "dates": [] }), "dates"),
        (
            json!({ "title": "T", "dates": [{ "date": "2026-01-01", "price": 1 }] }),
            "dates",
        ),
        (
            json!({ "title": "T", "dates": [{ "date": "2026-12-24", "price": -1 }] }),
            "price",
        ),
        (
            json!({ "title": "T", "dates": [{ "date": "2026-12-24", "price": 1, "seatCount": 0 }] }),
            "seatCount",
        ),
        (
            json!({ "title": "T", "dates": [{ "date": "2026-12-24", "price": 1, "seatCount": 1001 }] }),
            "seatCount",
        ),
        (
            json!({ "title": "T", "dates": [{ "date": "2026-12-32", "price": 1 }] }),
            "dates[0].date",
        ),
        (json!({ "title": "T" }), "dates"),
        (json!({ "dates": [] }), "title"),
    ] {
        let detail = create(body.clone())
            .send(&app)
            .await
            .problem(400, "VALIDATION_FAILED");
        assert!(detail.contains(field), "{body}: {detail}");
    }
    create(json!({
        "title": "T",
        "dates": [{ "date": "2026-12-24", "price": 1 }, { "date": "2026-12-24", "price": 2 }]
    }))
    .send(&app)
    .await
    .problem(400, "VALIDATION_FAILED");
}

// Section 7: operations, and failures of the infrastructure.

#[tokio::test]
async fn liveness_and_readiness_answer_ok() {
    let app = app().await;
    assert_eq!(
        get("/health/live").send(&app).await.ok(200),
        json!({ "status": "ok" })
    );
    assert_eq!(
        get("/health/ready").send(&app).await.ok(200),
        json!({ "status": "ok" })
    );
}

#[tokio::test]
async fn readiness_answers_503_when_the_database_is_down() {
    let app = app_with(Scenario {
        not_ready: true,
        ..Scenario::default()
    })
    .await;
    let answer = get("/health/ready").send(&app).await;
    answer.problem(503, "SERVICE_UNAVAILABLE");
    assert_eq!(get("/health/live").send(&app).await.status, StatusCode::OK);
}

#[tokio::test]
async fn metrics_are_served_as_prometheus_text() {
    let app = app().await;
    let answer = get("/metrics").send(&app).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(
        answer
            .content_type()
            .starts_with("text/plain; version=0.0.4")
    );
    assert!(String::from_utf8_lossy(&answer.body).contains("payments_total 3"));
}

#[tokio::test]
async fn the_openapi_document_and_the_docs_page_are_served() {
    let app = app().await;
    let document = get("/openapi.json").send(&app).await.ok(200);
    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1"))
    );
    assert_eq!(
        document,
        serde_json::to_value(crate::openapi()).expect("json")
    );

    let redirect = get("/docs").send(&app).await;
    assert!(redirect.status.is_redirection());
    let page = get("/docs/").send(&app).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.content_type().starts_with("text/html"));
    let config = get("/docs/swagger-initializer.js").send(&app).await;
    assert_eq!(config.status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&config.body).contains("/openapi.json"));
    get("/docs/no-such-file.js")
        .send(&app)
        .await
        .problem(404, "NOT_FOUND");
}

#[tokio::test]
async fn an_unreachable_database_answers_503_with_retry_after() {
    let app = app_with(Scenario {
        catalog_failure: Some(Failure::Unavailable),
        ..Scenario::default()
    })
    .await;
    let answer = get("/v1/concerts").bearer(TOKEN_ACTIVE).send(&app).await;
    answer.problem(503, "SERVICE_UNAVAILABLE");
    assert_eq!(answer.header("retry-after"), Some("1"));
}

#[tokio::test]
async fn an_unexpected_repository_error_answers_a_generic_500() {
    let app = app_with(Scenario {
        catalog_failure: Some(Failure::Unexpected),
        ..Scenario::default()
    })
    .await;
    let answer = get("/v1/concerts").bearer(TOKEN_ACTIVE).send(&app).await;
    let detail = answer.problem(500, "INTERNAL_ERROR");
    assert!(!detail.contains("connection reset"), "{detail}");
    assert!(answer.header("x-request-id").is_some());
}

#[tokio::test]
async fn a_panic_answers_a_problem_500_with_a_request_id() {
    let app = app().await;
    let answer = get(&format!("/v1/users/{USER_PANIC}/points"))
        .header("x-request-id", "panic-1")
        .send(&app)
        .await;
    answer.problem(500, "INTERNAL_ERROR");
    assert_eq!(answer.header("x-request-id"), Some("panic-1"));
}

#[tokio::test]
async fn a_sane_request_id_is_echoed_and_any_other_replaced() {
    let app = app().await;
    let echoed = get("/health/live")
        .header("x-request-id", "abc-123")
        .send(&app)
        .await;
    assert_eq!(echoed.header("x-request-id"), Some("abc-123"));

    let generated = get("/health/live").send(&app).await;
    let id = generated.header("x-request-id").expect("x-request-id");
    assert!(
        Uuid::parse_str(id).is_ok_and(|id| id.get_version_num() == 4),
        "{id}"
    );

    let too_long = "x".repeat(129);
    for bad in ["with space", too_long.as_str()] {
        let replaced = get("/health/live")
            .header("x-request-id", bad)
            .send(&app)
            .await;
        let id = replaced.header("x-request-id").expect("x-request-id");
        assert!(Uuid::parse_str(id).is_ok(), "{bad} → {id}");
    }

    let on_error = get("/nowhere")
        .header("x-request-id", "err-9")
        .send(&app)
        .await;
    assert_eq!(on_error.header("x-request-id"), Some("err-9"));
}

/// Sends one raw HTTP/1.1 request over a socket and returns the raw answer.
async fn raw_exchange(address: std::net::SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    stream.write_all(request).await.expect("write");
    let mut answer = Vec::new();
    // The server may answer before it has read the whole body; read what it sends until close.
    let _ = stream.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn the_router_serves_over_a_real_socket() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let app = app().await;
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let answer = raw_exchange(
        address,
        b"GET /health/live HTTP/1.1\r\nhost: test\r\nx-request-id: sock-1\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("x-request-id: sock-1"), "{answer}");

    let body = format!(
        "{{\"userId\": \"{USER_A}\", \"padding\": \"{}\"}}",
        "x".repeat(70_000)
    );
    let request = format!(
        "POST /v1/queue/tokens HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let answer = raw_exchange(address, request.as_bytes()).await;
    assert!(
        answer.starts_with("HTTP/1.1 413"),
        "{}",
        &answer[..answer.len().min(400)]
    );
    assert!(
        answer.contains("content-type: application/problem+json"),
        "{answer}"
    );
    assert!(answer.contains("PAYLOAD_TOO_LARGE"), "{answer}");

    let chunked = format!(
        "POST /v1/queue/tokens HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    let answer = raw_exchange(address, chunked.as_bytes()).await;
    assert!(
        answer.starts_with("HTTP/1.1 413"),
        "{}",
        &answer[..answer.len().min(400)]
    );
    assert!(answer.contains("PAYLOAD_TOO_LARGE"), "{answer}");

    server.abort();
}

fn admin_call(method: Method, uri: &str) -> Call {
    call(method, uri).bearer(ADMIN_KEY)
}

#[tokio::test]
async fn an_operator_reads_and_changes_the_default_room() {
    let app = app().await;
    let listed = admin_call(Method::GET, "/v1/admin/rooms")
        .send(&app)
        .await
        .ok(200);
    assert_eq!(listed["rooms"][0]["roomId"], "default");
    assert_eq!(listed["rooms"][0]["maxActive"], 500);
    assert_eq!(listed["rooms"][0]["state"], "OPEN");

    let changed = admin_call(Method::PATCH, "/v1/admin/rooms/default")
        .json(&serde_json::json!({ "maxActive": 20, "state": "PAUSED" }))
        .send(&app)
        .await
        .ok(200);
    assert_eq!(
        (&changed["maxActive"], &changed["state"]),
        (&20.into(), &"PAUSED".into())
    );
    assert_eq!(changed["estimatedWaitSecondsAtBack"], Value::Null);
    let paced = admin_call(Method::PATCH, "/v1/admin/rooms/default")
        .json(&serde_json::json!({ "admitPerMinute": 600 }))
        .send(&app)
        .await
        .ok(200);
    assert_eq!(
        (&paced["admitPerMinute"], &paced["maxActive"]),
        (&600.into(), &20.into())
    );
    let unpaced = admin_call(Method::PATCH, "/v1/admin/rooms/default")
        .json(&serde_json::json!({ "admitPerMinute": null }))
        .send(&app)
        .await
        .ok(200);
    assert_eq!(unpaced["admitPerMinute"], Value::Null);
    assert_eq!(unpaced["waitingIdleSeconds"], Value::Null);
    let watched = admin_call(Method::PATCH, "/v1/admin/rooms/default")
        .json(&serde_json::json!({ "waitingIdleSeconds": 120 }))
        .send(&app)
        .await
        .ok(200);
    assert_eq!(watched["waitingIdleSeconds"], 120);
    let unwatched = admin_call(Method::PATCH, "/v1/admin/rooms/default")
        .json(&serde_json::json!({ "waitingIdleSeconds": null }))
        .send(&app)
        .await
        .ok(200);
    assert_eq!(unwatched["waitingIdleSeconds"], Value::Null);
    let read = admin_call(Method::GET, "/v1/admin/rooms/default")
        .send(&app)
        .await
        .ok(200);
    assert_eq!(read["maxActive"], 20);
    for member in ["waiting", "active", "issued", "admittedLastMinute"] {
        assert!(read[member].is_u64(), "{member}: {read}");
    }
}

#[tokio::test]
async fn room_changes_are_checked_key_first() {
    let app = app().await;
    call(Method::GET, "/v1/admin/rooms")
        .bearer("wrong-admin-key-0000")
        .send(&app)
        .await
        .problem(401, "ADMIN_KEY_INVALID");
    call(Method::PATCH, "/v1/admin/rooms/default")
        .bearer("wrong-admin-key-0000")
        .json(&serde_json::json!({ "maxActive": "many" }))
        .send(&app)
        .await
        .problem(401, "ADMIN_KEY_INVALID");
    for body in [
        serde_json::json!({ "maxActive": 0 }),
        serde_json::json!({ "state": "SHUT" }),
        serde_json::json!({ "admitPerMinute": 0 }),
        serde_json::json!({ "waitingIdleSeconds": 4 }),
        serde_json::json!({ "waitingIdleSeconds": "long" }),
        serde_json::json!({ "opensAt": "2026-12-24T18:00:00Z" }),
    ] {
        admin_call(Method::PATCH, "/v1/admin/rooms/default")
            .json(&body)
            .send(&app)
            .await
            .problem(400, "VALIDATION_FAILED");
    }
    admin_call(Method::GET, "/v1/admin/rooms/spring-gala")
        .send(&app)
        .await
        .problem(404, "ROOM_NOT_FOUND");
    admin_call(Method::PATCH, "/v1/admin/rooms/Spring")
        .json(&serde_json::json!({ "state": "OPEN" }))
        .send(&app)
        .await
        .problem(400, "VALIDATION_FAILED");
}
