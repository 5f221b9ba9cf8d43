//! No secret reaches a log line or an answer: a real `concert-server` process, logging at debug
//! level, is given distinctive secrets (token key, admin key, identity secret, a database
//! password) and sent requests that succeed, fail and are refused; then its whole log and every
//! answer are searched for them.

use concert_e2e::Client;
use concert_identity::mint::{MintClaims, mint_hs256};
use concert_postgres::testing::TestDatabase;
use reqwest::Method;
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::harness::process::{Cluster, ClusterSpec};

const TOKEN_SECRET: &str = "token-secret-d41d8cd98f00b204";
const ADMIN_KEY: &str = "admin-key-e9800998ecf8427e";
const IDENTITY_SECRET: &str = "identity-secret-0cc175b9c0f1b6a831c399e2";
const DATABASE_PASSWORD: &str = "db-password-92eb5ffee6ae2fec";

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_appears_in_logs_or_answers() -> anyhow::Result<()> {
    let database = TestDatabase::create().await?;
    // Trust authentication ignores the password; the server still holds it in its URL.
    let url = database
        .url()
        .replacen("postgres@", &format!("postgres:{DATABASE_PASSWORD}@"), 1);
    let cluster = Cluster::start(
        ClusterSpec {
            instances: 1,
            ..ClusterSpec::new("secrets")
        }
        .env("RUST_LOG", "debug")
        .env("TOKEN_SECRET", TOKEN_SECRET)
        .env("ADMIN_API_KEY", ADMIN_KEY)
        .env("IDENTITY_MODE", "jwt")
        .env("IDENTITY_JWT_SECRET", IDENTITY_SECRET)
        .env("IDENTITY_ISSUER", "https://id.example")
        .env("IDENTITY_AUDIENCE", "concert-queue")
        .through(url),
        database,
    )
    .await?;
    let client = Client::new(cluster.instances[0].addr());
    let user = Uuid::new_v4();
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let identity = mint_hs256(
        IDENTITY_SECRET.as_bytes(),
        &MintClaims {
            sub: user.to_string(),
            iss: "https://id.example".to_owned(),
            aud: "concert-queue".to_owned(),
            exp: now + 600,
            nbf: None,
            iat: now,
        },
    )?;
    let concert = json!({ "title": "Gala", "dates": [{ "date": "2099-12-24", "price": 100 }] });

    let mut answers = Vec::new();
    for (method, path, bearer, body) in [
        (
            Method::POST,
            "/v1/queue/tokens".to_owned(),
            Some(identity.as_str()),
            json!({}),
        ),
        (
            Method::POST,
            "/v1/queue/tokens".to_owned(),
            Some("forged.token"),
            json!({}),
        ),
        (
            Method::POST,
            "/v1/admin/concerts".to_owned(),
            Some("wrong-admin-key-1234"),
            concert.clone(),
        ),
        (
            Method::POST,
            "/v1/admin/concerts".to_owned(),
            Some(ADMIN_KEY),
            concert.clone(),
        ),
        (
            Method::GET,
            format!("/v1/users/{user}/points"),
            Some(identity.as_str()),
            json!(null),
        ),
        (
            Method::GET,
            "/v1/queue/status".to_owned(),
            Some("not-a-token"),
            json!(null),
        ),
        (Method::GET, "/metrics".to_owned(), None, json!(null)),
        (Method::GET, "/health/ready".to_owned(), None, json!(null)),
    ] {
        let mut request = client.raw(method, &path);
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        if !body.is_null() {
            request = request.json(&body);
        }
        let answer = client.send(request).await?;
        answers.push(format!(
            "{path} {}: {:?} {}",
            answer.status, answer.headers, answer.text
        ));
    }

    let log = cluster.instances[0].log_tail(usize::MAX);
    assert!(
        log.contains("DEBUG") || log.contains("debug"),
        "debug logging was on"
    );
    for secret in [TOKEN_SECRET, ADMIN_KEY, IDENTITY_SECRET, DATABASE_PASSWORD] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
        for answer in &answers {
            assert!(!answer.contains(secret), "{secret} in an answer: {answer}");
        }
    }
    assert!(!log.contains(&identity), "an identity token in the log");
    cluster.finish().await
}
