//! Leaving the line (`DELETE /v1/queue/tokens/current`) and an operator's revocation, across two
//! instances: a waiting user's place stops counting for everyone behind at once, an active user's
//! slot goes to the next in line, and the token is expired everywhere with the reason `LEFT` or
//! `REVOKED`.

use std::time::Duration;

use concert_e2e::{ADMIN_KEY, Answer, Client, TestApp};
use reqwest::{Method, StatusCode};
use uuid::Uuid;

/// Polls `token`'s status on `client` until `check` holds, for at most two seconds.
async fn until(
    client: &Client,
    token: &str,
    check: impl Fn(&Answer) -> bool,
) -> anyhow::Result<Answer> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        let answer = client.queue_status(token).await?;
        if check(&answer) {
            return Ok(answer);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "still {} after 2 s",
            answer.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn leavers_free_their_place_or_slot_on_every_instance() -> anyhow::Result<()> {
    let app = TestApp::spawn_with(|config| config.queue_max_active = 1).await?;
    if app.skip_unless_postgres("several instances over one store") {
        return Ok(());
    }
    let (second, other) = app
        .another_instance(|config| config.queue_max_active = 1)
        .await?;
    let client = &app.client;

    let active = client.active_token(Uuid::new_v4()).await?;
    let leaver = client.new_token().await?;
    let behind = other.new_token().await?;
    for instance in [client, &other] {
        until(instance, &behind, |a| a.body["position"] == 2).await?;
    }

    // A waiting user leaves on one instance: the one behind moves up on both at once.
    let left = other.leave_line(&leaver).await?;
    assert_eq!(left.status, StatusCode::NO_CONTENT, "{}", left.text);
    for instance in [client, &other] {
        until(instance, &behind, |a| a.body["position"] == 1).await?;
        let status = until(instance, &leaver, |a| a.body["status"] == "EXPIRED").await?;
        assert_eq!(status.body["reason"], "LEFT");
        let refused = instance.get("/v1/concerts", Some(&leaver)).await?;
        assert_eq!(refused.code(), "TOKEN_EXPIRED");
    }
    // Leaving twice is leaving once.
    assert_eq!(
        client.leave_line(&leaver).await?.status,
        StatusCode::NO_CONTENT
    );

    // The active user leaves: the next in line gets the slot.
    assert_eq!(
        client.leave_line(&active).await?.status,
        StatusCode::NO_CONTENT
    );
    other
        .wait_for_status(&behind, "ACTIVE", Duration::from_secs(2))
        .await?;
    let status = client.queue_status(&active).await?;
    assert_eq!(
        (&status.body["status"], &status.body["reason"]),
        (&"EXPIRED".into(), &"LEFT".into())
    );
    let refused = other.get("/v1/concerts", Some(&active)).await?;
    assert_eq!(refused.code(), "TOKEN_EXPIRED");

    second.stop().await?;
    app.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paid_token_cannot_leave_and_a_forged_one_is_refused() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let client = &app.client;
    let (user, token) = {
        let user = Uuid::new_v4();
        (user, client.active_token(user).await?)
    };
    let (concert, date) = client.concert_with_date(5, 10_000, 3).await?;
    let hold = client.hold(&token, concert, &date, 1).await?;
    client.charge(user, 100_000, None).await?;
    let reservation = hold.body["reservationId"].as_i64().unwrap_or_default();
    let paid = client.pay(&token, reservation, None).await?;
    assert_eq!(paid.status, StatusCode::CREATED, "{}", paid.text);

    assert_eq!(client.leave_line(&token).await?.code(), "TOKEN_EXPIRED");
    assert_eq!(client.leave_line("forged").await?.code(), "TOKEN_INVALID");
    app.shutdown().await
}

async fn revoke(client: &Client, key: &str, room: &str, user: &str) -> anyhow::Result<Answer> {
    client
        .send(
            client
                .raw(Method::POST, &format!("/v1/admin/rooms/{room}/revocations"))
                .bearer_auth(key)
                .json(&serde_json::json!({ "userId": user })),
        )
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_revokes_tokens_and_frees_their_place_or_slot_everywhere() -> anyhow::Result<()>
{
    let app = TestApp::spawn_with(|config| config.queue_max_active = 1).await?;
    if app.skip_unless_postgres("several instances over one store") {
        return Ok(());
    }
    let (second, other) = app
        .another_instance(|config| config.queue_max_active = 1)
        .await?;
    let client = &app.client;
    let (active_user, waiting_user) = (Uuid::new_v4(), Uuid::new_v4());
    let active = client.active_token(active_user).await?;
    let waiting = client.issue_token(waiting_user).await?.body["token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let behind = other.new_token().await?;
    until(&other, &behind, |a| a.body["position"] == 2).await?;

    let revoked = revoke(&other, ADMIN_KEY, "default", &waiting_user.to_string()).await?;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{}", revoked.text);
    for instance in [client, &other] {
        until(instance, &behind, |a| a.body["position"] == 1).await?;
        let status = until(instance, &waiting, |a| a.body["status"] == "EXPIRED").await?;
        assert_eq!(status.body["reason"], "REVOKED");
    }

    let revoked = revoke(client, ADMIN_KEY, "default", &active_user.to_string()).await?;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    assert_eq!(
        other.get("/v1/concerts", Some(&active)).await?.code(),
        "TOKEN_EXPIRED"
    );
    other
        .wait_for_status(&behind, "ACTIVE", Duration::from_secs(2))
        .await?;

    // Nobody to revoke is no error; the key, the room and the user are checked.
    let nobody = revoke(client, ADMIN_KEY, "default", &Uuid::new_v4().to_string()).await?;
    assert_eq!(nobody.status, StatusCode::NO_CONTENT);
    let user = active_user.to_string();
    assert_eq!(
        revoke(client, "wrong-key-0123456789", "default", &user)
            .await?
            .code(),
        "ADMIN_KEY_INVALID"
    );
    assert_eq!(
        revoke(client, ADMIN_KEY, "spring-gala", &user)
            .await?
            .code(),
        "ROOM_NOT_FOUND"
    );
    assert_eq!(
        revoke(client, ADMIN_KEY, "Spring Gala", &user)
            .await?
            .code(),
        "VALIDATION_FAILED"
    );
    assert_eq!(
        revoke(client, ADMIN_KEY, "default", "not-a-uuid")
            .await?
            .code(),
        "VALIDATION_FAILED"
    );
    second.stop().await?;
    app.shutdown().await
}
