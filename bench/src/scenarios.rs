//! The multi-request scenario: a user's whole journey, from a new token to a paid seat.

use std::time::Duration;

use anyhow::Context;
use uuid::Uuid;

use crate::client::{Call, Conn};
use crate::fixtures::BenchConcert;
use crate::measure::Scenario;

/// token → poll until ACTIVE → seat list → hold → charge → pay. Each unit is one new user on
/// seat `n` of the concert. Polls every 100 ms (faster than `Retry-After` asks, to measure the
/// service rather than the client's patience).
pub struct Journey {
    pub concert: BenchConcert,
}

impl Scenario for Journey {
    async fn run_one(&self, conn: &mut Conn, n: u64) -> anyhow::Result<()> {
        let user = Uuid::new_v4();
        let json = conn
            .send(&Call::post(
                "/v1/queue/tokens",
                format!("{{\"userId\":\"{user}\"}}"),
            ))
            .await?
            .expect(&[201])
            .context("token")?;
        let token = json["token"].as_str().context("token")?.to_owned();
        let mut status = json["status"].clone();
        let mut polls = 0;
        while status != "ACTIVE" {
            polls += 1;
            anyhow::ensure!(polls < 300, "not admitted within 30 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
            status = conn
                .send(&Call::get("/v1/queue/status").bearer(&token))
                .await?
                .expect(&[200])
                .context("status")?["status"]
                .clone();
        }
        let (date, seat) = self.concert.seat(n);
        let concert = self.concert.id;
        conn.send(&Call::get(format!("/v1/concerts/{concert}/dates/{date}/seats")).bearer(&token))
            .await?
            .expect(&[200])
            .context("seats")?;
        let hold = conn
            .send(
                &Call::post(
                    "/v1/reservations",
                    format!("{{\"concertId\":{concert},\"date\":\"{date}\",\"seatNo\":{seat}}}"),
                )
                .bearer(&token),
            )
            .await?
            .expect(&[201])
            .context("hold")?;
        let reservation = hold["reservationId"].as_i64().context("reservationId")?;
        conn.send(
            &Call::post(
                format!("/v1/users/{user}/points/charge"),
                "{\"amount\":1000}",
            )
            .idempotency_key(format!("jc-{n}")),
        )
        .await?
        .expect(&[200])
        .context("charge")?;
        conn.send(
            &Call::post(
                "/v1/payments",
                format!("{{\"reservationId\":{reservation}}}"),
            )
            .bearer(&token)
            .idempotency_key(format!("jp-{n}")),
        )
        .await?
        .expect(&[201])
        .context("pay")?;
        Ok(())
    }
}
