//! `jwt` identity mode at the edge: joining the line and the points endpoints act only for the
//! user the identity token verifies (401 `IDENTITY_INVALID`, 403 `IDENTITY_MISMATCH`); in
//! `trusted` mode (every other test module) the user id is taken as sent.

use axum::Router;
use serde_json::json;

use super::{IDENTITY_A, IDENTITY_B, Scenario, USER_A, USER_B, app_with, get, post};

async fn verified() -> Router {
    app_with(Scenario {
        verified_identity: true,
        ..Scenario::default()
    })
    .await
}

fn join(body: serde_json::Value) -> super::Call {
    post("/v1/queue/tokens").json(&body)
}

#[tokio::test]
async fn joining_without_an_identity_token_is_refused_with_a_challenge() {
    let app = verified().await;

    let answer = join(json!({ "userId": USER_A.to_string() }))
        .send(&app)
        .await;

    answer.problem(401, "IDENTITY_INVALID");
    assert!(
        answer
            .header("www-authenticate")
            .is_some_and(|c| c.contains("realm=\"identity\"")),
        "{:?}",
        answer.headers
    );
}

#[tokio::test]
async fn joining_with_a_token_that_does_not_verify_is_refused() {
    let app = verified().await;

    let detail = join(json!({}))
        .bearer("forged")
        .send(&app)
        .await
        .problem(401, "IDENTITY_INVALID");

    assert!(detail.contains("signature"), "{detail}");
}

#[tokio::test]
async fn nobody_obtains_another_users_queue_token() {
    let app = verified().await;

    // USER_A holds a live token; B names A.
    join(json!({ "userId": USER_A.to_string() }))
        .bearer(IDENTITY_B)
        .send(&app)
        .await
        .problem(403, "IDENTITY_MISMATCH");
}

#[tokio::test]
async fn the_verified_user_joins_with_or_without_naming_themselves() {
    let app = verified().await;

    // USER_A's live token comes back (200); B, without one, gets a new place (201).
    join(json!({ "userId": USER_A.to_string() }))
        .bearer(IDENTITY_A)
        .send(&app)
        .await
        .ok(200);
    join(json!({})).bearer(IDENTITY_B).send(&app).await.ok(201);
}

#[tokio::test]
async fn another_users_points_cannot_be_read_or_charged() {
    let app = verified().await;
    let b = USER_B.to_string();

    for call in [
        get(&format!("/v1/users/{b}/points")),
        get(&format!("/v1/users/{b}/points/history")),
        post(&format!("/v1/users/{b}/points/charge")).json(&json!({ "amount": 1000 })),
    ] {
        call.bearer(IDENTITY_A)
            .send(&app)
            .await
            .problem(403, "IDENTITY_MISMATCH");
    }
}

#[tokio::test]
async fn points_need_an_identity_token_before_the_body_is_read() {
    let app = verified().await;
    let a = USER_A.to_string();

    get(&format!("/v1/users/{a}/points"))
        .send(&app)
        .await
        .problem(401, "IDENTITY_INVALID");
    // A malformed body is not looked at without a valid identity.
    post(&format!("/v1/users/{a}/points/charge"))
        .header("content-type", "application/json")
        .raw_body("{not json")
        .send(&app)
        .await
        .problem(401, "IDENTITY_INVALID");
}

#[tokio::test]
async fn the_verified_user_reads_and_charges_their_own_points() {
    let app = verified().await;
    let a = USER_A.to_string();

    let balance = get(&format!("/v1/users/{a}/points"))
        .bearer(IDENTITY_A)
        .send(&app)
        .await
        .ok(200);
    assert_eq!(balance["userId"], a);
    post(&format!("/v1/users/{a}/points/charge"))
        .bearer(IDENTITY_A)
        .json(&json!({ "amount": 1000 }))
        .send(&app)
        .await
        .ok(200);
    get(&format!("/v1/users/{a}/points/history"))
        .bearer(IDENTITY_A)
        .send(&app)
        .await
        .ok(200);
}

#[tokio::test]
async fn trusted_mode_still_needs_a_user_id_to_join() {
    let app = app_with(Scenario::default()).await;

    let detail = join(json!({}))
        .send(&app)
        .await
        .problem(400, "VALIDATION_FAILED");

    assert!(detail.contains("userId"), "{detail}");
}
