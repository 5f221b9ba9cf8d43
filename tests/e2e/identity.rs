//! `IDENTITY_MODE=jwt` end to end: with identity tokens minted as the operator's identity system
//! would, nobody obtains another user's queue token, reads or charges another user's points, or
//! pays another user's reservation, and the whole journey still works. (`trusted` mode is what
//! every other end-to-end test runs.)

use std::time::Duration;

use concert_bootstrap::config::IdentityModeSetting;
use concert_e2e::TestApp;
use concert_identity::mint::{MintClaims, mint_hs256};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

const SECRET: &str = "end-to-end-identity-secret-0123456789abcdef";
const ISSUER: &str = "https://id.example.test";
const AUDIENCE: &str = "concert-queue";

async fn jwt_app() -> anyhow::Result<TestApp> {
    TestApp::spawn_with(|config| {
        config.identity_mode = IdentityModeSetting::Jwt;
        config.identity_jwt_secret = Some(SECRET.into());
        config.identity_issuer = Some(ISSUER.to_owned());
        config.identity_audience = Some(AUDIENCE.to_owned());
    })
    .await
}

/// An identity token for `user`, valid for ten minutes from `issued`.
fn minted(secret: &str, user: Uuid, issued: OffsetDateTime) -> String {
    let at = issued.unix_timestamp();
    mint_hs256(
        secret.as_bytes(),
        &MintClaims {
            sub: user.to_string(),
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            exp: at + 600,
            nbf: None,
            iat: at,
        },
    )
    .expect("a minted token")
}

fn identity(user: Uuid) -> String {
    minted(SECRET, user, OffsetDateTime::now_utc())
}

fn points(user: Uuid) -> String {
    format!("/v1/users/{user}/points")
}

#[tokio::test(flavor = "multi_thread")]
async fn nobody_takes_over_another_users_place_or_points() -> anyhow::Result<()> {
    let app = jwt_app().await?;
    let client = &app.client;
    let (alice, mallory) = (Uuid::new_v4(), Uuid::new_v4());

    let joined = client
        .post("/v1/queue/tokens", Some(&identity(alice)), &json!({}))
        .await?;
    assert_eq!(joined.status, StatusCode::CREATED, "{}", joined.text);
    let alices_token = joined.body["token"].clone();

    // Alice's token is handed to nobody else: not by naming her, nor without a valid identity.
    let named = json!({ "userId": alice.to_string() });
    let as_mallory = client
        .post("/v1/queue/tokens", Some(&identity(mallory)), &named)
        .await?;
    assert_eq!(
        (as_mallory.status, as_mallory.code()),
        (StatusCode::FORBIDDEN, "IDENTITY_MISMATCH")
    );
    let expired = minted(
        SECRET,
        alice,
        OffsetDateTime::now_utc() - time::Duration::hours(1),
    );
    let forged = minted(
        "another-secret-of-at-least-32-bytes!!",
        alice,
        OffsetDateTime::now_utc(),
    );
    for credentials in [None, Some(expired.as_str()), Some(forged.as_str())] {
        let refused = client.post("/v1/queue/tokens", credentials, &named).await?;
        assert_eq!(
            (refused.status, refused.code()),
            (StatusCode::UNAUTHORIZED, "IDENTITY_INVALID"),
            "{credentials:?}: {}",
            refused.text
        );
        assert!(refused.text.find("eyJ").is_none(), "no token in the answer");
    }

    // Mallory's own join is a place of her own.
    let own = client
        .post("/v1/queue/tokens", Some(&identity(mallory)), &json!({}))
        .await?;
    assert_eq!(own.status, StatusCode::CREATED);
    assert_ne!(own.body["token"], alices_token);

    // Alice's points are hers alone.
    let mallorys = identity(mallory);
    for (method, path, body) in [
        (Method::GET, points(alice), None),
        (Method::GET, format!("{}/history", points(alice)), None),
        (
            Method::POST,
            format!("{}/charge", points(alice)),
            Some(json!({ "amount": 1000 })),
        ),
    ] {
        let mut request = client.raw(method.clone(), &path).bearer_auth(&mallorys);
        if let Some(body) = &body {
            request = request.json(body);
        }
        let refused = client.send(request).await?;
        assert_eq!(
            (refused.status, refused.code()),
            (StatusCode::FORBIDDEN, "IDENTITY_MISMATCH"),
            "{method} {path}"
        );
    }
    let anonymous = client.get(&points(alice), None).await?;
    assert_eq!(anonymous.code(), "IDENTITY_INVALID");
    let balance = client.get(&points(alice), Some(&identity(alice))).await?;
    assert_eq!(balance.body["balance"], 0, "nothing was charged");
    app.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_journey_works_with_identity_tokens_and_no_one_pays_for_another() -> anyhow::Result<()>
{
    let app = jwt_app().await?;
    let client = &app.client;
    let (concert, date) = client.concert_with_date(50, 120_000, 10).await?;
    let (alice, mallory) = (Uuid::new_v4(), Uuid::new_v4());

    let active = |user: Uuid| async move {
        let joined = client
            .post("/v1/queue/tokens", Some(&identity(user)), &json!({}))
            .await?;
        let token = joined.body["token"].as_str().unwrap_or_default().to_owned();
        client
            .wait_for_status(&token, "ACTIVE", Duration::from_secs(10))
            .await?;
        anyhow::Ok(token)
    };
    let alices_token = active(alice).await?;
    let mallorys_token = active(mallory).await?;

    let held = client.hold(&alices_token, concert, &date, 7).await?;
    assert_eq!(held.status, StatusCode::CREATED, "{}", held.text);
    let reservation = held.body["reservationId"].as_i64().expect("reservation id");
    let charged = client
        .send(
            client
                .raw(Method::POST, &format!("{}/charge", points(alice)))
                .bearer_auth(identity(alice))
                .json(&json!({ "amount": 200_000 })),
        )
        .await?;
    assert_eq!(charged.body["balance"], 200_000, "{}", charged.text);

    // Mallory, active herself, cannot pay Alice's hold with her own queue token.
    let stolen = client.pay(&mallorys_token, reservation, None).await?;
    assert_eq!(stolen.code(), "RESERVATION_NOT_FOUND", "{}", stolen.text);

    let paid = client.pay(&alices_token, reservation, None).await?;
    assert_eq!(paid.status, StatusCode::CREATED, "{}", paid.text);
    let history = client
        .get(
            &format!("{}/history", points(alice)),
            Some(&identity(alice)),
        )
        .await?;
    let kinds: Vec<&Value> = history.body["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|entry| &entry["kind"])
        .collect();
    assert_eq!(kinds, [&json!("PAYMENT"), &json!("CHARGE")]);
    app.shutdown().await
}
