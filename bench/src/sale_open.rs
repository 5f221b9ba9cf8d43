//! The sale-open burst: many new users join the `default` room's line at once through several
//! instances, then every token's status is read back to check the line they formed.
//!
//! The burst is closed-loop on keep-alive connections spread over the instances (connection `i`
//! on instance `i mod k`); a worker only pulls the token out of each answer and keeps it, so the
//! generator, which shares the machine's cores with the instances and the store, spends little.
//! Everything else (verifying signatures, reading statuses) happens after the timed burst.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use concert_application::ports::TokenSigner;
use concert_domain::LineNo;
use tokio::time::Instant;
use uuid::Uuid;

use crate::client::{Call, Conn};
use crate::measure::Measure;

/// Attempts per user before it counts as unplaced; a failed attempt is retried after a pause.
const ATTEMPTS: u32 = 5;
const RETRY_PAUSE: Duration = Duration::from_millis(200);
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// The user of the `n`-th join of a run: distinct per run and per `n`, with no random draw on
/// the hot path, and known again when the tokens are checked.
pub fn user(run: u64, n: u64) -> Uuid {
    Uuid::from_u64_pair(run, n)
}

/// The `token` of a token answer, found without parsing the whole body (tokens are base64url and
/// dots: no escapes).
pub fn token_of(body: &[u8]) -> Option<&str> {
    const KEY: &[u8] = b"\"token\":\"";
    let start = body.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let len = body[start..].iter().position(|b| *b == b'"')?;
    std::str::from_utf8(&body[start..start + len]).ok()
}

/// What the burst measured, and each user's token (empty for a user who got no place).
pub struct Burst {
    /// `ok`: users placed; `failed`: failed attempts (each retried); latency: from a user's
    /// first attempt to its place; `elapsed`: until the last user held a place.
    pub measure: Measure,
    pub tokens: Vec<Box<str>>,
}

impl Burst {
    pub fn unplaced(&self) -> u64 {
        self.tokens.iter().filter(|t| t.is_empty()).count() as u64
    }
}

/// `users` new users join through `servers`, `concurrency` connections in all. Every
/// `PROGRESS_EVERY`, `progress` gets the time since the start and the users placed so far.
pub async fn burst(
    servers: &[SocketAddr],
    concurrency: usize,
    users: u64,
    run: u64,
    progress: impl Fn(Duration, u64) + Send + 'static,
) -> anyhow::Result<Burst> {
    anyhow::ensure!(!servers.is_empty(), "no server to join through");
    let mut conns = Vec::with_capacity(concurrency);
    for i in 0..concurrency {
        conns.push(Conn::open(servers[i % servers.len()]).await?);
    }
    let next = Arc::new(AtomicU64::new(0));
    let placed_so_far = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let reporter = {
        let placed_so_far = placed_so_far.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(start + PROGRESS_EVERY, PROGRESS_EVERY);
            loop {
                tick.tick().await;
                progress(start.elapsed(), placed_so_far.load(Ordering::Relaxed));
            }
        })
    };
    let mut workers = Vec::with_capacity(concurrency);
    for mut conn in conns {
        let next = next.clone();
        let placed_so_far = placed_so_far.clone();
        workers.push(tokio::spawn(async move {
            let mut measure = Measure::empty();
            let mut placed: Vec<(u64, Box<str>)> = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= users {
                    break;
                }
                let call = Call::post(
                    "/v1/queue/tokens",
                    format!("{{\"userId\":\"{}\"}}", user(run, n)),
                );
                let began = Instant::now();
                for attempt in 1..=ATTEMPTS {
                    let failure = match conn.send(&call).await {
                        Ok(answer) if matches!(answer.status.as_u16(), 200 | 201) => {
                            match token_of(&answer.body) {
                                Some(token) => {
                                    placed.push((n, token.into()));
                                    None
                                }
                                None => Some(format!(
                                    "no token in {}",
                                    String::from_utf8_lossy(&answer.body)
                                )),
                            }
                        }
                        Ok(answer) => Some(format!(
                            "{}: {}",
                            answer.status,
                            String::from_utf8_lossy(&answer.body)
                        )),
                        Err(e) => Some(format!("{e:#}")),
                    };
                    match failure {
                        None => {
                            let micros =
                                u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX);
                            measure.latency.saturating_record(micros.max(1));
                            measure.ok += 1;
                            placed_so_far.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        Some(failure) => {
                            measure.failed += 1;
                            if measure.first_failure.is_none() {
                                measure.first_failure = Some(failure);
                            }
                            if attempt < ATTEMPTS {
                                tokio::time::sleep(RETRY_PAUSE * attempt).await;
                            }
                        }
                    }
                }
            }
            (measure, placed)
        }));
    }
    let mut total = Measure::empty();
    let mut tokens: Vec<Box<str>> = vec![Box::from(""); usize::try_from(users)?];
    for worker in workers {
        let (measure, placed) = worker.await?;
        total.ok += measure.ok;
        total.failed += measure.failed;
        if total.first_failure.is_none() {
            total.first_failure = measure.first_failure;
        }
        total.latency.add(&measure.latency)?;
        for (n, token) in placed {
            tokens[usize::try_from(n)?] = token;
        }
    }
    total.elapsed = start.elapsed();
    reporter.abort();
    Ok(Burst {
        measure: total,
        tokens,
    })
}

/// One token's status as a poll read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    Active,
    Waiting(u64),
    /// No token (the user got no place), a token that does not verify, another status, or a
    /// failed poll.
    Other,
}

/// Reads every token's status (`GET /v1/queue/status`), `concurrency` connections spread over
/// `servers` as in the burst; `seen[n]` is user `n`'s. Also the first odd answer, if any.
pub async fn statuses(
    servers: &[SocketAddr],
    concurrency: usize,
    tokens: Arc<Vec<Box<str>>>,
) -> anyhow::Result<(Vec<Seen>, Option<String>)> {
    #[derive(serde::Deserialize)]
    struct Status<'a> {
        status: &'a str,
        position: Option<u64>,
    }
    let mut conns = Vec::with_capacity(concurrency);
    for i in 0..concurrency {
        conns.push(Conn::open(servers[i % servers.len()]).await?);
    }
    let next = Arc::new(AtomicU64::new(0));
    let total = tokens.len() as u64;
    let mut workers = Vec::with_capacity(concurrency);
    for mut conn in conns {
        let next = next.clone();
        let tokens = tokens.clone();
        workers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut odd: Option<String> = None;
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    break;
                }
                let token = &tokens[usize::try_from(n).unwrap_or(usize::MAX)];
                if token.is_empty() {
                    seen.push((n, Seen::Other));
                    continue;
                }
                let mut state = Seen::Other;
                match conn
                    .send(&Call::get("/v1/queue/status").bearer(token.as_ref()))
                    .await
                {
                    Ok(answer) if answer.status == 200 => {
                        match serde_json::from_slice::<Status<'_>>(&answer.body) {
                            Ok(Status {
                                status: "ACTIVE", ..
                            }) => state = Seen::Active,
                            Ok(Status {
                                status: "WAITING",
                                position: Some(position),
                            }) => state = Seen::Waiting(position),
                            _ => {
                                odd.get_or_insert_with(|| {
                                    format!("user {n}: {}", String::from_utf8_lossy(&answer.body))
                                });
                            }
                        }
                    }
                    Ok(answer) => {
                        odd.get_or_insert_with(|| {
                            format!(
                                "user {n}: {} {}",
                                answer.status,
                                String::from_utf8_lossy(&answer.body)
                            )
                        });
                    }
                    Err(e) => {
                        odd.get_or_insert_with(|| format!("user {n}: {e:#}"));
                    }
                }
                seen.push((n, state));
            }
            (seen, odd)
        }));
    }
    let mut all = vec![Seen::Other; tokens.len()];
    let mut first_odd = None;
    for worker in workers {
        let (seen, odd) = worker.await.context("a status worker")?;
        for (n, state) in seen {
            all[usize::try_from(n)?] = state;
        }
        first_odd = first_odd.or(odd);
    }
    Ok((all, first_odd))
}

/// The ticket number each token names (`None`: no token, or one that does not verify or names
/// another user than the one who joined).
pub fn tickets(tokens: &[Box<str>], signer: &dyn TokenSigner, run: u64) -> Vec<Option<i64>> {
    tokens
        .iter()
        .enumerate()
        .map(|(n, token)| {
            let claims = signer.verify(token).ok()?;
            (claims.user.get() == user(run, n as u64)).then(|| claims.ticket.get())
        })
        .collect()
}

/// The line the users formed, as their statuses and tokens tell it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineCheck {
    pub users: u64,
    pub active: u64,
    pub waiting: u64,
    /// What is wrong, worst first; empty when the line is right.
    pub problems: Vec<String>,
}

impl LineCheck {
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks, for `seen` and `tickets` of the same users (index = user):
/// - every user holds a place (`ACTIVE` or `WAITING`), and `ACTIVE` ones number `expected_active`;
/// - the waiting positions are exactly `1..=W` for the `W` waiting users: no duplicate, no gap
///   (from the statuses alone, whatever the store);
/// - the tokens' tickets are exactly `first..first + N`, each once, and the line keeps their
///   order: the lowest tickets are the `ACTIVE` ones and each waiting ticket's position is its
///   rank among the waiting ones.
pub fn check_line(
    seen: &[Seen],
    tickets: &[Option<i64>],
    first: i64,
    expected_active: u64,
) -> LineCheck {
    let users = seen.len() as u64;
    let mut problems = Vec::new();
    let active = seen.iter().filter(|s| **s == Seen::Active).count() as u64;
    let others = seen.iter().filter(|s| **s == Seen::Other).count();
    let waiting_positions: Vec<u64> = seen
        .iter()
        .filter_map(|s| match s {
            Seen::Waiting(p) => Some(*p),
            _ => None,
        })
        .collect();
    let waiting = waiting_positions.len() as u64;
    if others > 0 {
        problems.push(format!(
            "{others} users hold no place (no token, or neither ACTIVE nor WAITING)"
        ));
    }
    if active != expected_active {
        problems.push(format!(
            "{active} ACTIVE, expected {expected_active} (the room's maxActive, or every user)"
        ));
    }

    // Positions 1..=W, each once.
    let mut taken = vec![false; waiting_positions.len()];
    let (mut duplicates, mut outside) = (0_u64, 0_u64);
    for p in &waiting_positions {
        match usize::try_from(*p)
            .ok()
            .and_then(|p| p.checked_sub(1))
            .and_then(|i| taken.get_mut(i))
        {
            Some(slot) if *slot => duplicates += 1,
            Some(slot) => *slot = true,
            None => outside += 1,
        }
    }
    if duplicates > 0 || outside > 0 {
        let gaps = taken.iter().filter(|t| !**t).count();
        problems.push(format!(
            "waiting positions are not 1..={waiting}: {duplicates} duplicates, {outside} outside \
             the range, {gaps} gaps"
        ));
    }

    // Tickets first..first+N, each once, and the line in their order.
    let mut by_ticket: Vec<(i64, usize)> = Vec::with_capacity(tickets.len());
    let mut unreadable = 0_u64;
    for (n, ticket) in tickets.iter().enumerate() {
        match ticket {
            Some(t) => by_ticket.push((*t, n)),
            None => unreadable += 1,
        }
    }
    if unreadable > 0 {
        problems.push(format!(
            "{unreadable} tokens do not verify or name another user"
        ));
    }
    by_ticket.sort_unstable();
    let off_sequence = by_ticket
        .iter()
        .enumerate()
        .filter(|(rank, (t, _))| *t != first + *rank as i64)
        .count();
    if off_sequence > 0 {
        let (lo, hi) = (
            by_ticket.first().map_or(0, |t| t.0),
            by_ticket.last().map_or(0, |t| t.0),
        );
        problems.push(format!(
            "tickets are not {first}..={}: {off_sequence} off the sequence (lowest {lo}, highest \
             {hi})",
            first + by_ticket.len() as i64 - 1
        ));
    }
    let out_of_order = by_ticket
        .iter()
        .enumerate()
        .filter(|(rank, (_, n))| {
            let rank = *rank as u64;
            let expected = if rank < active {
                Seen::Active
            } else {
                Seen::Waiting(rank - active + 1)
            };
            seen[*n] != expected
        })
        .count();
    if out_of_order > 0 {
        problems.push(format!(
            "{out_of_order} users' status is not their ticket's place (the lowest tickets \
             ACTIVE, then positions in ticket order)"
        ));
    }
    LineCheck {
        users,
        active,
        waiting,
        problems,
    }
}

/// The first ticket of the run: the lowest one the tokens name. On PostgreSQL it is the line's
/// first place; the line on Redis starts at the first place of a block of numbers, which is not
/// block 0 when instances leased blocks at once for a new line (docs/REDIS.md, Numbers). The
/// check then asks for every ticket from it on, each once.
pub fn first_ticket(tickets: &[Option<i64>]) -> i64 {
    tickets
        .iter()
        .flatten()
        .copied()
        .min()
        .unwrap_or(LineNo::DEFAULT.start().get() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_run_starts_at_its_lowest_ticket() {
        assert_eq!(first_ticket(&[Some(131_074), None, Some(131_073)]), 131_073);
        assert_eq!(first_ticket(&[None]), 1);
    }

    fn line(active: u64, waiting: u64) -> (Vec<Seen>, Vec<Option<i64>>) {
        let seen = (0..active)
            .map(|_| Seen::Active)
            .chain((1..=waiting).map(Seen::Waiting))
            .collect();
        let tickets = (1..=i64::try_from(active + waiting).unwrap())
            .map(Some)
            .collect();
        (seen, tickets)
    }

    #[test]
    fn the_token_is_found_in_a_token_answer() {
        let body = br#"{"token":"djIuYWJj.ZGVm","status":"WAITING","position":3}"#;
        assert_eq!(token_of(body), Some("djIuYWJj.ZGVm"));
        assert_eq!(token_of(br#"{"status":"WAITING"}"#), None);
    }

    #[test]
    fn a_line_of_active_users_then_positions_in_ticket_order_passes() {
        let (seen, tickets) = line(3, 5);
        let check = check_line(&seen, &tickets, 1, 3);
        assert_eq!(check.problems, Vec::<String>::new());
        assert_eq!((check.active, check.waiting), (3, 5));
    }

    #[test]
    fn a_duplicate_position_and_the_gap_it_leaves_are_found() {
        let (mut seen, tickets) = line(1, 4);
        seen[4] = Seen::Waiting(3);
        let check = check_line(&seen, &tickets, 1, 1);
        assert!(
            check.problems[0].contains("1 duplicates, 0 outside the range, 1 gaps"),
            "{check:?}"
        );
    }

    #[test]
    fn a_missing_ticket_number_is_found() {
        let (seen, mut tickets) = line(1, 3);
        tickets[3] = Some(5);
        let check = check_line(&seen, &tickets, 1, 1);
        assert!(!check.passed());
        assert!(
            check
                .problems
                .iter()
                .any(|p| p.contains("1 off the sequence")),
            "{check:?}"
        );
    }

    #[test]
    fn positions_that_do_not_follow_ticket_order_are_found() {
        let (mut seen, tickets) = line(0, 3);
        seen.swap(0, 2);
        let check = check_line(&seen, &tickets, 1, 0);
        assert!(
            check.problems == vec!["2 users' status is not their ticket's place (the lowest tickets ACTIVE, then positions in ticket order)".to_owned()],
            "{check:?}"
        );
    }

    #[test]
    fn a_user_without_a_place_and_a_wrong_active_count_are_found() {
        let (mut seen, mut tickets) = line(2, 2);
        seen[3] = Seen::Other;
        tickets[3] = None;
        let check = check_line(&seen, &tickets, 1, 3);
        assert!(
            check
                .problems
                .iter()
                .any(|p| p.contains("1 users hold no place"))
        );
        assert!(
            check
                .problems
                .iter()
                .any(|p| p.contains("2 ACTIVE, expected 3"))
        );
    }
}
