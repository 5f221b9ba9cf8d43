//! Join rate limits at the edge: per address (through trusted proxies only) and per user,
//! answered `429 RATE_LIMITED` with `Retry-After`; nothing is limited unless configured.

use std::num::NonZeroU32;

use serde_json::json;

use super::{Scenario, USER_B, app, post, use_cases};
use crate::limits::JoinLimitSettings;
use crate::{RouterOptions, router_with};

async fn limited(settings: JoinLimitSettings) -> axum::Router {
    router_with(
        use_cases(Scenario::default()).await,
        RouterOptions {
            join_limits: settings,
            ..RouterOptions::default()
        },
    )
}

fn join(user: String) -> super::Call {
    post("/v1/queue/tokens").json(&json!({ "userId": user }))
}

#[tokio::test]
async fn a_user_joining_too_often_waits() {
    let app = limited(JoinLimitSettings {
        per_user_per_minute: NonZeroU32::new(1),
        ..JoinLimitSettings::default()
    })
    .await;

    join(USER_B.to_string()).send(&app).await.ok(201);
    let refused = join(USER_B.to_string()).send(&app).await;

    refused.problem(429, "RATE_LIMITED");
    let retry: u32 = refused
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=61).contains(&retry), "{retry}");
    join(uuid::Uuid::new_v4().to_string())
        .send(&app)
        .await
        .ok(201);
}

#[tokio::test]
async fn an_address_joining_too_often_waits_and_a_spoofed_forward_does_not_help() {
    let app = limited(JoinLimitSettings {
        per_address_per_minute: NonZeroU32::new(2),
        trusted_proxies: vec!["10.0.0.1".parse().expect("ip")],
        ..JoinLimitSettings::default()
    })
    .await;
    let from = |peer: &str, forwarded: &str| {
        join(uuid::Uuid::new_v4().to_string())
            .peer(peer)
            .header("x-forwarded-for", forwarded)
    };

    for _ in 0..2 {
        from("198.51.100.7:5000", "192.0.2.1")
            .send(&app)
            .await
            .ok(201);
    }
    // The direct client's own X-Forwarded-For is ignored: still its address.
    from("198.51.100.7:5001", "192.0.2.99")
        .send(&app)
        .await
        .problem(429, "RATE_LIMITED");
    // Behind the trusted proxy each forwarded client has its own budget.
    for client in ["192.0.2.1", "192.0.2.2"] {
        from("10.0.0.1:6000", client).send(&app).await.ok(201);
    }
}

#[tokio::test]
async fn without_limits_nobody_is_limited() {
    let app = app().await;
    for _ in 0..20 {
        join(USER_B.to_string())
            .peer("198.51.100.7:5000")
            .send(&app)
            .await;
    }
    join(USER_B.to_string())
        .peer("198.51.100.7:5000")
        .send(&app)
        .await
        .ok(201);
}
