//! Passthrough: a newcomer to a line where nobody waits and a place is free is `ACTIVE` in its
//! `201` answer, and many newcomers at once on three instances are never admitted beyond
//! `QUEUE_MAX_ACTIVE`.

use std::collections::BTreeMap;
use std::time::Duration;

use concert_e2e::{Client, TestApp};
use reqwest::StatusCode;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread")]
async fn a_newcomer_to_an_empty_line_is_active_at_once() -> anyhow::Result<()> {
    let app = TestApp::spawn_with(|config| config.admission_interval_ms = 1000).await?;
    let issued = app.client.issue_token(Uuid::new_v4()).await?;
    assert_eq!(issued.status, StatusCode::CREATED);
    assert_eq!(issued.body["status"], "ACTIVE", "{}", issued.text);
    assert!(issued.body["activeUntil"].is_string());
    let token = issued.body["token"].as_str().unwrap_or_default();
    let catalog = app.client.get("/v1/concerts", Some(token)).await?;
    assert_eq!(catalog.status, StatusCode::OK);
    app.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn many_newcomers_on_three_instances_pass_through_no_more_than_the_free_places()
-> anyhow::Result<()> {
    const MAX_ACTIVE: u32 = 5;
    const NEWCOMERS: usize = 45;
    let limit = |config: &mut concert_bootstrap::Config| config.queue_max_active = MAX_ACTIVE;
    let app = TestApp::spawn_with(limit).await?;
    if app.skip_unless_postgres("several instances over one store") {
        return Ok(());
    }
    let (second, second_client) = app.another_instance(limit).await?;
    let (third, third_client) = app.another_instance(limit).await?;
    let clients: [Client; 3] = [app.client.clone(), second_client, third_client];

    let joins: Vec<_> = (0..NEWCOMERS)
        .map(|n| {
            let client = clients[n % 3].clone();
            tokio::spawn(async move { client.issue_token(Uuid::new_v4()).await })
        })
        .collect();
    let mut answered: BTreeMap<String, usize> = BTreeMap::new();
    let mut tokens = Vec::new();
    for join in joins {
        let issued = join.await??;
        assert_eq!(issued.status, StatusCode::CREATED, "{}", issued.text);
        *answered
            .entry(
                issued.body["status"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
            .or_default() += 1;
        tokens.push(issued.body["token"].as_str().unwrap_or_default().to_owned());
    }
    let active_on_arrival = answered.get("ACTIVE").copied().unwrap_or(0);
    assert!(
        (1..=MAX_ACTIVE as usize).contains(&active_on_arrival),
        "{answered:?}"
    );

    // Once the views have caught up: exactly the free places are taken, the rest wait in a
    // gap-free line.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut active = 0;
    let mut positions = Vec::new();
    for (n, token) in tokens.iter().enumerate() {
        let status = clients[n % 3].queue_status(token).await?;
        match status.body["status"].as_str() {
            Some("ACTIVE") => active += 1,
            Some("WAITING") => positions.push(status.body["position"].as_u64().unwrap_or(0)),
            other => panic!("unexpected status {other:?}"),
        }
    }
    positions.sort_unstable();
    assert_eq!(active, MAX_ACTIVE as usize);
    assert_eq!(
        positions,
        (1..=(NEWCOMERS as u64 - u64::from(MAX_ACTIVE))).collect::<Vec<_>>()
    );
    second.stop().await?;
    third.stop().await?;
    app.shutdown().await
}
