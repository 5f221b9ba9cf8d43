//! Fuzz-style: hundreds of generated requests, mostly malformed, over the real route table. Whatever
//! arrives, the answer is never a 5xx, every error is problem+json, and every answer has a request
//! id.

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{RngExt, SeedableRng};
use serde_json::{Map, json};

use super::*;

const REQUESTS: usize = 2000;

const METHODS: &[&str] = &[
    "GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS", "BREW",
];
const IDS: &[&str] = &[
    "1",
    "41",
    "42",
    "43",
    "44",
    "45",
    "999",
    "0",
    "-1",
    "abc",
    "1.5",
    "99999999999999999999",
    "%00",
    "%FF",
    "%20",
    "1e3",
    "+1",
    "0x10",
];
const DATES: &[&str] = &[
    "2026-12-24",
    "2026-01-10",
    "2026-12-25",
    "2026-02-30",
    "2026-13-01",
    "xx",
    "%2F",
    "20261224",
];
const TOKENS: &[&str] = &[
    TOKEN_ACTIVE,
    TOKEN_ACTIVE_B,
    TOKEN_EXPIRED,
    TOKEN_WAITING,
    TOKEN_WAITING_FAR,
    TOKEN_UNKNOWN,
    ADMIN_KEY,
    "garbage",
    "signed-3",
    "signed-0",
    "signed-500",
    "signed-99999999999999999999",
];
const CONTENT_TYPES: &[&str] = &[
    "application/json",
    "application/json; charset=utf-8",
    "text/plain",
    "application/problem+json",
    "multipart/form-data",
    "json",
    "application/x-www-form-urlencoded",
];
const KEYS: &[&str] = &[KEY_REPLAYED, KEY_REUSED, "k1", "", "a b", "ключ"];
const FIELDS: &[&str] = &[
    "userId",
    "concertId",
    "date",
    "seatNo",
    "amount",
    "reservationId",
    "title",
    "dates",
    "price",
    "seatCount",
];

fn pick<'a>(rng: &mut StdRng, from: &[&'a str]) -> &'a str {
    from.choose(rng).copied().unwrap_or_default()
}

fn random_user(rng: &mut StdRng) -> String {
    match rng.random_range(0..5) {
        0 => USER_A.to_string(),
        1 => USER_B.to_string(),
        2 => Uuid::from_u128(rng.random()).to_string(),
        3 => "not-a-uuid".to_owned(),
        _ => "%E2%98%83".to_owned(),
    }
}

/// A path from the documented route table with random parameters, or some other path.
fn random_path(rng: &mut StdRng, template: &str) -> String {
    if rng.random_bool(0.1) {
        return pick(
            rng,
            &[
                "/",
                "/v1",
                "/v1/concerts/1/x",
                "/docs/nope",
                "/v1//reservations",
                "/%",
                "/health/",
            ],
        )
        .to_owned();
    }
    let mut path = template
        .replace("{concertId}", pick(rng, IDS))
        .replace("{reservationId}", pick(rng, IDS))
        .replace("{date}", pick(rng, DATES))
        .replace("{userId}", &random_user(rng));
    if rng.random_bool(0.2) {
        let query = pick(
            rng,
            &[
                "limit=1",
                "limit=0",
                "limit=101",
                "limit=x",
                "before=2",
                "before=-1",
                "limit=&before=",
                "a=b",
                "limit=5&limit=6",
            ],
        );
        path = format!("{path}?{query}");
    }
    path
}

fn random_value(rng: &mut StdRng) -> Value {
    match rng.random_range(0..12) {
        0 => json!(rng.random_range(-3..60)),
        1 => json!(i64::MAX),
        2 => json!(1.5),
        3 => json!("2026-12-24"),
        4 => json!(USER_A.to_string()),
        5 => Value::Null,
        6 => json!([1, "x"]),
        7 => json!({ "nested": true }),
        8 => json!(true),
        9 => json!([{ "date": "2026-12-24", "price": 1 }]),
        10 => json!("x".repeat(rng.random_range(0..300))),
        _ => json!(rng.random::<u64>()),
    }
}

fn random_body(rng: &mut StdRng) -> Option<String> {
    match rng.random_range(0..8) {
        0 => None,
        1 => Some(
            (0..rng.random_range(0..64))
                .map(|_| char::from(rng.random_range(0x20u8..0x7f)))
                .collect(),
        ),
        2 => Some("{\"concertId\": 1, \"date\": \"2026-12-24\", \"seatNo\"".to_owned()),
        3 => Some(format!("{{\"padding\": \"{}\"}}", "x".repeat(70 * 1024))),
        _ => {
            let mut object = Map::new();
            for field in FIELDS {
                if rng.random_bool(0.5) {
                    object.insert((*field).to_owned(), random_value(rng));
                }
            }
            Some(Value::Object(object).to_string())
        }
    }
}

fn random_request(rng: &mut StdRng, operations: &[(String, String)]) -> (Call, String) {
    let (documented, template) = operations.choose(rng).expect("operations");
    // Mostly the documented method, so that most requests get past the router.
    let method = if rng.random_bool(0.75) {
        documented.to_ascii_uppercase()
    } else {
        pick(rng, METHODS).to_owned()
    };
    let method = Method::from_bytes(method.as_bytes()).expect("method");
    let path = random_path(rng, template);
    let mut request = call(method.clone(), &path);
    if rng.random_bool(0.8) {
        let token = pick(rng, TOKENS);
        let value = match rng.random_range(0..6) {
            0 => token.to_owned(),
            1 => format!("bearer {token}"),
            2 => format!("Basic {token}"),
            _ => format!("Bearer {token}"),
        };
        request = request.header("authorization", &value);
    }
    if rng.random_bool(0.7) {
        request = request.header("content-type", pick(rng, CONTENT_TYPES));
    }
    if rng.random_bool(0.3) {
        let key = pick(rng, KEYS);
        if key.is_ascii() {
            request = request.header("idempotency-key", key);
        }
    }
    if rng.random_bool(0.3) {
        let id = pick(rng, &["abc", "", "x y", "🙂"]);
        if id.is_ascii() {
            request = request.header("x-request-id", id);
        }
    }
    if let Some(body) = random_body(rng) {
        request = request.raw_body(body);
    }
    (request, format!("{method} {path}"))
}

#[tokio::test]
async fn generated_malformed_requests_never_get_a_5xx_and_errors_are_always_problem_json() {
    let app = app().await;
    let document = serde_json::to_value(crate::openapi()).expect("json");
    let operations: Vec<(String, String)> = super::openapi::operations(&document)
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect();
    let mut rng = StdRng::seed_from_u64(0x00C0_FFEE);
    let mut seen = std::collections::BTreeMap::<u16, usize>::new();
    for _ in 0..REQUESTS {
        let (request, label) = random_request(&mut rng, &operations);
        let answer = request.send(&app).await;
        *seen.entry(answer.status.as_u16()).or_default() += 1;
        assert!(
            !answer.status.is_server_error(),
            "{label} → {}: {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
        assert!(
            answer.header("x-request-id").is_some(),
            "{label}: no x-request-id"
        );
        let is_head = label.starts_with("HEAD ");
        if answer.status.is_client_error() {
            assert_eq!(
                answer.content_type(),
                PROBLEM_JSON,
                "{label} → {}",
                answer.status
            );
            if !is_head {
                let body = answer.json();
                assert_eq!(body["status"], answer.status.as_u16(), "{label}: {body}");
                assert!(body["code"].is_string(), "{label}: {body}");
                assert!(body["detail"].is_string(), "{label}: {body}");
            }
        }
    }
    // The generator reaches successes and many kinds of refusal, not only one.
    assert!(
        seen.keys().any(|status| (200..300).contains(status)),
        "{seen:?}"
    );
    for status in [400, 401, 404, 405, 413, 415] {
        assert!(seen.contains_key(&status), "no {status} among {seen:?}");
    }
}
