//! The wait-estimate simulation of docs/PERFORMANCE.md: a sale on several instances, where every
//! simulated user joins the line at a seeded random moment, waits (polling its status), and once
//! admitted holds a seat and pays after random thinking times. At the end it compares the
//! `estimatedWaitSeconds` each user was told on joining with the wait it really had (from the
//! stored tickets: `admitted_at − issued_at`) and prints the error's median and 90th percentile.
//! `bench/eta.sh` starts the instances (for this tree's server and an earlier one).

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::{Value, json};
use tokio::time::Instant;
use uuid::Uuid;

#[derive(Parser, Clone)]
#[command(
    name = "eta-sim",
    about = "Wait-estimate simulation of docs/PERFORMANCE.md"
)]
struct Args {
    /// The instances' base URLs, comma-separated; user n uses instance n mod their number.
    #[arg(long, value_delimiter = ',')]
    servers: Vec<String>,
    /// Their database, to read when each ticket was issued and admitted.
    #[arg(long)]
    database_url: String,
    #[arg(long, env = "ADMIN_API_KEY")]
    admin_key: String,
    #[arg(long, default_value_t = 2_000)]
    users: usize,
    /// Share of the users who arrive in the opening burst (the first 2 seconds); the others
    /// arrive evenly at random over the following `--spread-seconds`.
    #[arg(long, default_value_t = 0.6)]
    burst: f64,
    #[arg(long, default_value_t = 40)]
    spread_seconds: u64,
    /// Thinking time once admitted before holding a seat, and again before paying: uniform in
    /// `[min, max]` milliseconds each.
    #[arg(long, default_value_t = 500)]
    think_min_ms: u64,
    #[arg(long, default_value_t = 5_000)]
    think_max_ms: u64,
    #[arg(long, default_value_t = 0x5eed_2026)]
    seed: u64,
    /// How long the instances run with an empty line before the sale opens: a real on-sale
    /// opens on servers that have been up for a while, so their last minute holds no admissions.
    #[arg(long, default_value_t = 65)]
    idle_before_seconds: u64,
    /// A label for the printed row (e.g. the commit).
    #[arg(long, default_value = "this tree")]
    label: String,
}

/// splitmix64: a seeded, reproducible stream (the same users in every run of a seed).
struct Seeded(u64);

impl Seeded {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    #[allow(clippy::cast_precision_loss)]
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high.saturating_sub(low) + 1)
    }
}

/// One simulated user's plan.
#[derive(Debug, Clone, Copy)]
struct Plan {
    user: Uuid,
    arrive: Duration,
    think_before_hold: Duration,
    think_before_pay: Duration,
    seat: (usize, u64),
}

/// What a user was told on joining.
#[derive(Debug, Clone)]
struct Told {
    user: Uuid,
    estimate: Option<u64>,
    /// Arrived in the opening burst (the first 2 seconds).
    burst: bool,
}

const SEATS_PER_DATE: u64 = 1000;
const OPENING_BURST: Duration = Duration::from_secs(2);

fn plans(args: &Args) -> Vec<Plan> {
    let mut random = Seeded(args.seed);
    (0..args.users)
        .map(|n| {
            let arrive = if random.unit() < args.burst {
                OPENING_BURST.mul_f64(random.unit())
            } else {
                #[allow(clippy::cast_precision_loss)]
                let spread = args.spread_seconds as f64;
                OPENING_BURST + Duration::from_secs_f64(random.unit() * spread)
            };
            let think = |random: &mut Seeded| {
                Duration::from_millis(random.between(args.think_min_ms, args.think_max_ms))
            };
            Plan {
                user: Uuid::from_u64_pair(args.seed, n as u64),
                arrive,
                think_before_hold: think(&mut random),
                think_before_pay: think(&mut random),
                seat: (n / SEATS_PER_DATE as usize, n as u64 % SEATS_PER_DATE + 1),
            }
        })
        .collect()
}

struct Sale {
    http: reqwest::Client,
    servers: Vec<String>,
    concert: i64,
    dates: Vec<String>,
}

impl Sale {
    fn server(&self, n: usize) -> &str {
        &self.servers[n % self.servers.len()]
    }

    async fn status(&self, n: usize, token: &str) -> anyhow::Result<Value> {
        let answer = self
            .http
            .get(format!("{}/v1/queue/status", self.server(n)))
            .bearer_auth(token)
            .send()
            .await?;
        Ok(answer.json().await?)
    }

    /// Asks for a token; a `503` (the database briefly too busy) is asked again a second later,
    /// as `Retry-After` says.
    async fn join(&self, n: usize, user: Uuid) -> anyhow::Result<Value> {
        let mut attempt = 0;
        loop {
            let answer = self
                .http
                .post(format!("{}/v1/queue/tokens", self.server(n + attempt)))
                .json(&json!({ "userId": user.to_string() }))
                .send()
                .await?;
            if answer.status() != reqwest::StatusCode::SERVICE_UNAVAILABLE || attempt == 10 {
                return Ok(answer.json().await?);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            attempt += 1;
        }
    }

    /// One user: join, wait, hold, pay. Returns what it was told on joining.
    async fn shop(&self, n: usize, plan: Plan, start: Instant) -> anyhow::Result<Told> {
        tokio::time::sleep_until(start + plan.arrive).await;
        let joined = self.join(n, plan.user).await?;
        let token = joined["token"]
            .as_str()
            .with_context(|| format!("no token: {joined}"))?
            .to_owned();
        let told = Told {
            user: plan.user,
            estimate: joined["estimatedWaitSeconds"].as_u64(),
            burst: plan.arrive < OPENING_BURST,
        };
        // Wait, polling once a second round the instances (a browser would follow Retry-After;
        // a second keeps the sessions' lengths close to the thinking times).
        let mut status = joined["status"].as_str().unwrap_or_default().to_owned();
        let mut poll = n;
        while status == "WAITING" {
            tokio::time::sleep(Duration::from_secs(1)).await;
            poll += 1;
            status = self.status(poll, &token).await?["status"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
        }
        if status != "ACTIVE" {
            bail!("user {n} ended {status} before being admitted");
        }
        tokio::time::sleep(plan.think_before_hold).await;
        let held: Value = self
            .http
            .post(format!("{}/v1/reservations", self.server(n)))
            .bearer_auth(&token)
            .json(&json!({
                "concertId": self.concert,
                "date": self.dates[plan.seat.0],
                "seatNo": plan.seat.1,
            }))
            .send()
            .await?
            .json()
            .await?;
        let reservation = held["reservationId"]
            .as_i64()
            .with_context(|| format!("user {n}: no hold: {held}"))?;
        tokio::time::sleep(plan.think_before_pay).await;
        let paid = self
            .http
            .post(format!("{}/v1/payments", self.server(n)))
            .bearer_auth(&token)
            .json(&json!({ "reservationId": reservation }))
            .send()
            .await?;
        if !paid.status().is_success() {
            bail!(
                "user {n}: payment {}: {}",
                paid.status(),
                paid.text().await?
            );
        }
        Ok(told)
    }
}

/// The concert every user buys a seat of: enough dates of 1,000 seats for everyone, free.
async fn open_sale(args: &Args) -> anyhow::Result<Sale> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let today = time::OffsetDateTime::now_utc().date();
    let dates: Vec<String> = (0..args.users.div_ceil(SEATS_PER_DATE as usize))
        .map(|d| (today + time::Duration::days(30 + d as i64)).to_string())
        .collect();
    let created: Value = http
        .post(format!("{}/v1/admin/concerts", args.servers[0]))
        .bearer_auth(&args.admin_key)
        .json(&json!({
            "title": "ETA simulation",
            "dates": dates
                .iter()
                .map(|date| json!({ "date": date, "price": 0, "seatCount": SEATS_PER_DATE }))
                .collect::<Vec<_>>(),
        }))
        .send()
        .await?
        .json()
        .await?;
    let concert = created["concertId"]
        .as_i64()
        .with_context(|| format!("concert not created: {created}"))?;
    Ok(Sale {
        http,
        servers: args.servers.clone(),
        concert,
        dates,
    })
}

/// Each user's real wait, from the stored tickets.
async fn waits(database_url: &str) -> anyhow::Result<std::collections::HashMap<Uuid, f64>> {
    let (client, connection) = tokio_postgres::connect(database_url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let rows = client
        .query(
            "SELECT user_id, extract(epoch FROM admitted_at - issued_at)::float8 \
             FROM queue_tickets WHERE admitted_at IS NOT NULL",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let at = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[at]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let sale = Arc::new(open_sale(&args).await?);
    let start = Instant::now() + Duration::from_secs(args.idle_before_seconds);
    let shoppers: Vec<_> = plans(&args)
        .into_iter()
        .enumerate()
        .map(|(n, plan)| {
            let sale = Arc::clone(&sale);
            tokio::spawn(async move { sale.shop(n, plan, start).await })
        })
        .collect();
    let mut told = Vec::with_capacity(shoppers.len());
    for shopper in shoppers {
        told.push(shopper.await??);
    }
    let took = start.elapsed();
    let waits = waits(&args.database_url).await?;
    // Users told a wait (those admitted on arrival were told none, and waited none): all of
    // them, those of the opening burst, and those who came later.
    let mut cells = vec![args.label.clone(), told.len().to_string()];
    for part in [None, Some(true), Some(false)] {
        let errors = Errors::of(
            told.iter()
                .filter(|user| part.is_none_or(|burst| user.burst == burst)),
            &waits,
        )?;
        cells.extend(errors.cells(part.is_none()));
    }
    cells.insert(2, format!("{:.0} s", took.as_secs_f64()));
    writeln!(std::io::stdout().lock(), "| {} |", cells.join(" | "))?;
    Ok(())
}

/// The errors of the estimates some users were told, sorted.
struct Errors {
    absolute: Vec<f64>,
    signed: Vec<f64>,
    waited: Vec<f64>,
}

impl Errors {
    fn of<'a>(
        told: impl Iterator<Item = &'a Told>,
        waits: &std::collections::HashMap<Uuid, f64>,
    ) -> anyhow::Result<Self> {
        let mut errors = Self {
            absolute: Vec::new(),
            signed: Vec::new(),
            waited: Vec::new(),
        };
        for user in told {
            let Some(estimate) = user.estimate else {
                continue;
            };
            let waited = *waits
                .get(&user.user)
                .with_context(|| format!("no admission stored for {}", user.user))?;
            #[allow(clippy::cast_precision_loss)]
            let error = estimate as f64 - waited;
            errors.absolute.push(error.abs());
            errors.signed.push(error);
            errors.waited.push(waited);
        }
        for values in [&mut errors.absolute, &mut errors.signed, &mut errors.waited] {
            values.sort_by(f64::total_cmp);
        }
        Ok(errors)
    }

    /// Told a wait, median wait, median and 90th percentile of the absolute error, median error
    /// (the bias); `full` adds the 90th percentile of the wait.
    fn cells(&self, full: bool) -> Vec<String> {
        let mut cells = vec![
            self.absolute.len().to_string(),
            format!("{:.0} s", percentile(&self.waited, 0.5)),
        ];
        if full {
            cells.push(format!("{:.0} s", percentile(&self.waited, 0.9)));
        }
        cells.extend([
            format!("{:.1} s", percentile(&self.absolute, 0.5)),
            format!("{:.1} s", percentile(&self.absolute, 0.9)),
            format!("{:+.1} s", percentile(&self.signed, 0.5)),
        ]);
        cells
    }
}
