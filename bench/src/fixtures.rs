//! Setting the stage: concerts through the admin API, users with active tokens through the queue
//! API (the real path), and what only SQL can do fast (a million waiting tickets, the rows the
//! pgbench baselines consume).

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use concert_application::ports::{TokenClaims, TokenSigner};
use concert_domain::{TicketNo, UserId};
use concert_token::HmacTokenSigner;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::client::{Call, Conn};

/// The first date of every benchmark concert.
pub const FIRST_DATE: Date = time::macros::date!(2030 - 01 - 01);

/// Seats per date of the large benchmark concerts.
pub const SEATS_PER_DATE: u64 = 1000;

/// A concert created for one scenario.
#[derive(Debug, Clone)]
pub struct BenchConcert {
    pub id: i64,
    pub dates: u64,
    pub seats_per_date: u64,
}

impl BenchConcert {
    /// Date and seat number of the `n`-th seat (dates filled one after the other).
    pub fn seat(&self, n: u64) -> (Date, u64) {
        let n = n % (self.dates * self.seats_per_date);
        (
            date_plus(n / self.seats_per_date),
            n % self.seats_per_date + 1,
        )
    }

    pub fn capacity(&self) -> u64 {
        self.dates * self.seats_per_date
    }
}

pub fn date_plus(days: u64) -> Date {
    FIRST_DATE + time::Duration::days(i64::try_from(days).unwrap_or(0))
}

/// A user with a live queue token.
#[derive(Debug, Clone)]
pub struct BenchUser {
    pub id: Uuid,
    pub token: String,
}

/// Runs `f` over `items` on `parallel` connections, each item in turn on its connection; the
/// results come back in the items' order.
pub async fn parallel<T, R, F, Fut>(
    addr: SocketAddr,
    items: Vec<T>,
    parallel: usize,
    f: F,
) -> anyhow::Result<Vec<R>>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(Conn, T) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<(Conn, R)>> + Send,
{
    let mut chunks: Vec<Vec<(usize, T)>> = (0..parallel.max(1)).map(|_| Vec::new()).collect();
    let lanes = chunks.len();
    for (i, item) in items.into_iter().enumerate() {
        chunks[i % lanes].push((i, item));
    }
    let mut tasks = Vec::new();
    for chunk in chunks {
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr).await?;
            let mut out = Vec::with_capacity(chunk.len());
            for (i, item) in chunk {
                let (back, result) = f(conn, item).await?;
                conn = back;
                out.push((i, result));
            }
            anyhow::Ok(out)
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, r)| r).collect())
}

/// Creates a concert with `dates` dates of `seats` seats at `price` through the admin API.
pub async fn create_concert(
    conn: &mut Conn,
    admin_key: &str,
    title: &str,
    dates: u64,
    seats: u64,
    price: i64,
) -> anyhow::Result<BenchConcert> {
    let dates_json: Vec<serde_json::Value> = (0..dates)
        .map(|d| serde_json::json!({"date": date_plus(d).to_string(), "price": price, "seatCount": seats}))
        .collect();
    let body = serde_json::json!({"title": title, "dates": dates_json}).to_string();
    let answer = conn
        .send(&Call::post("/v1/admin/concerts", body).bearer(admin_key))
        .await?;
    let json = answer.expect(&[201]).context("creating a concert")?;
    let id = json["concertId"]
        .as_i64()
        .context("concertId in the answer")?;
    Ok(BenchConcert {
        id,
        dates,
        seats_per_date: seats,
    })
}

/// Takes a queue token for each of `count` new users (whatever status it starts in).
pub async fn joined_users(addr: SocketAddr, count: usize) -> anyhow::Result<Vec<BenchUser>> {
    let ids: Vec<Uuid> = (0..count).map(|_| Uuid::new_v4()).collect();
    parallel(addr, ids, 8, |mut conn, id: Uuid| async move {
        let answer = conn
            .send(&Call::post(
                "/v1/queue/tokens",
                format!("{{\"userId\":\"{id}\"}}"),
            ))
            .await?;
        let json = answer.expect(&[200, 201]).context("taking a queue token")?;
        let token = json["token"].as_str().context("token")?.to_owned();
        Ok((conn, BenchUser { id, token }))
    })
    .await
}

/// Takes a queue token for each user and waits until every one is ACTIVE.
pub async fn active_users(addr: SocketAddr, count: usize) -> anyhow::Result<Vec<BenchUser>> {
    let users = joined_users(addr, count).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let tokens: Vec<String> = users.iter().map(|u| u.token.clone()).collect();
    parallel(addr, tokens, 8, move |mut conn, token: String| async move {
        loop {
            let answer = conn
                .send(&Call::get("/v1/queue/status").bearer(token.clone()))
                .await?;
            let json = answer.expect(&[200])?;
            if json["status"] == "ACTIVE" {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!("a token is still {} after 30 s", json["status"]);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok((conn, ()))
    })
    .await?;
    Ok(users)
}

/// A connection to the benchmark database for the SQL-side setup.
pub async fn sql(database_url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(database_url, tokio_postgres::NoTls)
        .await
        .with_context(|| format!("connecting to {database_url}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// Signs tokens for tickets inserted with SQL, as the server would have.
pub struct Minter {
    signer: HmacTokenSigner,
    issued_at: OffsetDateTime,
}

impl Minter {
    pub fn new(secret: &str) -> Self {
        Self {
            signer: HmacTokenSigner::new(secret.as_bytes()),
            issued_at: OffsetDateTime::now_utc(),
        }
    }

    pub fn token(&self, ticket: i64, user: Uuid) -> anyhow::Result<String> {
        Ok(self.signer.sign(&TokenClaims {
            user: UserId::from_uuid(user),
            ticket: TicketNo::new(ticket).map_err(|e| anyhow::anyhow!("ticket {ticket}: {e}"))?,
            issued_at: self.issued_at,
        }))
    }
}

/// Fills the queue database's only active slot with a ticket that never ends, so that every
/// ticket inserted after it stays WAITING (the queue server runs with `QUEUE_MAX_ACTIVE=1`).
/// The bench makes no room, so the counters have one row, line 0's: the statement names no key
/// and fits the schema before rooms too (a `BENCH_BEFORE_BIN` run).
pub async fn block_the_line(db: &tokio_postgres::Client) -> anyhow::Result<()> {
    db.batch_execute(
        "WITH head AS ( \
             INSERT INTO queue_tickets (user_id, status, issued_at, admitted_at, active_until, last_seen) \
             VALUES (gen_random_uuid(), 'ACTIVE', now(), now(), now() + interval '1 day', \
                     now() + interval '1 day') \
             RETURNING ticket) \
         UPDATE queue_state SET serving = (SELECT ticket FROM head), admitted_total = 1, \
                                issued_total = 1, issued_hwm = (SELECT ticket FROM head)",
    )
    .await
    .context("blocking the line")
}

/// Inserts `count` WAITING tickets in one statement (`generate_series`).
pub async fn insert_waiting(db: &tokio_postgres::Client, count: u64) -> anyhow::Result<()> {
    db.execute(
        "INSERT INTO queue_tickets (user_id, status, issued_at) \
         SELECT gen_random_uuid(), 'WAITING', now() FROM generate_series(1, $1::bigint)",
        &[&i64::try_from(count)?],
    )
    .await
    .context("inserting waiting tickets")?;
    Ok(())
}

/// Waits (up to a minute) until no autovacuum worker runs on this database: a million inserted
/// tickets wake one, and it would compete with the measured run.
pub async fn await_no_autovacuum(db: &tokio_postgres::Client) -> anyhow::Result<()> {
    for _ in 0..120 {
        let row = db
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND backend_type = 'autovacuum worker'",
                &[],
            )
            .await?;
        if row.get::<_, i64>(0) == 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

/// Up to `count` waiting tickets spread evenly over the whole line, with tokens.
pub async fn waiting_tokens(
    db: &tokio_postgres::Client,
    minter: &Minter,
    count: i64,
) -> anyhow::Result<Vec<String>> {
    let rows = db
        .query(
            "WITH line AS (SELECT min(ticket) AS lo, max(ticket) AS hi FROM queue_tickets \
                           WHERE status = 'WAITING') \
             SELECT t.ticket, t.user_id FROM queue_tickets t, line \
             WHERE t.status = 'WAITING' \
               AND t.ticket IN (SELECT lo + (hi - lo) * g / $1::bigint FROM generate_series(0, $1::bigint - 1) g) \
             ORDER BY t.ticket",
            &[&count],
        )
        .await
        .context("reading waiting tickets")?;
    rows.iter()
        .map(|row| minter.token(row.get(0), row.get(1)))
        .collect()
}
