//! `GET /v1/queue/events` on three instances: a waiting user's stream, opened on another instance
//! than the one that issued the token, is told its position at once, then its admission when
//! the user ahead leaves on a third instance (pushed: the client sends nothing meanwhile), then
//! its end and why, and then the stream ends.

use std::time::Duration;

use concert_e2e::{EventStream, TestApp};
use reqwest::{Method, StatusCode};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread")]
async fn a_waiting_users_stream_is_pushed_its_admission_and_its_end_across_instances()
-> anyhow::Result<()> {
    let seed = |config: &mut concert_bootstrap::Config| config.queue_max_active = 1;
    let app = TestApp::spawn_with(seed).await?;
    if app.skip_unless_postgres("several instances over one store") {
        return Ok(());
    }
    let (second, b) = app.another_instance(seed).await?;
    let (third, c) = app.another_instance(seed).await?;
    let a = &app.client;

    let ahead = a.active_token(Uuid::new_v4()).await?;
    let waiting = b.new_token().await?;
    let response = c
        .raw(Method::GET, "/v1/queue/events")
        .bearer_auth(&waiting)
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"].to_str()?,
        "text/event-stream"
    );
    let mut events = EventStream::of(response);

    let first = events
        .next(Duration::from_secs(2))
        .await?
        .expect("an event");
    assert_eq!(
        (&first["status"], &first["position"]),
        (&"WAITING".into(), &1.into()),
        "{first}"
    );
    // Nothing changes while the user ahead stays: no event (the heartbeat is 15 s away).
    assert!(events.next(Duration::from_millis(800)).await.is_err());

    assert_eq!(a.leave_line(&ahead).await?.status, StatusCode::NO_CONTENT);
    let admitted = events
        .next(Duration::from_secs(3))
        .await?
        .expect("an event");
    assert_eq!(admitted["status"], "ACTIVE", "{admitted}");
    assert!(admitted["activeUntil"].is_string());

    assert_eq!(b.leave_line(&waiting).await?.status, StatusCode::NO_CONTENT);
    let ended = events
        .next(Duration::from_secs(3))
        .await?
        .expect("an event");
    assert_eq!(
        (&ended["status"], &ended["reason"]),
        (&"EXPIRED".into(), &"LEFT".into()),
        "{ended}"
    );
    assert_eq!(
        events.next(Duration::from_secs(2)).await?,
        None,
        "the stream ended"
    );

    second.stop().await?;
    third.stop().await?;
    app.shutdown().await
}
