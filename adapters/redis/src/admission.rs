//! One admission step on Redis: read, let the rules decide, write in one script.
//!
//! 1. `STEP_BEGIN` takes the line's hold (`SET NX PX`: one step or opening at a time, and no
//!    join draws a number until the write) and reads, in the same script, the counters, the
//!    pace, the admissions after the minute before `now` and the active tickets: one consistent
//!    state.
//! 2. The rules end the overdue tickets and count the free places; a paced room's rules say how
//!    many may be filled now.
//! 3. `OLDEST_WAITING` reads the head of the line (waiting tickets change only by steps, which
//!    the hold keeps out, and by ends and polls, which the write compares); the rules admit or
//!    pass over.
//! 4. `STEP_WRITE` compares the hold's token (the step's version: a step whose lease ran out
//!    and whose line another took is `Stale`) and every ticket it touches (status, and the
//!    `last_seen` read for an end), then writes every end, pass-over and admission, the serving
//!    counter and the pace, and releases the hold; all or nothing.
//!
//! A step that fails or is dropped between 1 and 4 releases the hold (or its lease ends it).
//!
//! Keys (under `<prefix>{line:N}:`, see [`crate::keys`]): `hold`, `state`, `admissions`,
//! `active`, `waiting`, `t:<place>`, and `live`, `ended`, `ended_waiting` for the ends; the
//! write touches them all in one script, which is what makes the step atomic.

use concert_application::ports::{AdmissionReport, AdmissionRules, RepositoryError, Written};
use concert_domain::queue::ServingCounter;
use concert_domain::{Admission, EndReason, LineNo, Pace, QueueTicket};
use time::{Duration, OffsetDateTime};

use crate::keys::{corrupt, micros, micros_text, number, optional_instant, place, required};
use crate::queue::{outcome, parse_tickets};
use crate::{RedisLine, scripts};

/// The hold of one step or opening: released when dropped before its write released it.
pub(crate) struct Hold {
    line: RedisLine,
    at: LineNo,
    value: Option<String>,
}

impl Hold {
    pub(crate) fn new(line: &RedisLine, at: LineNo, value: String) -> Self {
        Self {
            line: line.clone(),
            at,
            value: Some(value),
        }
    }

    /// The write script released it (or found it gone).
    pub(crate) fn released(mut self) {
        self.value = None;
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let Some(value) = self.value.take() else {
            return;
        };
        let (line, at) = (self.line.clone(), self.at);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = line.run_on(&scripts::RELEASE, at, &[value]).await {
                    tracing::warn!(line = at.get(), error = %error, "a line's hold was not released; its lease ends it");
                }
            });
        }
    }
}

/// A fresh random token for a hold.
pub(crate) fn token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

pub(crate) async fn admit(
    redis: &RedisLine,
    line: LineNo,
    now: OffsetDateTime,
    rules: &dyn AdmissionRules,
) -> Result<Written<AdmissionReport>, RepositoryError> {
    redis.note_line(line).await?;
    let token = token();
    let lease = redis.hold_lease().as_millis().to_string();
    let minute_before = micros(now - Duration::seconds(60));
    let begun = redis
        .texts_on(
            &scripts::STEP_BEGIN,
            line,
            &[token.clone(), lease, minute_before.to_string()],
        )
        .await?;
    if outcome(&begun)? == "held" {
        // Another step or an opening holds the line: this step is one too many.
        return Ok(Written::Stale);
    }
    let hold = Hold::new(redis, line, format!("step:{token}"));
    let [_, serving, credit, pace_at, last_minute, active @ ..] = begun.as_slice() else {
        return Err(corrupt("a step's read of another shape"));
    };
    let serving =
        ServingCounter::new(line.start().get() + number(&required(Some(serving), "serving")?)?);
    let stored_pace = Pace {
        credit_millis: number(&required(Some(credit), "pace credit")?)?,
        at: optional_instant(pace_at.as_ref())?,
    };
    let last_minute =
        u32::try_from(number(&required(Some(last_minute), "admissions")?)?).unwrap_or(u32::MAX);
    let active = parse_tickets(line, active)?;

    let overdue = rules.end_overdue(&active);
    let (free, pace) = if overdue.free > 0 && rules.is_paced() {
        let (allowed, refilled) = rules.paced(overdue.free, last_minute, stored_pace);
        (allowed, Some(refilled))
    } else {
        (overdue.free, None)
    };
    let Admission {
        admitted,
        passed_over,
    } = if free == 0 {
        Admission::default()
    } else {
        let candidates = rules.waiting_candidates(free);
        let waiting = redis
            .texts_on(&scripts::OLDEST_WAITING, line, &[candidates.to_string()])
            .await?;
        rules.admit_oldest(&parse_tickets(line, &waiting)?, free)
    };

    let serving = serving.after_admitting(&admitted);
    let pace = pace.map(|pace| pace.spent(u32::try_from(admitted.len()).unwrap_or(u32::MAX)));
    let mut args = vec![
        token,
        micros_text(now),
        (serving.get() - line.start().get()).to_string(),
        pace.map(|pace| pace.credit_millis.to_string())
            .unwrap_or_default(),
        pace.and_then(|pace| pace.at)
            .map(micros_text)
            .unwrap_or_default(),
        overdue.ended.len().to_string(),
        passed_over.len().to_string(),
        admitted.len().to_string(),
    ];
    for ended in overdue.ended.iter().chain(&passed_over) {
        args.push(in_line(line, ended)?);
        args.push(ended.last_seen().map(micros_text).unwrap_or_default());
        args.push(
            ended
                .end_reason()
                .map(EndReason::as_str)
                .unwrap_or_default()
                .to_owned(),
        );
    }
    for ticket in &admitted {
        args.push(in_line(line, ticket)?);
        args.push(ticket.active_until().map(micros_text).unwrap_or_default());
        args.push(ticket.last_seen().map(micros_text).unwrap_or_default());
    }
    let written = redis.texts_on(&scripts::STEP_WRITE, line, &args).await?;
    hold.released();
    if outcome(&written)? != "done" {
        return Ok(Written::Stale);
    }
    Ok(Written::Done(AdmissionReport::of(
        &overdue,
        &admitted,
        &passed_over,
        serving,
    )))
}

/// The place of a ticket the rules decided on; a ticket of another line is not one the step
/// read, so it cannot be as read: a place no ticket has (0) makes the write stale.
fn in_line(line: LineNo, ticket: &QueueTicket) -> Result<String, RepositoryError> {
    Ok(if ticket.ticket().line() == line {
        place(ticket.ticket()).to_string()
    } else {
        "0".to_owned()
    })
}
