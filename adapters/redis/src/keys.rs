//! Key names and the encoding of values in Redis.
//!
//! Every key of line `N` starts with `<prefix>{line:N}:` (the line's *base*); the `{line:N}`
//! hash tag keeps a line on one Redis Cluster shard, and each script is handed one base and
//! touches keys under it only. Under the base:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `next` | string | the last place drawn (a place is ticket − line start; `INCR` draws the next) |
//! | `block` | hash | the block of places the line draws from (`index`, `last` place) and `base`, the place before its first block (where the issued count starts) |
//! | `members` | hash | user → the version of their place in the line (moves with each new ticket) |
//! | `live` | hash | user → the place of their live (waiting or active) ticket |
//! | `t:<place>` | hash | a ticket: `user`, `status`, `issued`, `until`, `seen`, `reason`, `admitted`, `ended`, `entry` |
//! | `waiting` | sorted set | places of the waiting tickets (score: place) |
//! | `active` | sorted set | places of the active tickets (score: place) |
//! | `ended` | sorted set | places of the ended tickets (score: end instant) |
//! | `ended_waiting` | sorted set | places of the tickets that ended while waiting (score: place) |
//! | `admissions` | sorted set | places of the admitted tickets (score: admission instant) |
//! | `state` | hash | `serving` (a place), `admitted_total`, `pace_credit`, `pace_at` |
//! | `hold` | string | `step:<token>` or `open:<token>` while a step or an opening holds the line (expires) |
//! | `phase` | string | `gathering` while the line's room gathers a pre-queue, then `opened` |
//! | `pq:next` | string | the last pre-queue number drawn (an entry is `pre_queue_start` + number) |
//! | `pq:live` | hash | user → the number of their live entry (neither placed nor ended) |
//! | `pq:arrivals` | sorted set | numbers of the live entries (score: number, arrival order) |
//! | `e:<number>` | hash | an entry: `user`, `issued`, `place`, `ended`, `reason` |
//! | `pq:placed` | sorted set | numbers of the placed entries (score: place) |
//! | `pq:ended` | sorted set | numbers of the ended entries (score: end instant) |
//! | `pq:orphans` | sorted set | numbers of placed entries whose ticket was purged |
//!
//! Deployment-wide: `<prefix>epoch` (the dataset's id) and `<prefix>lines` (a set of the lines
//! in use, for the purges).
//!
//! Instants are integer microseconds since the Unix epoch (PostgreSQL's precision), written as
//! decimal strings; places and versions are decimal strings too.

use concert_application::ports::RepositoryError;
use concert_domain::{EndReason, LineNo, TicketNo, TicketStatus, UserId};
use redis::Value;
use time::OffsetDateTime;

/// The key names of one deployment (one prefix).
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// The base every key of `line` starts with.
    pub(crate) fn line(&self, line: LineNo) -> String {
        format!("{}{{line:{}}}:", self.prefix, line.get())
    }

    pub(crate) fn epoch(&self) -> String {
        format!("{}epoch", self.prefix)
    }

    /// The set of the lines in use.
    pub(crate) fn lines(&self) -> String {
        format!("{}lines", self.prefix)
    }

    pub(crate) fn phase(&self, line: LineNo) -> String {
        format!("{}phase", self.line(line))
    }
}

/// The place of `ticket` in its line (1 for the first).
pub(crate) fn place(ticket: TicketNo) -> i64 {
    ticket.get() - ticket.line().start().get()
}

/// The ticket at `place` of `line`.
pub(crate) fn ticket_at(line: LineNo, place: i64) -> Result<TicketNo, RepositoryError> {
    if place < 1 || line.start().get() + place > line.pre_queue_start() {
        return Err(corrupt(format!("line {line} has no place {place}")));
    }
    TicketNo::new(line.start().get() + place).map_err(corrupt)
}

/// The pre-queue entry numbered `n` of `line`.
pub(crate) fn entry_at(line: LineNo, n: i64) -> Result<TicketNo, RepositoryError> {
    if n < 1 || line.pre_queue_start() + n >= line.end() {
        return Err(corrupt(format!("line {line} has no pre-queue entry {n}")));
    }
    TicketNo::new(line.pre_queue_start() + n).map_err(corrupt)
}

/// The number of `entry` in its line's pre-queue.
pub(crate) fn entry_number(entry: TicketNo) -> i64 {
    entry.get() - entry.line().pre_queue_start()
}

pub(crate) fn micros(at: OffsetDateTime) -> i64 {
    i64::try_from((at.unix_timestamp_nanos()).div_euclid(1_000)).unwrap_or(i64::MAX)
}

pub(crate) fn micros_text(at: OffsetDateTime) -> String {
    micros(at).to_string()
}

pub(crate) fn instant(micros: i64) -> Result<OffsetDateTime, RepositoryError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000).map_err(corrupt)
}

/// A Redis value the scripts stored or computed, for data that is not what it should be.
pub(crate) fn corrupt(error: impl std::fmt::Display) -> RepositoryError {
    RepositoryError::Unexpected(format!("unexpected data in Redis: {error}").into())
}

/// A script's answer as a list of optional strings (integers as their decimal text).
pub(crate) fn texts(value: Value) -> Result<Vec<Option<String>>, RepositoryError> {
    match value {
        Value::Array(items) => items.into_iter().map(text).collect(),
        Value::Nil => Ok(Vec::new()),
        other => Ok(vec![text(other)?]),
    }
}

/// One optional string.
pub(crate) fn text(value: Value) -> Result<Option<String>, RepositoryError> {
    match value {
        Value::Nil => Ok(None),
        Value::Int(n) => Ok(Some(n.to_string())),
        Value::BulkString(bytes) => String::from_utf8(bytes).map(Some).map_err(corrupt),
        Value::SimpleString(s) => Ok(Some(s)),
        Value::Okay => Ok(Some("OK".to_owned())),
        other => Err(corrupt(format!("a reply of {other:?}"))),
    }
}

/// A field that must be present.
pub(crate) fn required(
    field: Option<&Option<String>>,
    name: &str,
) -> Result<String, RepositoryError> {
    field
        .and_then(Option::clone)
        .ok_or_else(|| corrupt(format!("missing {name}")))
}

pub(crate) fn number(raw: &str) -> Result<i64, RepositoryError> {
    raw.parse()
        .map_err(|_| corrupt(format!("the number {raw:?}")))
}

pub(crate) fn optional_instant(
    raw: Option<&String>,
) -> Result<Option<OffsetDateTime>, RepositoryError> {
    raw.map(|raw| instant(number(raw)?)).transpose()
}

pub(crate) fn user(raw: &str) -> Result<UserId, RepositoryError> {
    UserId::parse(raw).map_err(corrupt)
}

pub(crate) fn status(raw: &str) -> Result<TicketStatus, RepositoryError> {
    TicketStatus::parse(raw).ok_or_else(|| corrupt(format!("ticket status {raw:?}")))
}

pub(crate) fn reason(raw: Option<&String>) -> Result<Option<EndReason>, RepositoryError> {
    raw.map(|raw| EndReason::parse(raw).ok_or_else(|| corrupt(format!("end reason {raw:?}"))))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn an_instant_round_trips_through_microseconds() {
        let at = datetime!(2030-06-01 12:00:00.123456 UTC);
        assert_eq!(instant(micros(at)).expect("an instant"), at);
        let before_1970 = datetime!(1969-12-31 23:59:59.5 UTC);
        assert_eq!(
            instant(micros(before_1970)).expect("an instant"),
            before_1970
        );
    }

    #[test]
    fn places_and_entries_name_their_line() {
        let line = LineNo::new(3).expect("a line");
        let ticket = ticket_at(line, 7).expect("a place");
        assert_eq!((ticket.line(), place(ticket)), (line, 7));
        let entry = entry_at(line, 2).expect("an entry");
        assert!(entry.is_pre_queue_entry());
        assert_eq!((entry.line(), entry_number(entry)), (line, 2));
        assert!(ticket_at(line, 0).is_err());
    }

    #[test]
    fn every_key_of_a_line_carries_its_hash_tag() {
        let keys = Keys::new("concert:");
        assert_eq!(keys.line(LineNo::DEFAULT), "concert:{line:0}:");
        assert_eq!(
            keys.phase(LineNo::new(12).expect("a line")),
            "concert:{line:12}:phase"
        );
        assert_eq!(keys.epoch(), "concert:epoch");
    }
}
