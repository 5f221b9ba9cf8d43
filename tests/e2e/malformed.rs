//! Fuzz-style: hundreds of malformed requests over the real route table. None may answer 5xx, and
//! every error must be problem+json.

use concert_e2e::TestApp;
use reqwest::Method;
use uuid::Uuid;

/// A small deterministic generator (xorshift64*), so a failure replays exactly.
struct Generator(u64);

impl Generator {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        let index = usize::try_from(self.next() % items.len() as u64).unwrap_or(0);
        &items[index]
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_requests_never_get_a_server_error() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let client = &app.client;
    let user = Uuid::new_v4();
    let token = client.active_token(user).await?;
    let user_text = user.to_string();

    let paths = [
        "/v1/queue/tokens".to_owned(),
        "/v1/queue/status".to_owned(),
        "/v1/concerts".to_owned(),
        "/v1/concerts/1/dates".to_owned(),
        "/v1/concerts/-1/dates".to_owned(),
        "/v1/concerts/99999999999999999999/dates".to_owned(),
        "/v1/concerts/1/dates/2026-02-30/seats".to_owned(),
        "/v1/concerts/1/dates/yesterday/seats".to_owned(),
        "/v1/reservations".to_owned(),
        "/v1/reservations/abc".to_owned(),
        "/v1/reservations/1".to_owned(),
        "/v1/payments".to_owned(),
        format!("/v1/users/{user_text}/points/charge"),
        format!("/v1/users/{user_text}/points"),
        format!("/v1/users/{user_text}/points/history?limit=-5"),
        "/v1/users/%00/points".to_owned(),
        "/v1/admin/concerts".to_owned(),
        "/v1/%ZZ".to_owned(),
    ];
    let bodies = [
        "",
        "{",
        "null",
        "[]",
        "{}",
        "\"text\"",
        "{\"userId\": 5}",
        "{\"userId\": \"not-a-uuid\"}",
        "{\"concertId\": \"1\", \"date\": \"2026-12-24\", \"seatNo\": 1}",
        "{\"concertId\": 1, \"date\": \"24/12/2026\", \"seatNo\": 1}",
        "{\"concertId\": 1, \"date\": \"2026-12-24\", \"seatNo\": 1e9}",
        "{\"concertId\": 0, \"date\": \"2026-12-24\", \"seatNo\": -1}",
        "{\"amount\": 1.5}",
        "{\"amount\": -1}",
        "{\"amount\": 99999999999999999999999}",
        "{\"reservationId\": null}",
        "{\"title\": \"\", \"dates\": [{\"date\": \"2026-12-24\", \"price\": -1, \"seatCount\": 0}]}",
        "{\"title\": 7, \"dates\": \"soon\"}",
    ];
    let content_types = [
        "application/json",
        "text/plain",
        "application/json; charset=utf-8",
        "",
    ];
    let methods = [
        Method::GET,
        Method::POST,
        Method::DELETE,
        Method::PUT,
        Method::PATCH,
    ];
    let authorizations = [
        Some(format!("Bearer {token}")),
        Some("Bearer".to_owned()),
        Some("Basic abc".to_owned()),
        Some(format!("Bearer {token}x")),
        None,
    ];

    let mut generator = Generator(0x9E37_79B9_7F4A_7C15);
    for round in 0..400 {
        let method = generator.pick(&methods).clone();
        let path = generator.pick(&paths);
        let body = *generator.pick(&bodies);
        let content_type = *generator.pick(&content_types);
        let mut request = client.raw(method.clone(), path).body(body);
        if !content_type.is_empty() {
            request = request.header("content-type", content_type);
        }
        if let Some(authorization) = generator.pick(&authorizations) {
            request = request.header("authorization", authorization);
        }
        if generator.next().is_multiple_of(4) {
            request = request.header(
                "idempotency-key",
                *generator.pick(&["", "ok-key", "tab\tkey", "ключ"]),
            );
        }
        let answer = client.send(request).await?;
        assert!(
            !answer.status.is_server_error(),
            "round {round}: {method} {path} {body:?} answered {}: {}",
            answer.status,
            answer.text
        );
        if answer.status.is_client_error() {
            assert!(
                answer
                    .content_type()
                    .starts_with("application/problem+json"),
                "round {round}: {method} {path} answered {} as {:?}",
                answer.status,
                answer.content_type()
            );
            assert!(
                !answer.code().is_empty(),
                "round {round}: no code in {}",
                answer.text
            );
        }
    }
    app.shutdown().await
}
