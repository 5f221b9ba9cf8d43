//! A room's pre-queue and its opening on Redis (PostgreSQL's: docs/DATABASE.md §5.12).
//!
//! The line's `phase` key says whether its room gathers a pre-queue (`gathering`, set by
//! [`crate::RedisLineRooms`] for a room with an opening) or has opened (`opened`); a line with
//! neither has no room that gathers, and a pre-queue join there is sent to the line.
//!
//! - A pre-queue join is one script: it reads the phase and, while gathering, draws the next
//!   entry number and writes the entry; a user with a live entry draws nothing (`Stale`).
//! - The opening is PostgreSQL's under the line's exclusive lock: `OPEN_BEGIN` takes the line's
//!   hold (only while gathering; a second opening is `Stale`) and reads the live entries in
//!   arrival order; the rules order them; `OPEN_WRITE` checks the hold is still this opening's
//!   and every entry is still live, then gives them the line's next places in that order, marks
//!   the line opened and releases the hold, all or nothing. While the hold is there, pre-queue
//!   joins, leaves and line joins wait (they are retried), so none lands between the read and
//!   the write: a join finds the line opened and goes to the line after every placed entry, a
//!   leave finds its entry placed.
//!
//! Keys (under `<prefix>{line:N}:`, see [`crate::keys`]): `phase`, `hold`, `pq:next`, `pq:live`,
//! `pq:arrivals`, `e:<number>`, `pq:placed`, `pq:ended`, `pq:orphans`, and for the places the
//! line's `next`, `members`, `live`, `waiting` and `t:<place>`: the opening's write sets every one
//! of them in one script.

use concert_application::ports::{
    OpeningRules, PreQueueEnd, PreQueueEntry, PreQueueJoin, PreQueueJoined, PreQueueOutcome,
    RepositoryError, Written,
};
use concert_domain::{EndReason, LineNo, TicketNo, UserId};
use time::OffsetDateTime;

use crate::admission::{Hold, token};
use crate::keys::{
    corrupt, entry_at, entry_number, instant, micros, micros_text, number, reason, required,
    ticket_at, user,
};
use crate::queue::{outcome, while_held};
use crate::{RedisLine, scripts};

pub(crate) async fn load(
    redis: &RedisLine,
    who: UserId,
    line: LineNo,
) -> Result<Option<PreQueueEntry>, RepositoryError> {
    let answer = redis
        .texts_on(&scripts::PRE_QUEUE_LOAD, line, &[who.to_string()])
        .await?;
    if answer.is_empty() {
        return Ok(None);
    }
    Ok(Some(PreQueueEntry {
        entry: entry_at(line, number(&required(answer.first(), "entry")?)?)?,
        user: who,
        issued_at: instant(number(&required(answer.get(1), "issued")?)?)?,
    }))
}

pub(crate) async fn join(
    redis: &RedisLine,
    write: &PreQueueJoin,
) -> Result<PreQueueJoined, RepositoryError> {
    let issued = micros(write.now);
    let args = [write.user.to_string(), issued.to_string()];
    while_held(redis, || async {
        let answer = redis
            .texts_on(&scripts::PRE_QUEUE_JOIN, write.line, &args)
            .await?;
        Ok(match outcome(&answer)? {
            "held" => None,
            "opened" => Some(PreQueueJoined::Opened),
            "stale" => Some(PreQueueJoined::Stale),
            // The line leases its first block with its first entry, so that its opening finds
            // its places ready and a stale opening writes nothing.
            "no_block" => {
                redis.extend_block(write.line, None).await?;
                None
            }
            "done" => Some(PreQueueJoined::Done(PreQueueEntry {
                entry: entry_at(write.line, number(&required(answer.get(1), "entry")?)?)?,
                user: write.user,
                issued_at: instant(issued)?,
            })),
            other => return Err(corrupt(format!("a pre-queue join answered {other:?}"))),
        })
    })
    .await
}

pub(crate) async fn end(
    redis: &RedisLine,
    entry: TicketNo,
    who: UserId,
    why: EndReason,
    now: OffsetDateTime,
) -> Result<PreQueueEnd, RepositoryError> {
    if !entry.is_pre_queue_entry() {
        return Ok(PreQueueEnd::Missing);
    }
    let line = entry.line();
    let args = [
        entry_number(entry).to_string(),
        who.to_string(),
        why.as_str().to_owned(),
        micros_text(now),
    ];
    while_held(redis, || async {
        let answer = redis.texts_on(&scripts::PRE_QUEUE_END, line, &args).await?;
        Ok(match outcome(&answer)? {
            "held" => None,
            "missing" => Some(PreQueueEnd::Missing),
            "ended" => Some(PreQueueEnd::Ended),
            "placed" => Some(PreQueueEnd::Placed(ticket_at(
                line,
                number(&required(answer.get(1), "place")?)?,
            )?)),
            "ended_before" => Some(PreQueueEnd::AlreadyEnded(reason(
                answer.get(1).and_then(Option::as_ref),
            )?)),
            other => return Err(corrupt(format!("a pre-queue end answered {other:?}"))),
        })
    })
    .await
}

pub(crate) async fn open(
    redis: &RedisLine,
    line: LineNo,
    now: OffsetDateTime,
    rules: &dyn OpeningRules,
) -> Result<Written<u64>, RepositoryError> {
    let token = token();
    let lease = redis.hold_lease().as_millis().to_string();
    // A step holding the line lets go in a moment; another opening or an opened line is final.
    let begun = while_held(redis, || async {
        let answer = redis
            .texts_on(&scripts::OPEN_BEGIN, line, &[token.clone(), lease.clone()])
            .await?;
        Ok(match outcome(&answer)? {
            "held" => None,
            _ => Some(answer),
        })
    })
    .await?;
    match outcome(&begun)? {
        "stale" => return Ok(Written::Stale),
        "begun" => {}
        other => return Err(corrupt(format!("an opening answered {other:?}"))),
    }
    let hold = Hold::new(redis, line, format!("open:{token}"));
    let arrivals = begun[1..]
        .chunks(3)
        .map(|entry| {
            Ok(PreQueueEntry {
                entry: entry_at(line, number(&required(entry.first(), "entry")?)?)?,
                user: user(&required(entry.get(1), "user")?)?,
                issued_at: instant(number(&required(entry.get(2), "issued")?)?)?,
            })
        })
        .collect::<Result<Vec<_>, RepositoryError>>()?;
    let order = rules.order(arrivals);
    let mut args = vec![token, micros_text(now)];
    for entry in &order {
        // An entry of another line was not read: a number no entry has makes the write stale.
        args.push(
            if entry.entry.line() == line && entry.entry.is_pre_queue_entry() {
                entry_number(entry.entry).to_string()
            } else {
                "0".to_owned()
            },
        );
    }
    // The places come from the line's block, or from blocks leased for them, which the write
    // installs (nothing else draws while the opening holds the line).
    let block = redis
        .places_for(line, u64::try_from(order.len()).unwrap_or(u64::MAX))
        .await?;
    let written = redis
        .texts_on(&scripts::OPEN_WRITE, line, &opening_args(block, args))
        .await?;
    hold.released();
    match outcome(&written)? {
        "done" => {
            redis.note_line(line).await?;
            let placed = number(&required(written.get(1), "placed")?)?;
            Ok(Written::Done(u64::try_from(placed).map_err(corrupt)?))
        }
        _ => Ok(Written::Stale),
    }
}

pub(crate) async fn outcomes(
    redis: &RedisLine,
    line: LineNo,
) -> Result<Vec<PreQueueOutcome>, RepositoryError> {
    let answer = redis
        .texts_on(&scripts::PRE_QUEUE_OUTCOMES, line, &[])
        .await?;
    answer
        .chunks(3)
        .map(|chunk| {
            Ok(PreQueueOutcome {
                entry: entry_at(line, number(&required(chunk.first(), "entry")?)?)?,
                place: chunk
                    .get(1)
                    .and_then(Option::as_deref)
                    .map(|place| ticket_at(line, number(place)?))
                    .transpose()?,
                ended: reason(chunk.get(2).and_then(Option::as_ref))?,
            })
        })
        .collect()
}

/// Purges up to `limit` entries of `line` whose story is over (see
/// [`RedisLine::purge_pre_queue_entries`]).
pub(crate) async fn purge_entries(
    redis: &RedisLine,
    line: LineNo,
    before: OffsetDateTime,
    limit: u32,
) -> Result<u64, RepositoryError> {
    let answer = redis
        .texts_on(
            &scripts::PURGE_ENTRY_CANDIDATES,
            line,
            &[micros_text(before), limit.to_string()],
        )
        .await?;
    // PostgreSQL's rule: only a room that opened; until then every entry may still get a place.
    if answer.first().and_then(Option::as_deref) != Some("opened") {
        return Ok(0);
    }
    let mut due: Vec<String> = answer[1..].iter().flatten().cloned().collect();
    due.sort_unstable();
    due.dedup();
    due.truncate(limit as usize);
    if due.is_empty() {
        return Ok(0);
    }
    let purged = redis.texts_on(&scripts::PURGE_ENTRIES, line, &due).await?;
    u64::try_from(number(&required(purged.first(), "purged")?)?).map_err(corrupt)
}

/// The opening's arguments: its token and instant, then the block it installs and takes its
/// places from (index read or `''`, index, first place, last place), then the entries in order.
fn opening_args(block: crate::OpeningBlock, mut args: Vec<String>) -> Vec<String> {
    let entries = args.split_off(2);
    args.extend([
        block
            .read
            .map(|index| index.to_string())
            .unwrap_or_default(),
        block
            .index
            .map(|index| index.to_string())
            .unwrap_or_default(),
        block.first.to_string(),
        block.last.to_string(),
    ]);
    args.extend(entries);
    args
}
