//! Several instances over one database behave as one service.

use std::sync::Arc;

use concert_e2e::TestApp;
use reqwest::StatusCode;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread")]
async fn a_token_and_a_hold_from_one_instance_hold_on_another() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    if app.skip_unless_postgres("several instances over one store") {
        return Ok(());
    }
    let (other_server, other) = app.another_instance(|_| {}).await?;
    let client = &app.client;
    let (concert, date) = client.concert_with_date(5, 100, 4).await?;

    let alice = Uuid::new_v4();
    let issued = client.issue_token(alice).await?;
    let token = issued.body["token"].as_str().expect("token").to_owned();
    // The other instance accepts the token, and returns it (200) instead of a second place.
    other
        .wait_for_status(&token, "ACTIVE", std::time::Duration::from_secs(5))
        .await?;
    let again = other.issue_token(alice).await?;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["token"], issued.body["token"]);

    let held = client.hold(&token, concert, &date, 3).await?;
    assert_eq!(held.status, StatusCode::CREATED);
    let bob = other.active_token(Uuid::new_v4()).await?;
    assert_eq!(
        other.hold(&bob, concert, &date, 3).await?.code(),
        "SEAT_UNAVAILABLE"
    );
    let seats = other
        .get(
            &format!("/v1/concerts/{concert}/dates/{date}/seats"),
            Some(&bob),
        )
        .await?;
    assert!(
        !seats.body["seats"]
            .as_array()
            .expect("seats")
            .iter()
            .any(|s| s["seatNo"] == 3)
    );

    other_server.stop().await?;
    app.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn users_racing_for_one_seat_through_two_instances_have_one_winner() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    if app.skip_unless_postgres("several instances over one store") {
        return Ok(());
    }
    let (other_server, other) = app.another_instance(|_| {}).await?;
    let (concert, date) = app.client.concert_with_date(10, 100, 4).await?;
    let clients = [app.client.clone(), other];

    let mut tokens = Vec::new();
    for i in 0..20 {
        tokens.push(clients[i % 2].active_token(Uuid::new_v4()).await?);
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(tokens.len()));
    let mut tasks = Vec::new();
    for (i, token) in tokens.into_iter().enumerate() {
        let client = clients[i % 2].clone();
        let barrier = barrier.clone();
        let date = date.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            client.hold(&token, concert, &date, 5).await
        }));
    }
    let mut won = 0;
    let mut refused = 0;
    for task in tasks {
        let answer = task.await??;
        match answer.status {
            StatusCode::CREATED => won += 1,
            StatusCode::CONFLICT if answer.code() == "SEAT_UNAVAILABLE" => refused += 1,
            other => panic!("unexpected answer {other}: {}", answer.text),
        }
    }
    assert_eq!((won, refused), (1, 19));
    other_server.stop().await?;
    app.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_configured_key_instances_share_the_key_their_deployment_generated()
-> anyhow::Result<()> {
    let app = TestApp::spawn_with(|config| config.token_secret = None).await?;
    if app.skip_unless_postgres("several instances over one store") {
        return Ok(());
    }
    let (other_server, other) = app
        .another_instance(|config| config.token_secret = None)
        .await?;

    let issued = app.client.issue_token(Uuid::new_v4()).await?;
    let token = issued.body["token"].as_str().expect("token");
    let status = other.queue_status(token).await?;
    assert_eq!(status.status, StatusCode::OK, "{}", status.text);
    // Not the key of any other deployment (the tests' configured one, say).
    let (configured_server, configured) = app.another_instance(|_| {}).await?;
    let foreign = configured.queue_status(token).await?;
    assert_eq!(foreign.code(), "TOKEN_INVALID");
    configured_server.stop().await?;
    other_server.stop().await?;
    app.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_signing_key_rotates_across_instances_while_users_wait() -> anyhow::Result<()> {
    const OLD: &str = "the-signing-key-before-rotation";
    const NEW: &str = "the-signing-key-after-rotation!";
    // Step 1 of a rotation: every instance verifies the next key; one instance still signs with
    // the old key, the other already signs with the new one.
    let app = TestApp::spawn_with(|config| {
        config.queue_max_active = 1;
        config.token_secret = Some(OLD.into());
        config.token_verify_secrets = vec![NEW.into()];
    })
    .await?;
    if app.skip_unless_postgres("several instances over one store") {
        return Ok(());
    }
    let (new_server, new) = app
        .another_instance(|config| {
            config.queue_max_active = 1;
            config.token_secret = Some(NEW.into());
            config.token_verify_secrets = vec![OLD.into()];
        })
        .await?;
    let old = &app.client;
    let first = old.active_token(Uuid::new_v4()).await?;
    let waiting_old = old.issue_token(Uuid::new_v4()).await?.body["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let waiting_new = new.issue_token(Uuid::new_v4()).await?.body["token"]
        .as_str()
        .expect("token")
        .to_owned();

    // Each waiting user polls either instance and keeps their place.
    for token in [&waiting_old, &waiting_new] {
        for client in [old, &new] {
            let status = client.queue_status(token).await?;
            assert_eq!(status.body["status"], "WAITING", "{}", status.text);
        }
    }
    assert_eq!(
        new.queue_status(&first).await?.body["status"],
        "ACTIVE",
        "the active user too"
    );

    // Step 2: the old key is dropped; tokens it signed are refused from then on.
    let (done_server, done) = app
        .another_instance(|config| config.token_secret = Some(NEW.into()))
        .await?;
    assert_eq!(
        done.queue_status(&waiting_new).await?.body["status"],
        "WAITING"
    );
    assert_eq!(
        done.queue_status(&waiting_old).await?.code(),
        "TOKEN_INVALID"
    );
    done_server.stop().await?;
    new_server.stop().await?;
    app.shutdown().await
}
