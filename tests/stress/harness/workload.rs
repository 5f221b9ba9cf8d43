//! The random workload: each simulated user takes a queue token, charges points, holds seats,
//! pays, cancels and lets holds lapse, choosing at random (seeded), sending every request to the
//! next instance in round-robin order.
//!
//! A user is driven by one task only, so its client knows its balance exactly: every charge and
//! payment carries an `Idempotency-Key` and is retried (on another instance) until it gets a
//! definitive answer, so a lost answer never leaves the client in doubt. Each answer is checked
//! against what the client knows (a charge answers the new balance exactly, a payment is refused
//! for want of points only when the balance is short, a hold is reported lapsed only after its
//! deadline...), and the client's book (charged, payments) is compared with the database at the
//! end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use concert_e2e::ADMIN_KEY;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use super::audit::{Books, UserBook};
use super::fleet::{Fleet, Op, Reply, Request};

/// How long a client keeps retrying an idempotent request before the test fails: the service must
/// come back within this after any fault the tests inject.
const DEFINITIVE_WITHIN: Duration = Duration::from_secs(90);

/// One date of the stress concert.
#[derive(Debug, Clone)]
pub struct StageDate {
    pub date: String,
    pub price: i64,
    pub seats: u32,
}

/// What every simulated user shares.
pub struct Stage {
    pub fleet: Arc<Fleet>,
    pub books: Books,
    pub concert: i64,
    pub dates: Vec<StageDate>,
    pub seed: u64,
    pub stop_at: Instant,
}

impl Stage {
    /// Creates the concert and the stage for a load of `duration` from now: two dates, and one
    /// more per 3 s of load, so that neither a short run nor a soak runs out of seats.
    pub async fn prepare(
        fleet: Arc<Fleet>,
        seed: u64,
        seats_per_date: u32,
        duration: Duration,
    ) -> anyhow::Result<Arc<Self>> {
        let today = OffsetDateTime::now_utc().date();
        let count = 2 + duration.as_secs() / 3;
        let dates: Vec<StageDate> = (0..count)
            .map(|i| StageDate {
                date: (today + time::Duration::days(30 + i as i64)).to_string(),
                price: if i % 2 == 0 { 20_000 } else { 35_000 },
                seats: seats_per_date,
            })
            .collect();
        let concert = create_concert(&fleet, "Stress Night", &dates).await?;
        Ok(Arc::new(Self {
            fleet,
            books: Books::default(),
            concert,
            dates,
            seed,
            stop_at: Instant::now() + duration,
        }))
    }
}

/// Creates a concert through instance 0 and returns its id.
pub async fn create_concert(
    fleet: &Fleet,
    title: &str,
    dates: &[StageDate],
) -> anyhow::Result<i64> {
    let body = json!({
        "title": title,
        "dates": dates.iter().map(|d| json!({
            "date": d.date, "price": d.price, "seatCount": d.seats
        })).collect::<Vec<_>>(),
    });
    let answer = fleet
        .send(
            0,
            Op::Admin,
            Request::post("/v1/admin/concerts", body).token(ADMIN_KEY),
        )
        .await?;
    ensure!(answer.status == 201, "concert refused: {}", answer.text);
    answer.body["concertId"].as_i64().context("concertId")
}

/// What the users did, summed.
#[derive(Debug, Default, Clone)]
pub struct LoadFigures {
    pub users: usize,
    pub operations: u64,
    pub tokens: u64,
    pub charges: u64,
    pub replays: u64,
    pub holds: u64,
    pub holds_refused: u64,
    pub holds_unknown: u64,
    pub payments: u64,
    pub payments_refused_balance: u64,
    pub payments_lapsed: u64,
    pub cancels: u64,
    pub retries: u64,
}

impl LoadFigures {
    fn add(&mut self, other: &Self) {
        self.users += other.users;
        self.operations += other.operations;
        self.tokens += other.tokens;
        self.charges += other.charges;
        self.replays += other.replays;
        self.holds += other.holds;
        self.holds_refused += other.holds_refused;
        self.holds_unknown += other.holds_unknown;
        self.payments += other.payments;
        self.payments_refused_balance += other.payments_refused_balance;
        self.payments_lapsed += other.payments_lapsed;
        self.cancels += other.cancels;
        self.retries += other.retries;
    }
}

impl std::fmt::Display for LoadFigures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} users, {} operations: {} tokens, {} charges ({} replayed), {} holds won / {} refused \
             / {} unanswered, {} payments, {} refused for balance, {} of lapsed holds, {} cancels, \
             {} retries",
            self.users,
            self.operations,
            self.tokens,
            self.charges,
            self.replays,
            self.holds,
            self.holds_refused,
            self.holds_unknown,
            self.payments,
            self.payments_refused_balance,
            self.payments_lapsed,
            self.cancels,
            self.retries
        )
    }
}

/// Runs `users` simulated users until the stage's stop time; returns what they did.
pub async fn run(stage: Arc<Stage>, users: usize) -> anyhow::Result<LoadFigures> {
    let mut tasks = Vec::new();
    for index in 0..users {
        let stage = stage.clone();
        tasks.push(tokio::spawn(async move {
            let mut user = SimulatedUser::new(stage, index);
            let result = user.run().await;
            result.map(|()| user.figures)
        }));
    }
    let mut figures = LoadFigures::default();
    let mut errors = Vec::new();
    for task in tasks {
        match task.await.context("a simulated user panicked")? {
            Ok(f) => figures.add(&f),
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    ensure!(
        errors.is_empty(),
        "{} simulated user(s) failed (seed {:#x}):\n  {}",
        errors.len(),
        stage.seed,
        errors.join("\n  ")
    );
    Ok(figures)
}

/// Retries `make()` on the next instances until an answer that settles it: not 503, not a
/// transport failure, not `IDEMPOTENCY_KEY_IN_USE`, not a lagging `QUEUE_NOT_ACTIVE`. Returns the
/// answer and the number of attempts.
async fn settle(
    fleet: &Fleet,
    op: Op,
    make: impl Fn() -> Request,
) -> anyhow::Result<(concert_e2e::Answer, u64)> {
    let deadline = Instant::now() + DEFINITIVE_WITHIN;
    let mut pause = Duration::from_millis(50);
    let mut attempts = 0;
    loop {
        attempts += 1;
        match fleet.send(fleet.next_instance(), op, make()).await {
            Ok(answer) if answer.status == 503 => {}
            Ok(answer) if answer.status == 409 && answer.code() == "IDEMPOTENCY_KEY_IN_USE" => {}
            Ok(answer) if answer.status == 403 && answer.code() == "QUEUE_NOT_ACTIVE" => {}
            Ok(answer) => return Ok((answer, attempts)),
            Err(_) => {}
        }
        ensure!(
            Instant::now() < deadline,
            "no definitive answer to {op:?} within {DEFINITIVE_WITHIN:?}"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(800));
    }
}

#[derive(Debug, Clone)]
struct Hold {
    id: i64,
    price: i64,
    expires_at: OffsetDateTime,
    date: usize,
    seat: i64,
}

/// The deterministic user id of simulated user `index` under `seed`.
pub fn user_id(seed: u64, salt: u64, index: usize) -> Uuid {
    let mut rng = StdRng::seed_from_u64(seed ^ salt.rotate_left(17) ^ index as u64);
    let mut bytes = [0u8; 16];
    rng.fill(&mut bytes);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

struct SimulatedUser {
    stage: Arc<Stage>,
    index: usize,
    user: Uuid,
    rng: StdRng,
    home: usize,
    token: Option<String>,
    holds: Vec<Hold>,
    sold: Vec<(usize, i64)>,
    known: UserBook,
    available: Vec<(usize, i64)>,
    counter: u64,
    figures: LoadFigures,
}

fn now_utc() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn parse_time(value: &Value) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(value.as_str()?, &Rfc3339).ok()
}

impl SimulatedUser {
    fn new(stage: Arc<Stage>, index: usize) -> Self {
        let seed = stage.seed;
        let home = index % stage.fleet.size();
        Self {
            user: user_id(seed, 0xB00C, index),
            rng: StdRng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index as u64),
            stage,
            index,
            home,
            token: None,
            holds: Vec::new(),
            sold: Vec::new(),
            known: UserBook::default(),
            available: Vec::new(),
            counter: 0,
            figures: LoadFigures {
                users: 1,
                ..LoadFigures::default()
            },
        }
    }

    fn stopped(&self) -> bool {
        Instant::now() >= self.stage.stop_at
    }

    fn fleet(&self) -> &Fleet {
        &self.stage.fleet
    }

    fn violation(&self, what: String) {
        self.fleet()
            .recorder
            .violation(format!("user {} ({}): {what}", self.index, self.user));
    }

    async fn send(&mut self, op: Op, request: Request) -> Reply {
        self.figures.operations += 1;
        let instance = self.stage.fleet.next_instance();
        self.stage.fleet.send(instance, op, request).await
    }

    /// [`settle`] through this user's fleet, counting the attempts. Returns the answer and
    /// whether an earlier attempt may have had an effect.
    async fn definitive(
        &mut self,
        op: Op,
        make: impl Fn() -> Request,
    ) -> anyhow::Result<(concert_e2e::Answer, bool)> {
        let fleet = self.stage.fleet.clone();
        let (answer, attempts) = settle(&fleet, op, make).await?;
        self.figures.operations += attempts;
        self.figures.retries += attempts - 1;
        Ok((answer, attempts > 1))
    }

    async fn run(&mut self) -> anyhow::Result<()> {
        while !self.stopped() {
            let roll = self.rng.random_range(0..100);
            match roll {
                0..12 => self.charge().await?,
                12..45 => self.hold().await?,
                45..55 => self.pay().await?,
                55..65 => {
                    if !self.pay_two_at_once().await? {
                        self.pay().await?;
                    }
                }
                65..73 => self.cancel().await?,
                73..85 => self.browse().await?,
                85..93 => self.check_balance().await?,
                _ => self.check_history().await?,
            }
            let think = self.rng.random_range(0..25);
            tokio::time::sleep(Duration::from_millis(think)).await;
        }
        Ok(())
    }

    /// Makes sure the user has an ACTIVE token; false when the load stopped first.
    async fn ensure_token(&mut self) -> anyhow::Result<bool> {
        if self.token.is_some() {
            return Ok(true);
        }
        let mut pause = Duration::from_millis(50);
        let token = loop {
            if self.stopped() {
                return Ok(false);
            }
            let body = json!({ "userId": self.user.to_string() });
            match self
                .send(Op::Issue, Request::post("/v1/queue/tokens", body))
                .await
            {
                Ok(answer) if answer.status == 201 || answer.status == 200 => {
                    break answer.body["token"]
                        .as_str()
                        .context("token in answer")?
                        .to_owned();
                }
                Ok(answer) if answer.status == 503 => {}
                Ok(answer) => {
                    self.violation(format!("token refused: {} {}", answer.status, answer.text));
                }
                Err(_) => {}
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(800));
        };
        self.figures.tokens += 1;
        // Poll one instance (the home one) until ACTIVE: its positions must never grow.
        let mut last_position = i64::MAX;
        loop {
            if self.stopped() {
                return Ok(false);
            }
            self.figures.operations += 1;
            let home = self.home;
            match self
                .stage
                .fleet
                .send(
                    home,
                    Op::Status,
                    Request::get("/v1/queue/status").token(&token),
                )
                .await
            {
                Ok(answer) if answer.status == 200 => match answer.body["status"].as_str() {
                    Some("ACTIVE") => break,
                    Some("WAITING") => {
                        let position = answer.body["position"].as_i64().unwrap_or(0);
                        if position > last_position {
                            self.violation(format!(
                                "position grew from {last_position} to {position}"
                            ));
                        }
                        last_position = position;
                    }
                    _ => {
                        self.violation(format!("fresh token reads {}", answer.text));
                        return Ok(false);
                    }
                },
                Ok(answer) if answer.status == 503 => {}
                Ok(answer) => {
                    self.violation(format!("status poll: {} {}", answer.status, answer.text));
                }
                Err(_) => {
                    // The home instance is down (crash test): keep to the next one from now on.
                    self.home = (self.home + 1) % self.stage.fleet.size();
                    last_position = i64::MAX;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.token = Some(token);
        Ok(true)
    }

    fn next_key(&mut self, kind: &str) -> String {
        self.counter += 1;
        format!(
            "{kind}-{:x}-{}-{}",
            self.stage.seed, self.index, self.counter
        )
    }

    async fn charge(&mut self) -> anyhow::Result<()> {
        let amount: i64 = self.rng.random_range(1..=4) * 10_000;
        let key = self.next_key("charge");
        let path = format!("/v1/users/{}/points/charge", self.user);
        let make = {
            let (path, key) = (path.clone(), key.clone());
            move || Request::post(path.clone(), json!({ "amount": amount })).key(key.clone())
        };
        let (answer, _) = self.definitive(Op::Charge, &make).await?;
        if answer.status != 200 {
            self.violation(format!(
                "charge of {amount}: {} {}",
                answer.status, answer.text
            ));
            return Ok(());
        }
        let expected = self.known.balance() + amount;
        let balance = answer.body["balance"].as_i64();
        if balance != Some(expected) {
            self.violation(format!(
                "charge of {amount} answered balance {balance:?}, expected {expected}"
            ));
        }
        self.known.charged += amount;
        self.stage
            .books
            .update(self.user, |book| book.charged += amount);
        self.figures.charges += 1;
        if self.rng.random_bool(0.15) {
            // A client retrying after a lost answer: the same key gets the same answer, no effect.
            let (again, _) = self.definitive(Op::Charge, &make).await?;
            self.figures.replays += 1;
            if again.status != 200 || again.body["balance"] != answer.body["balance"] {
                self.violation(format!(
                    "replayed charge key {key} answered {} {}, first answer {}",
                    again.status, again.text, answer.text
                ));
            }
        }
        Ok(())
    }

    async fn hold(&mut self) -> anyhow::Result<()> {
        if !self.ensure_token().await? {
            return Ok(());
        }
        let token = self.token.clone().unwrap_or_default();
        let (date, seat) = match self.available.choose(&mut self.rng) {
            Some(choice) if self.rng.random_bool(0.7) => *choice,
            _ => {
                let date = self.rng.random_range(0..self.stage.dates.len());
                let seats = i64::from(self.stage.dates[date].seats);
                (date, self.rng.random_range(1..=seats))
            }
        };
        let body = json!({
            "concertId": self.stage.concert,
            "date": self.stage.dates[date].date,
            "seatNo": seat,
        });
        let mut lagging = 0;
        loop {
            let reply = self
                .send(
                    Op::Hold,
                    Request::post("/v1/reservations", body.clone()).token(token.clone()),
                )
                .await;
            let answer = match reply {
                Ok(answer) => answer,
                Err(_) => {
                    // No answer: the hold may exist; it lapses by itself.
                    self.figures.holds_unknown += 1;
                    return Ok(());
                }
            };
            match (answer.status.as_u16(), answer.code()) {
                (201, _) => {
                    let expires_at = parse_time(&answer.body["expiresAt"]);
                    let id = answer.body["reservationId"].as_i64();
                    let price = answer.body["price"].as_i64();
                    match (id, expires_at, price) {
                        (Some(id), Some(expires_at), Some(price))
                            if price == self.stage.dates[date].price
                                && answer.body["status"] == "HELD"
                                && answer.body["seatNo"] == seat =>
                        {
                            self.holds.push(Hold {
                                id,
                                price,
                                expires_at,
                                date,
                                seat,
                            });
                            self.available.retain(|s| *s != (date, seat));
                            self.figures.holds += 1;
                        }
                        _ => self.violation(format!("hold answer {}", answer.text)),
                    }
                }
                (409, "SEAT_UNAVAILABLE" | "HOLD_LIMIT_REACHED") => {
                    self.available.retain(|s| *s != (date, seat));
                    self.figures.holds_refused += 1;
                }
                (403, "QUEUE_NOT_ACTIVE") if lagging < 30 => {
                    // Another instance's view of the line may lag by up to a second.
                    lagging += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                (401, "TOKEN_EXPIRED") => self.token = None,
                (503, _) => self.figures.holds_unknown += 1,
                _ => self.violation(format!("hold: {} {}", answer.status, answer.text)),
            }
            return Ok(());
        }
    }

    async fn pay(&mut self) -> anyhow::Result<()> {
        let now = now_utc();
        let margin = time::Duration::milliseconds(1500);
        let fresh: Vec<usize> = (0..self.holds.len())
            .filter(|i| self.holds[*i].expires_at - now > margin)
            .collect();
        let lapsed: Vec<usize> = (0..self.holds.len())
            .filter(|i| now - self.holds[*i].expires_at > time::Duration::milliseconds(300))
            .collect();
        let pick = if !fresh.is_empty() && (lapsed.is_empty() || self.rng.random_bool(0.8)) {
            fresh.choose(&mut self.rng).copied()
        } else {
            lapsed.choose(&mut self.rng).copied()
        };
        let Some(pick) = pick else {
            return Ok(());
        };
        if !self.ensure_token().await? {
            return Ok(());
        }
        let hold = self.holds[pick].clone();
        let token = self.token.clone().unwrap_or_default();
        let key = self.next_key("pay");
        let make = {
            let key = key.clone();
            move || {
                Request::post("/v1/payments", json!({ "reservationId": hold.id }))
                    .token(token.clone())
                    .key(key.clone())
            }
        };
        let balance_before = self.known.balance();
        let (answer, _) = self.definitive(Op::Pay, make).await?;
        let received = now_utc();
        let hold = self.holds[pick].clone();
        match (answer.status.as_u16(), answer.code()) {
            (201, _) => {
                let id = answer.body["paymentId"].as_i64();
                let amount = answer.body["amount"].as_i64();
                let balance = answer.body["balance"].as_i64();
                if balance_before < hold.price {
                    self.violation(format!(
                        "paid {} with a balance of {balance_before}: {}",
                        hold.price, answer.text
                    ));
                }
                if amount != Some(hold.price) || balance != Some(balance_before - hold.price) {
                    self.violation(format!(
                        "payment of {} from {balance_before} answered {}",
                        hold.price, answer.text
                    ));
                }
                let id = id.context("paymentId in a 201 answer")?;
                self.known.payments.insert(id, (hold.id, hold.price));
                self.stage.books.update(self.user, |book| {
                    book.payments.insert(id, (hold.id, hold.price));
                });
                self.holds.remove(pick);
                self.sold.push((hold.date, hold.seat));
                // The payment ended the token.
                self.token = None;
                self.figures.payments += 1;
            }
            (409, "INSUFFICIENT_BALANCE") => {
                if balance_before >= hold.price {
                    self.violation(format!(
                        "payment of {} refused for balance with {balance_before}",
                        hold.price
                    ));
                }
                self.figures.payments_refused_balance += 1;
            }
            (409, "RESERVATION_EXPIRED" | "RESERVATION_NOT_HELD") => {
                if received < hold.expires_at {
                    self.violation(format!(
                        "hold {} (until {}) reported {} at {received}",
                        hold.id,
                        hold.expires_at,
                        answer.code()
                    ));
                }
                self.holds.remove(pick);
                self.figures.payments_lapsed += 1;
            }
            (401, "TOKEN_EXPIRED") => self.token = None,
            _ => self.violation(format!("payment: {} {}", answer.status, answer.text)),
        }
        Ok(())
    }

    /// Pays two live holds at once through two instances (a double spend when the balance covers
    /// one): whatever goes through, the balance never goes below zero and the answers agree with
    /// one order of the two payments. Returns false when there are not two holds to pay.
    async fn pay_two_at_once(&mut self) -> anyhow::Result<bool> {
        let now = now_utc();
        let margin = time::Duration::milliseconds(1500);
        let fresh: Vec<Hold> = self
            .holds
            .iter()
            .filter(|h| h.expires_at - now > margin)
            .cloned()
            .collect();
        if fresh.len() < 2 || !self.ensure_token().await? {
            return Ok(false);
        }
        let pair: Vec<Hold> = fresh.sample(&mut self.rng, 2).cloned().collect();
        let token = self.token.clone().unwrap_or_default();
        let requests: Vec<_> = pair
            .iter()
            .map(|hold| {
                let (id, token, key) = (hold.id, token.clone(), self.next_key("pair"));
                move || {
                    Request::post("/v1/payments", json!({ "reservationId": id }))
                        .token(token.clone())
                        .key(key.clone())
                }
            })
            .collect();
        let fleet = self.stage.fleet.clone();
        let known = self.known.balance();
        let answers =
            futures::future::join_all(requests.iter().map(|make| settle(&fleet, Op::Pay, make)))
                .await;
        let received = now_utc();
        self.fleet().recorder.count_races(1);
        let mut paid = Vec::new();
        let mut refused_for_balance = Vec::new();
        let mut token_ended = false;
        for (hold, answer) in pair.iter().zip(answers) {
            let (answer, attempts) = answer?;
            self.figures.operations += attempts;
            self.figures.retries += attempts - 1;
            match (answer.status.as_u16(), answer.code()) {
                (201, _) => {
                    let id = answer.body["paymentId"].as_i64().context("paymentId")?;
                    let balance = answer.body["balance"].as_i64().context("balance")?;
                    if answer.body["amount"].as_i64() != Some(hold.price) {
                        self.violation(format!("payment answered {}", answer.text));
                    }
                    paid.push((hold.clone(), id, balance));
                }
                (409, "INSUFFICIENT_BALANCE") => refused_for_balance.push(hold.clone()),
                (409, "RESERVATION_EXPIRED" | "RESERVATION_NOT_HELD") => {
                    if received < hold.expires_at {
                        self.violation(format!(
                            "hold {} (until {}) reported {} at {received}",
                            hold.id,
                            hold.expires_at,
                            answer.code()
                        ));
                    }
                    self.holds.retain(|h| h.id != hold.id);
                }
                (401, "TOKEN_EXPIRED") => token_ended = true,
                _ => self.violation(format!("payment: {} {}", answer.status, answer.text)),
            }
        }
        let spent: i64 = paid.iter().map(|(hold, _, _)| hold.price).sum();
        if spent > known {
            self.violation(format!(
                "paid {spent} at once from a balance of {known}: {paid:?}"
            ));
        }
        // The payment that went first answers `known - its price`, the second `known - spent`.
        let mut balances: Vec<(i64, i64)> = paid.iter().map(|(h, _, b)| (*b, h.price)).collect();
        balances.sort_unstable_by(|a, b| b.cmp(a));
        let consistent = match balances.as_slice() {
            [] => true,
            [(balance, price)] => *balance == known - price,
            [(first, price), (second, _)] => *first == known - price && *second == known - spent,
            _ => false,
        };
        if !consistent {
            self.violation(format!(
                "two payments at once from {known} answered balances {balances:?}"
            ));
        }
        for hold in &refused_for_balance {
            if known - spent >= hold.price {
                self.violation(format!(
                    "payment of {} refused for balance; {known} known, {spent} paid beside it",
                    hold.price
                ));
            }
        }
        if token_ended && paid.is_empty() {
            self.violation("token ended though neither payment went through".to_owned());
        }
        for (hold, id, _) in &paid {
            self.known.payments.insert(*id, (hold.id, hold.price));
            self.stage.books.update(self.user, |book| {
                book.payments.insert(*id, (hold.id, hold.price));
            });
            self.holds.retain(|h| h.id != hold.id);
            self.sold.push((hold.date, hold.seat));
        }
        self.figures.payments += paid.len() as u64;
        self.figures.payments_refused_balance += refused_for_balance.len() as u64;
        if !paid.is_empty() || token_ended {
            self.token = None;
        }
        Ok(true)
    }

    async fn cancel(&mut self) -> anyhow::Result<()> {
        if self.holds.is_empty() {
            return Ok(());
        }
        if !self.ensure_token().await? {
            return Ok(());
        }
        let pick = self.rng.random_range(0..self.holds.len());
        let hold = self.holds[pick].clone();
        let token = self.token.clone().unwrap_or_default();
        let path = format!("/v1/reservations/{}", hold.id);
        let (answer, retried) = self
            .definitive(Op::Cancel, move || {
                Request::delete(path.clone()).token(token.clone())
            })
            .await?;
        let received = now_utc();
        match (answer.status.as_u16(), answer.code()) {
            (200, _) => {
                if answer.body["status"] != "CANCELLED" {
                    self.violation(format!("cancel answered {}", answer.text));
                }
                self.figures.cancels += 1;
                self.holds.remove(pick);
            }
            (409, "RESERVATION_NOT_HELD") => {
                if received < hold.expires_at && !retried {
                    self.violation(format!(
                        "live hold {} (until {}) not cancellable at {received}",
                        hold.id, hold.expires_at
                    ));
                }
                self.holds.remove(pick);
            }
            (401, "TOKEN_EXPIRED") => self.token = None,
            _ => self.violation(format!("cancel: {} {}", answer.status, answer.text)),
        }
        Ok(())
    }

    /// Reads the seats of a date: none of this user's live holds or bought seats may be listed.
    async fn browse(&mut self) -> anyhow::Result<()> {
        if !self.ensure_token().await? {
            return Ok(());
        }
        let token = self.token.clone().unwrap_or_default();
        let date = self.rng.random_range(0..self.stage.dates.len());
        let path = format!(
            "/v1/concerts/{}/dates/{}/seats",
            self.stage.concert, self.stage.dates[date].date
        );
        let sent = now_utc();
        let Ok(answer) = self.send(Op::Seats, Request::get(path).token(token)).await else {
            return Ok(());
        };
        match (answer.status.as_u16(), answer.code()) {
            (200, _) => {
                let listed: Vec<i64> = answer.body["seats"]
                    .as_array()
                    .map(|seats| seats.iter().filter_map(|s| s["seatNo"].as_i64()).collect())
                    .unwrap_or_default();
                let received = now_utc();
                for hold in self.holds.iter().filter(|h| h.date == date) {
                    // Live for the whole exchange: the server's `now` lies between the two.
                    if hold.expires_at > received && listed.contains(&hold.seat) {
                        self.violation(format!(
                            "seat {} listed free while held by reservation {} until {} (asked \
                             at {sent})",
                            hold.seat, hold.id, hold.expires_at
                        ));
                    }
                }
                for (_, seat) in self.sold.iter().filter(|(d, _)| *d == date) {
                    if listed.contains(seat) {
                        self.violation(format!("sold seat {seat} listed free"));
                    }
                }
                self.available = listed.into_iter().map(|seat| (date, seat)).collect();
            }
            (403, "QUEUE_NOT_ACTIVE") | (503, _) => {}
            (401, "TOKEN_EXPIRED") => self.token = None,
            _ => self.violation(format!("seats: {} {}", answer.status, answer.text)),
        }
        Ok(())
    }

    async fn check_balance(&mut self) -> anyhow::Result<()> {
        let path = format!("/v1/users/{}/points", self.user);
        let Ok(answer) = self.send(Op::Balance, Request::get(path)).await else {
            return Ok(());
        };
        match answer.status.as_u16() {
            200 => {
                let expected = self.known.balance();
                if answer.body["balance"].as_i64() != Some(expected) {
                    self.violation(format!("balance {} but {expected} expected", answer.text));
                }
            }
            503 => {}
            _ => self.violation(format!("balance: {} {}", answer.status, answer.text)),
        }
        Ok(())
    }

    /// Reads the newest page of the ledger: it chains, and ends at the known balance.
    async fn check_history(&mut self) -> anyhow::Result<()> {
        let path = format!("/v1/users/{}/points/history?limit=100", self.user);
        let Ok(answer) = self.send(Op::History, Request::get(path)).await else {
            return Ok(());
        };
        match answer.status.as_u16() {
            200 => {
                let entries = answer.body["entries"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let after = |i: usize| entries[i]["balanceAfter"].as_i64().unwrap_or(-1);
                let amount = |i: usize| entries[i]["amount"].as_i64().unwrap_or(0);
                let expected = self.known.balance();
                let newest = if entries.is_empty() { 0 } else { after(0) };
                let mut chained = newest == expected;
                for i in 0..entries.len().saturating_sub(1) {
                    chained &= after(i) == after(i + 1) + amount(i);
                }
                if entries.len() < 100 && !entries.is_empty() {
                    let last = entries.len() - 1;
                    chained &= after(last) == amount(last);
                }
                if !chained {
                    self.violation(format!(
                        "history does not chain to the balance {expected}: {}",
                        answer.text
                    ));
                }
            }
            503 => {}
            _ => self.violation(format!("history: {} {}", answer.status, answer.text)),
        }
        Ok(())
    }
}
