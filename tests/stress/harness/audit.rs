//! The database audit: after the load, read the test database directly (plain SQL over a
//! connection of its own) and check every bookkeeping invariant, and that the clients' books (what
//! each client was told) match what is stored.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use uuid::Uuid;

/// The grace given to holds that follow a swept one (see [`audit`]) under normal load: far
/// above the few milliseconds a hold takes, well under the holds' 2 s.
pub const SKEW: std::time::Duration = std::time::Duration::from_millis(1000);

/// The same grace while the database fails on purpose: a hold may wait up to the pool's 2 s
/// acquire timeout, and a statement up to its 5 s timeout, between reading the clock and claiming.
pub const FAULT_SKEW: std::time::Duration = std::time::Duration::from_secs(5);

/// What one user's client was told: the charges answered 200 and the payments answered 201.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UserBook {
    pub charged: i64,
    /// Payment id → (reservation id, amount).
    pub payments: BTreeMap<i64, (i64, i64)>,
}

impl UserBook {
    pub fn paid(&self) -> i64 {
        self.payments.values().map(|(_, amount)| amount).sum()
    }

    pub fn balance(&self) -> i64 {
        self.charged - self.paid()
    }
}

/// Every client's book, by user.
#[derive(Clone, Default)]
pub struct Books(Arc<Mutex<BTreeMap<Uuid, UserBook>>>);

impl Books {
    pub fn update<T>(&self, user: Uuid, change: impl FnOnce(&mut UserBook) -> T) -> T {
        let mut books = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        change(books.entry(user).or_default())
    }

    pub fn snapshot(&self) -> BTreeMap<Uuid, UserBook> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// A connection of the test itself to the test database (not through any proxy).
pub async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let mut config = tokio_postgres::Config::from_str(url).context("the test database URL")?;
    config.application_name("concert-stress-audit");
    config.connect_timeout(std::time::Duration::from_secs(10));
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .context("connecting to the test database")?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// What the audit found.
#[derive(Debug, Clone, Default)]
pub struct Audit {
    pub users: i64,
    pub ledger_entries: i64,
    pub charged: i64,
    pub payments: i64,
    pub paid: i64,
    pub sold_seats: i64,
    pub reservations: i64,
    pub lapsed_holds: i64,
    pub cancelled: i64,
    /// Payments and charges the clients were told about and the database does not hold (must be
    /// 0), and the other way round.
    pub lost: u64,
    pub unknown_to_clients: u64,
}

impl fmt::Display for Audit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} users, {} ledger entries, {} won charged, {} payments ({} won), {} seats sold, \
             {} reservations ({} lapsed, {} cancelled), lost {}",
            self.users,
            self.ledger_entries,
            self.charged,
            self.payments,
            self.paid,
            self.sold_seats,
            self.reservations,
            self.lapsed_holds,
            self.cancelled,
            self.lost
        )
    }
}

async fn count(db: &tokio_postgres::Client, sql: &str) -> anyhow::Result<i64> {
    let row = db
        .query_one(sql, &[])
        .await
        .with_context(|| sql.to_owned())?;
    Ok(row.get(0))
}

/// Rows of `sql` rendered for a failure message (each column as text).
async fn offending(db: &tokio_postgres::Client, sql: &str) -> anyhow::Result<Vec<String>> {
    let rows = db.simple_query(sql).await.with_context(|| sql.to_owned())?;
    Ok(rows
        .iter()
        .filter_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).unwrap_or("NULL").to_owned())
                    .collect::<Vec<_>>()
                    .join(" | "),
            ),
            _ => None,
        })
        .collect())
}

/// The invariants, each a query that returns the rows breaking it.
const INVARIANTS: &[(&str, &str)] = &[
    (
        "a seat sold twice (two CONFIRMED reservations)",
        "SELECT concert_id, date, seat_no, count(*) FROM reservations WHERE status = 'CONFIRMED' \
         GROUP BY 1, 2, 3 HAVING count(*) > 1",
    ),
    (
        "a sold seat whose reservation is not its CONFIRMED reservation",
        "SELECT s.concert_id, s.date, s.seat_no, s.sold_reservation FROM seats s \
         LEFT JOIN reservations r ON r.id = s.sold_reservation \
         WHERE s.sold_reservation IS NOT NULL AND (r.id IS NULL OR r.status <> 'CONFIRMED' \
           OR r.user_id <> s.sold_to_user \
           OR (r.concert_id, r.date, r.seat_no) <> (s.concert_id, s.date, s.seat_no))",
    ),
    (
        "a CONFIRMED reservation whose seat is not sold to it",
        "SELECT r.id FROM reservations r LEFT JOIN seats s ON s.sold_reservation = r.id \
         WHERE r.status = 'CONFIRMED' AND s.seat_no IS NULL",
    ),
    (
        "a sold seat without exactly one payment",
        "SELECT s.concert_id, s.date, s.seat_no, count(p.id) FROM seats s \
         LEFT JOIN payments p ON p.reservation_id = s.sold_reservation \
         WHERE s.sold_reservation IS NOT NULL GROUP BY 1, 2, 3 HAVING count(p.id) <> 1",
    ),
    (
        "a payment without its sold seat",
        "SELECT p.id, p.reservation_id FROM payments p \
         LEFT JOIN seats s ON s.sold_reservation = p.reservation_id \
         WHERE s.seat_no IS NULL OR s.sold_to_user <> p.user_id",
    ),
    (
        "a payment that does not match its reservation and ledger entry",
        "SELECT p.id FROM payments p JOIN reservations r ON r.id = p.reservation_id \
         JOIN ledger_entries l ON l.id = p.ledger_entry_id \
         WHERE p.amount <> r.price OR r.user_id <> p.user_id OR l.kind <> 'PAYMENT' \
           OR l.amount <> -p.amount OR l.user_id <> p.user_id",
    ),
    (
        "a PAYMENT ledger entry without its payment",
        "SELECT l.id FROM ledger_entries l LEFT JOIN payments p ON p.ledger_entry_id = l.id \
         WHERE l.kind = 'PAYMENT' AND p.id IS NULL",
    ),
    (
        "a negative balance",
        "SELECT user_id, balance FROM wallets WHERE balance < 0 \
         UNION ALL SELECT user_id, balance_after FROM ledger_entries WHERE balance_after < 0",
    ),
    (
        "a ledger entry that does not chain from the previous one",
        "SELECT id, user_id, amount, balance_after, before FROM ( \
           SELECT id, user_id, amount, balance_after, \
                  lag(balance_after, 1, 0::bigint) OVER (PARTITION BY user_id ORDER BY id) AS before \
           FROM ledger_entries) chained \
         WHERE balance_after <> before + amount",
    ),
    (
        "a balance that is not its ledger's last balance",
        "SELECT w.user_id, w.balance, last.balance_after FROM wallets w \
         LEFT JOIN LATERAL (SELECT balance_after FROM ledger_entries l WHERE l.user_id = w.user_id \
                            ORDER BY id DESC LIMIT 1) last ON true \
         WHERE coalesce(last.balance_after, 0) <> w.balance",
    ),
    (
        "charged <> balance + paid",
        "SELECT w.user_id, w.balance, coalesce(c.charged, 0), coalesce(p.paid, 0) FROM wallets w \
         LEFT JOIN (SELECT user_id, sum(amount) AS charged FROM ledger_entries \
                    WHERE kind = 'CHARGE' GROUP BY user_id) c USING (user_id) \
         LEFT JOIN (SELECT user_id, sum(amount) AS paid FROM payments GROUP BY user_id) p \
                   USING (user_id) \
         WHERE coalesce(c.charged, 0) <> w.balance + coalesce(p.paid, 0)",
    ),
    (
        "a seat claim that disagrees with its reservation",
        "SELECT s.concert_id, s.date, s.seat_no, r.id, r.status FROM seats s \
         JOIN reservations r ON r.id = s.held_by_reservation \
         WHERE r.status <> 'HELD' OR r.user_id <> s.held_by_user OR r.expires_at <> s.held_until \
           OR (r.concert_id, r.date, r.seat_no) <> (s.concert_id, s.date, s.seat_no)",
    ),
];

/// Checks every invariant, and the clients' `books` against the database when given (then every
/// user with a wallet must have a book). `hold_limit` is the servers' `MAX_HOLDS_PER_USER`;
/// `skew` bounds how long a hold request may take from reading the clock to claiming the seat.
pub async fn audit(
    url: &str,
    books: Option<&BTreeMap<Uuid, UserBook>>,
    hold_limit: i64,
    skew: std::time::Duration,
) -> anyhow::Result<Audit> {
    let db = connect(url).await?;
    let mut broken = Vec::new();
    for (what, sql) in INVARIANTS {
        let rows = offending(&db, sql).await?;
        if !rows.is_empty() {
            broken.push(format!(
                "{what}: {} row(s), e.g. {}",
                rows.len(),
                rows.iter().take(5).cloned().collect::<Vec<_>>().join("; ")
            ));
        }
    }
    // The clock a hold reads (its `created_at`) is read before its transaction waits for the
    // pool and the locks. A hold whose seat the sweeper freed (the sweeper's own clock past the
    // deadline) can therefore carry a `created_at` a little before the previous hold's deadline;
    // an earlier hold that ended EXPIRED is given `skew` of grace. Any other hold only claims a
    // seat whose deadline is not after its own `created_at`: no grace.
    let grace = format!(
        "(CASE WHEN first.status = 'EXPIRED' THEN interval '{} milliseconds' \
          ELSE interval '0' END)",
        skew.as_millis()
    );
    let overlapping = offending(
        &db,
        &format!(
            "SELECT first.id, second.id, first.concert_id, first.date, first.seat_no, \
                    first.status, first.expires_at, second.created_at \
             FROM reservations first \
             JOIN reservations second \
               ON (second.concert_id, second.date, second.seat_no) \
                  = (first.concert_id, first.date, first.seat_no) \
              AND (second.created_at, second.id) > (first.created_at, first.id) \
             WHERE first.status <> 'CANCELLED' AND second.status <> 'CANCELLED' \
               AND second.created_at < (CASE WHEN first.status = 'CONFIRMED' \
                                             THEN 'infinity'::timestamptz \
                                             ELSE first.expires_at END) - {grace}"
        ),
    )
    .await?;
    if !overlapping.is_empty() {
        broken.push(format!(
            "a seat held (or sold) by two reservations at once (cancelled ones left out): {} \
             pair(s), e.g. {}",
            overlapping.len(),
            overlapping
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    // At no instant does a user hold more than the limit: of the holds live at the start of any
    // hold, the last to take the user's lock counted all the others.
    let over_limit = offending(
        &db,
        &format!(
            "SELECT r.user_id, r.id, count(*) FROM reservations r \
             JOIN reservations first ON first.user_id = r.user_id \
                  AND first.status IN ('HELD', 'EXPIRED') \
                  AND first.created_at <= r.created_at \
                  AND r.created_at < first.expires_at - {grace} \
             WHERE r.status IN ('HELD', 'EXPIRED') GROUP BY 1, 2 HAVING count(*) > {hold_limit}"
        ),
    )
    .await?;
    if !over_limit.is_empty() {
        broken.push(format!(
            "more than {hold_limit} live holds for one user: {}",
            over_limit.join("; ")
        ));
    }

    let mut figures = Audit {
        users: count(&db, "SELECT count(*) FROM wallets").await?,
        ledger_entries: count(&db, "SELECT count(*) FROM ledger_entries").await?,
        charged: count(
            &db,
            "SELECT coalesce(sum(amount), 0)::bigint FROM ledger_entries WHERE kind = 'CHARGE'",
        )
        .await?,
        payments: count(&db, "SELECT count(*) FROM payments").await?,
        paid: count(&db, "SELECT coalesce(sum(amount), 0)::bigint FROM payments").await?,
        sold_seats: count(
            &db,
            "SELECT count(*) FROM seats WHERE sold_reservation IS NOT NULL",
        )
        .await?,
        reservations: count(&db, "SELECT count(*) FROM reservations").await?,
        lapsed_holds: count(
            &db,
            "SELECT count(*) FROM reservations WHERE status = 'EXPIRED' \
             OR (status = 'HELD' AND expires_at <= now())",
        )
        .await?,
        cancelled: count(
            &db,
            "SELECT count(*) FROM reservations WHERE status = 'CANCELLED'",
        )
        .await?,
        lost: 0,
        unknown_to_clients: 0,
    };

    if let Some(books) = books {
        let stored = stored_books(&db).await?;
        for (user, book) in books {
            let empty = UserBook::default();
            let held = stored.get(user).unwrap_or(&empty);
            if book.charged != held.charged {
                broken.push(format!(
                    "user {user}: clients were told of {} won charged, the ledger holds {}",
                    book.charged, held.charged
                ));
            }
            for (id, payment) in &book.payments {
                if held.payments.get(id) != Some(payment) {
                    figures.lost += 1;
                    broken.push(format!(
                        "user {user}: payment {id} {payment:?} answered 201 is not in the database \
                         as such ({:?})",
                        held.payments.get(id)
                    ));
                }
            }
            for (id, payment) in &held.payments {
                if !book.payments.contains_key(id) {
                    figures.unknown_to_clients += 1;
                    broken.push(format!(
                        "user {user}: payment {id} {payment:?} in the database was never answered \
                         to its client"
                    ));
                }
            }
            if book.charged < held.charged {
                figures.unknown_to_clients += 1;
            } else if book.charged > held.charged {
                figures.lost += 1;
            }
        }
        for user in stored.keys() {
            if !books.contains_key(user) {
                broken.push(format!("user {user} has a wallet but no client"));
            }
        }
    }

    if broken.is_empty() {
        Ok(figures)
    } else {
        anyhow::bail!(
            "the database audit found {} broken invariant(s) ({figures}):\n  {}",
            broken.len(),
            broken.join("\n  ")
        )
    }
}

/// The books as the database holds them.
async fn stored_books(db: &tokio_postgres::Client) -> anyhow::Result<BTreeMap<Uuid, UserBook>> {
    let mut books: BTreeMap<Uuid, UserBook> = BTreeMap::new();
    for row in db
        .query(
            "SELECT user_id::text, coalesce(sum(amount), 0)::bigint FROM ledger_entries \
             WHERE kind = 'CHARGE' GROUP BY user_id",
            &[],
        )
        .await?
    {
        let user: &str = row.get(0);
        books.entry(Uuid::parse_str(user)?).or_default().charged = row.get(1);
    }
    for row in db
        .query(
            "SELECT user_id::text, id, reservation_id, amount FROM payments",
            &[],
        )
        .await?
    {
        let user: &str = row.get(0);
        books
            .entry(Uuid::parse_str(user)?)
            .or_default()
            .payments
            .insert(row.get(1), (row.get(2), row.get(3)));
    }
    Ok(books)
}
