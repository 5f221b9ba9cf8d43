//! The whole journey of docs/API.md: token → wait → active → dates → seats → hold → charge → pay →
//! token expired → next user admitted.

use std::time::Duration;

use concert_e2e::TestApp;
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread")]
async fn a_user_waits_books_pays_and_the_next_user_is_admitted() -> anyhow::Result<()> {
    let app = TestApp::spawn_with(|config| config.queue_max_active = 1).await?;
    let client = &app.client;
    let (concert, date) = client.concert_with_date(50, 120_000, 10).await?;

    // Two users ask for tokens: the first is admitted, the second waits at position 1.
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let alice_token = client.active_token(alice).await?;
    let bob_issued = client.issue_token(bob).await?;
    assert_eq!(bob_issued.status, StatusCode::CREATED);
    let bob_token = bob_issued.body["token"].as_str().expect("token").to_owned();
    let bob_status = client.queue_status(&bob_token).await?;
    assert_eq!(bob_status.body["status"], "WAITING");
    assert_eq!(bob_status.body["position"], 1);
    assert!(bob_status.body["estimatedWaitSeconds"].as_u64().is_some());
    assert!(bob_status.header("retry-after").is_some());
    assert!(bob_status.body["activeUntil"].is_null());

    // Asking again returns the same token with 200.
    let again = client.issue_token(bob).await?;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["token"], bob_issued.body["token"]);

    // Alice browses.
    let concerts = client.get("/v1/concerts", Some(&alice_token)).await?;
    assert_eq!(concerts.status, StatusCode::OK);
    assert!(
        concerts
            .body
            .as_array()
            .expect("list")
            .iter()
            .any(|c| c["concertId"] == concert)
    );
    let dates = client
        .get(&format!("/v1/concerts/{concert}/dates"), Some(&alice_token))
        .await?;
    assert_eq!(dates.status, StatusCode::OK);
    assert_eq!(
        dates.body["dates"],
        json!([{ "date": date, "availableSeats": 50 }])
    );
    let seats = client
        .get(
            &format!("/v1/concerts/{concert}/dates/{date}/seats"),
            Some(&alice_token),
        )
        .await?;
    assert_eq!(seats.body["totalSeats"], 50);
    assert_eq!(seats.body["seats"].as_array().expect("seats").len(), 50);
    assert_eq!(
        seats.body["seats"][0],
        json!({ "seatNo": 1, "price": 120_000 })
    );

    // Alice holds seat 7: it leaves the seat list and the date's count.
    let held = client.hold(&alice_token, concert, &date, 7).await?;
    assert_eq!(held.status, StatusCode::CREATED, "{}", held.text);
    assert_eq!(held.body["status"], "HELD");
    assert_eq!(held.body["price"], 120_000);
    let reservation = held.body["reservationId"].as_i64().expect("id");
    let seats = client
        .get(
            &format!("/v1/concerts/{concert}/dates/{date}/seats"),
            Some(&alice_token),
        )
        .await?;
    assert!(
        !seats.body["seats"]
            .as_array()
            .expect("seats")
            .iter()
            .any(|s| s["seatNo"] == 7)
    );
    let dates = client
        .get(&format!("/v1/concerts/{concert}/dates"), Some(&alice_token))
        .await?;
    assert_eq!(dates.body["dates"][0]["availableSeats"], 49);

    // She charges points and pays.
    let charged = client.charge(alice, 150_000, None).await?;
    assert_eq!(charged.status, StatusCode::OK);
    assert_eq!(charged.body["balance"], 150_000);
    let paid = client.pay(&alice_token, reservation, Some("pay-1")).await?;
    assert_eq!(paid.status, StatusCode::CREATED, "{}", paid.text);
    assert_eq!(paid.body["reservationId"], reservation);
    assert_eq!(paid.body["amount"], 120_000);
    assert_eq!(paid.body["balance"], 30_000);
    assert!(paid.body["paymentId"].as_i64().is_some_and(|id| id > 0));

    // The reservation is confirmed, the ledger has both entries, newest first.
    let history = client
        .get(&format!("/v1/users/{alice}/points/history"), None)
        .await?;
    let entries = history.body["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["kind"], "PAYMENT");
    assert_eq!(entries[0]["amount"], -120_000);
    assert_eq!(entries[0]["balanceAfter"], 30_000);
    assert_eq!(entries[1]["kind"], "CHARGE");

    // Her token has ended; a retry of the payment with its key still gets the first answer.
    let status = client.queue_status(&alice_token).await?;
    assert_eq!(status.body["status"], "EXPIRED");
    assert_eq!(status.body["reason"], "PAID");
    let retry = client.pay(&alice_token, reservation, Some("pay-1")).await?;
    assert_eq!(retry.status, StatusCode::CREATED);
    assert_eq!(retry.body, paid.body);
    let refused = client.get("/v1/concerts", Some(&alice_token)).await?;
    assert_eq!(refused.code(), "TOKEN_EXPIRED");

    // Bob takes her place within about a second.
    let bob_active = client
        .wait_for_status(&bob_token, "ACTIVE", Duration::from_secs(3))
        .await?;
    assert!(bob_active.body["activeUntil"].is_string());
    assert!(bob_active.body["position"].is_null());
    let seats = client
        .get(
            &format!("/v1/concerts/{concert}/dates/{date}/seats"),
            Some(&bob_token),
        )
        .await?;
    assert_eq!(seats.status, StatusCode::OK);
    assert!(
        !seats.body["seats"]
            .as_array()
            .expect("seats")
            .iter()
            .any(|s| s["seatNo"] == 7),
        "sold seat stays sold"
    );

    app.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_hold_frees_the_seat_at_once() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let client = &app.client;
    let (concert, date) = client.concert_with_date(5, 1_000, 3).await?;
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let alice_token = client.active_token(alice).await?;
    let bob_token = client.active_token(bob).await?;
    let held = client.hold(&alice_token, concert, &date, 2).await?;
    let reservation = held.body["reservationId"].as_i64().expect("id");
    assert_eq!(
        client.hold(&bob_token, concert, &date, 2).await?.code(),
        "SEAT_UNAVAILABLE"
    );

    let path = format!("/v1/reservations/{reservation}");
    let cancelled = client
        .send(
            client
                .raw(reqwest::Method::DELETE, &path)
                .bearer_auth(&alice_token),
        )
        .await?;
    assert_eq!(cancelled.status, StatusCode::OK);
    assert_eq!(cancelled.body["status"], "CANCELLED");
    let read = client.get(&path, Some(&alice_token)).await?;
    assert_eq!(read.body["status"], "CANCELLED");
    assert_eq!(
        client.hold(&bob_token, concert, &date, 2).await?.status,
        StatusCode::CREATED
    );
    app.shutdown().await
}
