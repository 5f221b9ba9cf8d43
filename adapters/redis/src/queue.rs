//! `QueueRepository` on Redis: the same outcomes as PostgreSQL's (`adapters/postgres/src/queue.rs`),
//! each write one Lua script (see [`crate::scripts`], key layout in [`crate::keys`]).
//!
//! - A join compares the user's place version with the one read and draws the next place with
//!   `INCR` in the same script: a duplicate request loses the comparison and draws nothing, and
//!   a number is drawn only by a join that writes its ticket, so places have no gaps.
//! - PostgreSQL's queue lock (shared by joins, exclusive for a step or an opening) is the line's
//!   *hold* here: a key a step or an opening sets (`SET NX` with a lease) in its first script and
//!   deletes in its write script. A join that finds it held draws nothing and is retried until
//!   the hold is gone, so nothing joins between a step's reads and its writes, and the places an
//!   opening gives are the line's first. The hold's token is also the step's version: a write
//!   whose token is no longer the hold (its lease ran out and another took the line) is `Stale`.
//! - Ends, activity and polls do not wait for the hold: like PostgreSQL's, they compare their
//!   ticket's status (and `last_seen`) with the state read, and a step's write compares every
//!   ticket it touches, so a step that lost a race to them writes nothing (`Stale`).
//!
//! Keys (under `<prefix>{line:N}:`, see [`crate::keys`]): a join writes `next`, `members`,
//! `live`, `t:<place>` and `waiting`; an end moves a ticket from `live`/`waiting`/`active` to
//! `ended` (and `ended_waiting`); activity and polls write a ticket's `seen`; the snapshot reads
//! `state`, `next` and the sets' sizes. Each is one script, so each is atomic.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use concert_application::ports::{
    ActivityWrite, AdmissionReport, AdmissionRules, EndedTicket, EndedWaiting, JoinWrite,
    LiveTicket, OpeningRules, PreQueueEnd, PreQueueEntry, PreQueueJoin, PreQueueJoined,
    PreQueueOutcome, QueueRepository, QueueSnapshot, RepositoryError, TicketEnd, Version,
    WaitingPoll, Written,
};
use concert_domain::queue::ServingCounter;
use concert_domain::{EndReason, LineNo, QueueTicket, TicketNo, UserId};
use redis::Script;
use time::OffsetDateTime;

use crate::keys::{
    corrupt, instant, micros, micros_text, number, optional_instant, place, reason, required,
    status, ticket_at, user,
};
use crate::{RedisLine, scripts};

/// How many fields a script gives per ticket: place, user, status, issued, until, seen, reason.
pub(crate) const TICKET_FIELDS: usize = 7;

#[derive(Debug, Clone)]
pub struct RedisQueueRepository {
    line: RedisLine,
}

impl RedisQueueRepository {
    pub(crate) fn new(line: RedisLine) -> Self {
        Self { line }
    }
}

/// The tickets a script listed (each as [`TICKET_FIELDS`] values; a ticket with no user is
/// absent and left out).
pub(crate) fn parse_tickets(
    line: LineNo,
    fields: &[Option<String>],
) -> Result<Vec<QueueTicket>, RepositoryError> {
    let mut tickets = Vec::with_capacity(fields.len() / TICKET_FIELDS);
    for chunk in fields.chunks(TICKET_FIELDS) {
        if chunk.len() != TICKET_FIELDS {
            return Err(corrupt("a truncated ticket"));
        }
        let Some(holder) = &chunk[1] else {
            continue;
        };
        let at = ticket_at(line, number(&required(chunk.first(), "place")?)?)?;
        tickets.push(
            QueueTicket::restore(
                at,
                user(holder)?,
                status(&required(chunk.get(2), "status")?)?,
                instant(number(&required(chunk.get(3), "issued")?)?)?,
                optional_instant(chunk[4].as_ref())?,
                optional_instant(chunk[5].as_ref())?,
            )
            .with_end_reason(reason(chunk[6].as_ref())?),
        );
    }
    Ok(tickets)
}

/// How long a join waits between attempts while the line is held.
const HELD_RETRY: Duration = Duration::from_millis(2);

/// Runs `attempt` again while it answers `None` (the line is held by a step or an opening),
/// for at most the hold's lease and one timeout more (a holder that died lets go by then);
/// after that the line is unavailable.
pub(crate) async fn while_held<T, F, Fut>(
    line: &RedisLine,
    mut attempt: F,
) -> Result<T, RepositoryError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, RepositoryError>>,
{
    let deadline = tokio::time::Instant::now() + line.hold_lease() + line.timeout;
    loop {
        if let Some(done) = attempt().await? {
            return Ok(done);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(RepositoryError::Unavailable(
                "the line stayed held by a step or an opening".into(),
            ));
        }
        tokio::time::sleep(HELD_RETRY).await;
    }
}

/// The first value of a script's answer: its outcome.
pub(crate) fn outcome(answer: &[Option<String>]) -> Result<&str, RepositoryError> {
    answer
        .first()
        .and_then(Option::as_deref)
        .ok_or_else(|| corrupt("a script answered nothing"))
}

/// Ended tickets as the `ENDED` script lists them.
fn parse_ended(
    line: LineNo,
    fields: &[Option<String>],
) -> Result<Vec<EndedTicket>, RepositoryError> {
    fields
        .chunks(3)
        .map(|chunk| {
            Ok(EndedTicket {
                ticket: ticket_at(line, number(&required(chunk.first(), "place")?)?)?,
                reason: reason(chunk.get(1).and_then(Option::as_ref))?,
                ended_at: instant(number(&required(chunk.get(2), "ended")?)?)?,
            })
        })
        .collect()
}

fn count(raw: &Option<String>) -> Result<u64, RepositoryError> {
    let raw = raw.as_deref().unwrap_or("0");
    u64::try_from(number(raw)?).map_err(corrupt)
}

async fn ended(
    line: &RedisLine,
    at: LineNo,
    bound: i64,
    which: &str,
) -> Result<Vec<EndedTicket>, RepositoryError> {
    let fields = line
        .texts_on(&scripts::ENDED, at, &[bound.to_string(), which.to_owned()])
        .await?;
    parse_ended(at, &fields)
}

/// Runs a one-ticket compare-and-set script; `Done` when it wrote.
async fn one_ticket(
    line: &RedisLine,
    script: &Script,
    ticket: TicketNo,
    args: Vec<String>,
) -> Result<Written<()>, RepositoryError> {
    let mut all = vec![place(ticket).to_string()];
    all.extend(args);
    let written = line.texts_on(script, ticket.line(), &all).await?;
    Ok(match written.first().and_then(Option::as_deref) {
        Some("1") => Written::Done(()),
        _ => Written::Stale,
    })
}

#[async_trait]
impl QueueRepository for RedisQueueRepository {
    async fn load_live(&self, who: UserId, line: LineNo) -> Result<LiveTicket, RepositoryError> {
        let fields = self
            .line
            .texts_on(&scripts::LOAD_LIVE, line, &[who.to_string()])
            .await?;
        let version = match fields.first().and_then(Option::as_deref) {
            None => Version::ABSENT,
            Some(raw) => match number(raw)? {
                n if n > 0 => Version::new(n),
                n => return Err(corrupt(format!("place version {n}"))),
            },
        };
        let ticket = parse_tickets(line, fields.get(1..).unwrap_or_default())?
            .into_iter()
            .next();
        Ok(LiveTicket { ticket, version })
    }

    async fn save_join(&self, write: &JoinWrite) -> Result<Written<QueueTicket>, RepositoryError> {
        let issued = micros(write.now);
        let args = [
            write.user.to_string(),
            write.version.get().to_string(),
            issued.to_string(),
        ];
        let drawn = while_held(&self.line, || async {
            let answer = self
                .line
                .texts_on(&scripts::JOIN, write.line, &args)
                .await?;
            Ok(match outcome(&answer)? {
                "held" => None,
                "stale" => Some(None),
                "done" => Some(Some(number(&required(answer.get(1), "place")?)?)),
                // Nothing drawn: lease the line's numbers, then ask again.
                "no_block" => {
                    self.line.extend_block(write.line, None).await?;
                    None
                }
                "exhausted" => {
                    let index = number(&required(answer.get(1), "block")?)?;
                    let index = u32::try_from(index).map_err(corrupt)?;
                    self.line.extend_block(write.line, Some(index)).await?;
                    None
                }
                "live" => {
                    return Err(RepositoryError::Unexpected(
                        "a join over a user's live ticket".into(),
                    ));
                }
                other => return Err(corrupt(format!("a join answered {other:?}"))),
            })
        })
        .await?;
        match drawn {
            None => Ok(Written::Stale),
            Some(drawn) => Ok(Written::Done(QueueTicket::waiting(
                ticket_at(write.line, drawn)?,
                write.user,
                instant(issued)?,
            ))),
        }
    }

    async fn end(
        &self,
        end: &TicketEnd,
        now: OffsetDateTime,
    ) -> Result<Written<()>, RepositoryError> {
        one_ticket(
            &self.line,
            &scripts::END,
            end.ticket,
            vec![
                end.read_as.as_str().to_owned(),
                end.reason.as_str().to_owned(),
                micros_text(now),
            ],
        )
        .await
    }

    async fn find(&self, ticket: TicketNo) -> Result<Option<QueueTicket>, RepositoryError> {
        if ticket.is_pre_queue_entry() {
            return Ok(None);
        }
        let fields = self
            .line
            .texts_on(&scripts::FIND, ticket.line(), &[place(ticket).to_string()])
            .await?;
        Ok(parse_tickets(ticket.line(), &fields)?.into_iter().next())
    }

    async fn record_activity(&self, write: &ActivityWrite) -> Result<Written<()>, RepositoryError> {
        one_ticket(
            &self.line,
            &scripts::ACTIVITY,
            write.ticket,
            vec![
                write.read_last_seen.map(micros_text).unwrap_or_default(),
                micros_text(write.last_seen),
            ],
        )
        .await
    }

    async fn record_waiting_polls(&self, polls: &[WaitingPoll]) -> Result<u64, RepositoryError> {
        // One write per ticket, its latest poll; one script per line.
        let mut latest: BTreeMap<TicketNo, OffsetDateTime> = BTreeMap::new();
        for poll in polls {
            let at = latest.entry(poll.ticket).or_insert(poll.at);
            *at = (*at).max(poll.at);
        }
        let mut by_line: BTreeMap<LineNo, Vec<String>> = BTreeMap::new();
        for (ticket, at) in latest {
            if ticket.is_pre_queue_entry() {
                continue;
            }
            let args = by_line.entry(ticket.line()).or_default();
            args.push(place(ticket).to_string());
            args.push(micros_text(at));
        }
        let mut written = 0;
        for (line, args) in by_line {
            let answer = self.line.texts_on(&scripts::POLLS, line, &args).await?;
            written += count(answer.first().unwrap_or(&None))?;
        }
        Ok(written)
    }

    async fn admit(
        &self,
        line: LineNo,
        now: OffsetDateTime,
        rules: &(dyn AdmissionRules + 'static),
    ) -> Result<Written<AdmissionReport>, RepositoryError> {
        crate::admission::admit(&self.line, line, now, rules).await
    }

    async fn snapshot(&self, line: LineNo) -> Result<QueueSnapshot, RepositoryError> {
        let mut fields = self.line.texts_on(&scripts::SNAPSHOT, line, &[]).await?;
        // A line without a block (a new one, or one whose data Redis lost) is given one now, not
        // only at its next join: after a loss its serving counter then moves past every number
        // handed out before, so each instance's next refresh tells the tokens of then that
        // their places are gone (`401`), even while nobody joins.
        if fields
            .get(6)
            .is_some_and(|block| block.as_deref().unwrap_or("").is_empty())
        {
            self.line.extend_block(line, None).await?;
            fields = self.line.texts_on(&scripts::SNAPSHOT, line, &[]).await?;
        }
        let [
            serving,
            admitted_total,
            waiting,
            active,
            issued,
            pre_queued,
            _block,
        ] = fields.as_slice()
        else {
            return Err(corrupt("a snapshot of another shape"));
        };
        let serving = number(serving.as_deref().unwrap_or("0"))?;
        Ok(QueueSnapshot {
            serving: ServingCounter::new(line.start().get() + serving),
            admitted_total: count(admitted_total)?,
            waiting: count(waiting)?,
            active: count(active)?,
            issued: count(issued)?,
            pre_queued: count(pre_queued)?,
        })
    }

    async fn ended_since(
        &self,
        line: LineNo,
        since: OffsetDateTime,
    ) -> Result<Vec<EndedTicket>, RepositoryError> {
        ended(&self.line, line, micros(since), "since").await
    }

    async fn load_pre_queue(
        &self,
        who: UserId,
        line: LineNo,
    ) -> Result<Option<PreQueueEntry>, RepositoryError> {
        crate::pre_queue::load(&self.line, who, line).await
    }

    async fn save_pre_queue_join(
        &self,
        write: &PreQueueJoin,
    ) -> Result<PreQueueJoined, RepositoryError> {
        crate::pre_queue::join(&self.line, write).await
    }

    async fn end_pre_queue(
        &self,
        entry: TicketNo,
        who: UserId,
        why: EndReason,
        now: OffsetDateTime,
    ) -> Result<PreQueueEnd, RepositoryError> {
        crate::pre_queue::end(&self.line, entry, who, why, now).await
    }

    async fn open_line(
        &self,
        line: LineNo,
        now: OffsetDateTime,
        rules: &(dyn OpeningRules + 'static),
    ) -> Result<Written<u64>, RepositoryError> {
        crate::pre_queue::open(&self.line, line, now, rules).await
    }

    async fn pre_queue_outcomes(
        &self,
        line: LineNo,
    ) -> Result<Vec<PreQueueOutcome>, RepositoryError> {
        crate::pre_queue::outcomes(&self.line, line).await
    }

    async fn ended_waiting(
        &self,
        serving: ServingCounter,
    ) -> Result<Vec<EndedWaiting>, RepositoryError> {
        let line = serving.line();
        let above = serving.get() - line.start().get();
        Ok(ended(&self.line, line, above, "waiting")
            .await?
            .into_iter()
            .map(|ended| EndedWaiting {
                ticket: ended.ticket,
                reason: ended.reason,
            })
            .collect())
    }
}

/// How many ended tickets a purge reads at once while looking for those due.
const PURGE_PAGE: u32 = 256;

/// Purges up to `limit` tickets of `line` ended before `before` (see
/// [`RedisLine::purge_ended_tickets`]): reads the candidates, keeps those due, deletes them in
/// one script that checks each is still ended.
pub(crate) async fn purge_tickets(
    line: &RedisLine,
    at: LineNo,
    before: OffsetDateTime,
    limit: u32,
) -> Result<u64, RepositoryError> {
    let mut due: Vec<String> = Vec::new();
    let mut offset = 0_u32;
    while due.len() < limit as usize {
        let answer = line
            .texts_on(
                &scripts::PURGE_CANDIDATES,
                at,
                &[
                    micros_text(before),
                    offset.to_string(),
                    PURGE_PAGE.to_string(),
                ],
            )
            .await?;
        let serving = number(&required(answer.first(), "serving")?)?;
        let candidates = answer.get(1..).unwrap_or_default();
        for pair in candidates.chunks(2) {
            let place = required(pair.first(), "place")?;
            let admitted = pair.get(1).and_then(Option::as_deref).unwrap_or("");
            // PostgreSQL's rule (docs/DATABASE.md, retention): a ticket that ended while waiting
            // stays until the line's serving counter reaches its place; the positions behind it
            // leave it out until then.
            if (!admitted.is_empty() || number(&place)? <= serving) && due.len() < limit as usize {
                due.push(place);
            }
        }
        if candidates.len() / 2 < PURGE_PAGE as usize {
            break;
        }
        offset += PURGE_PAGE;
    }
    if due.is_empty() {
        return Ok(0);
    }
    let answer = line.texts_on(&scripts::PURGE_TICKETS, at, &due).await?;
    count(answer.first().unwrap_or(&None))
}
