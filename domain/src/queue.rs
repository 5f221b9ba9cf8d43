//! The waiting queue: a ticket is WAITING → ACTIVE → EXPIRED. Tickets are admitted strictly in
//! ticket order, at most `max_active` at once. The serving counter is the highest ticket admitted
//! so far, so a waiting ticket's position is `ticket − serving`: O(1), and it never grows because
//! the counter only moves forward.

use std::fmt;

use time::{Duration, OffsetDateTime};

use crate::{ParseError, TicketNo, UserId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TicketStatus {
    Waiting,
    Active,
    Expired,
}

impl TicketStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "WAITING",
            Self::Active => "ACTIVE",
            Self::Expired => "EXPIRED",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "WAITING" => Some(Self::Waiting),
            "ACTIVE" => Some(Self::Active),
            "EXPIRED" => Some(Self::Expired),
            _ => None,
        }
    }
}

/// Why a ticket ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndReason {
    /// Its user paid: the one purchase the ticket admitted to is done.
    Paid,
    /// Active for the whole active time (`QUEUE_ACTIVE_TTL_SECONDS`).
    ActiveTimeOver,
    /// Active, but no request within the idle timeout.
    Idle,
    /// An operator revoked it.
    Revoked,
    /// Its user left the line.
    Left,
}

impl EndReason {
    pub const ALL: [Self; 5] = [
        Self::Paid,
        Self::ActiveTimeOver,
        Self::Idle,
        Self::Revoked,
        Self::Left,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Paid => "PAID",
            Self::ActiveTimeOver => "ACTIVE_TIME_OVER",
            Self::Idle => "IDLE",
            Self::Revoked => "REVOKED",
            Self::Left => "LEFT",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|reason| reason.as_str() == raw)
    }
}

/// `QUEUE_MAX_ACTIVE`, `QUEUE_ACTIVE_TTL_SECONDS` and `QUEUE_IDLE_TIMEOUT_SECONDS`, and the
/// room's rule for waiting users who stop watching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueuePolicy {
    pub max_active: u32,
    pub active_ttl: Duration,
    pub idle_timeout: Duration,
    /// `None`: waiting users keep their place however long they are away (v1).
    pub waiting_idle: Option<WaitingIdle>,
}

impl Default for QueuePolicy {
    fn default() -> Self {
        Self {
            max_active: 1000,
            active_ttl: Duration::minutes(10),
            idle_timeout: Duration::minutes(2),
            waiting_idle: None,
        }
    }
}

/// A room's `waitingIdleSeconds`: a waiting ticket whose holder has not polled for `after` is
/// passed over when its turn comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitingIdle {
    pub after: Duration,
    /// When the rule was turned on. Polls are recorded only while it is on, so no ticket counts
    /// as unseen for the time before.
    pub since: OffsetDateTime,
}

impl WaitingIdle {
    /// How late a waiting poll may reach the store: an instance writes a ticket's polls in
    /// batches, at most once per half of this, so a busy line costs few writes. A tenth of the
    /// window, 1 to 30 seconds; a ticket is passed over only this long after the window.
    pub fn resolution(&self) -> Duration {
        (self.after / 10_i32).clamp(Duration::seconds(1), Duration::seconds(30))
    }

    /// The longest a waiting client is told to wait between polls: a third of the window, so
    /// that one following `Retry-After` never looks idle.
    pub fn longest_retry_after_seconds(&self) -> u32 {
        u32::try_from(self.after.whole_seconds() / 3)
            .unwrap_or(u32::MAX)
            .max(1)
    }
}

impl QueuePolicy {
    /// How many waiting tickets may be admitted when `active` tickets are live.
    pub fn free_slots(&self, active: u32) -> u32 {
        self.max_active.saturating_sub(active)
    }

    /// How often an active ticket's last activity is written: often enough that the idle timeout
    /// is exact to within this, rarely enough that a busy user costs no write per request.
    pub fn activity_resolution(&self) -> Duration {
        (self.idle_timeout / 10_i32).clamp(Duration::milliseconds(100), Duration::seconds(5))
    }

    /// How long after its last recorded activity an active ticket idles out. Activity is written
    /// at most once per [`QueuePolicy::activity_resolution`], so the recorded time may lag the
    /// last request by that much; adding it means a ticket never ends while a request came within
    /// the idle timeout (it may end up to one resolution late instead).
    pub fn idle_deadline_after_activity(&self) -> Duration {
        self.idle_timeout + self.activity_resolution()
    }

    /// Whether a newcomer may be admitted on arrival rather than at the next timed step: nobody
    /// waits and a place is free (passthrough). Only a hint from a recent view of the line: the
    /// admission step still admits in ticket order and never beyond `max_active`.
    pub fn admits_on_arrival(&self, waiting: u64, active: u64) -> bool {
        waiting == 0 && active < u64::from(self.max_active)
    }

    /// How many seconds a waiting client at `position` should wait before polling again (see
    /// [`retry_after_seconds`]), short enough to keep its place under the room's waiting rule.
    pub fn retry_after_seconds(&self, position: u64) -> u32 {
        let seconds = retry_after_seconds(position);
        self.waiting_idle.map_or(seconds, |idle| {
            seconds.min(idle.longest_retry_after_seconds())
        })
    }

    /// Whether a waiting poll at `now` should be written down, given when this instance last
    /// wrote one for the same ticket: only under a waiting rule, and at most once per half of
    /// its resolution.
    pub fn needs_waiting_poll_write(
        &self,
        last_written: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> bool {
        self.waiting_idle
            .is_some_and(|idle| last_written.is_none_or(|at| now - at >= idle.resolution() / 2_i32))
    }

    /// How many of the oldest waiting tickets an admission step reads to fill `free` places:
    /// more than `free` under a waiting rule, since some may be passed over (a step that runs
    /// out admits fewer, and the next one goes on).
    pub fn waiting_candidates(&self, free: u32) -> u32 {
        if self.waiting_idle.is_some() && free > 0 {
            free.saturating_mul(2).saturating_add(64)
        } else {
            free
        }
    }

    /// Admissions per second when the line moves only by timeouts: the pessimistic rate used to
    /// estimate a wait before any admission has been measured.
    pub fn worst_case_admissions_per_second(&self) -> f64 {
        f64::from(self.max_active) / self.active_ttl.as_seconds_f64().max(1.0)
    }
}

/// Why a ticket may not use the protected endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AccessRefused {
    #[error("the queue token has expired")]
    Expired,
    #[error("the queue token is still waiting")]
    Waiting,
    /// The token's room does not guard the concert asked about.
    #[error("the queue token admits to another room's concerts")]
    WrongRoom,
}

/// Why a ticket could not be admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AdmitRefused {
    #[error("only waiting tickets are admitted")]
    NotWaiting,
}

/// The line of one waiting room. Ticket numbers of line `n` run from `n · 2⁴⁰ + 1` up, in
/// arrival order, so a token's ticket tells which room's line it waits in, and a position stays
/// `ticket − serving` within a line. The `default` room's line is 0 (the tickets of v1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct LineNo(u32);

impl LineNo {
    /// The `default` room's line.
    pub const DEFAULT: Self = Self(0);
    /// How many ticket numbers one line has (places 1 to `2⁴⁰ − 1`).
    const SPAN_BITS: u32 = 40;
    /// The highest line number: every line's range, end included, fits in a positive `i64`.
    pub const MAX: u32 = (1 << (62 - Self::SPAN_BITS)) - 1;

    pub fn new(raw: i64) -> Result<Self, ParseError> {
        u32::try_from(raw)
            .ok()
            .filter(|line| *line <= Self::MAX)
            .map(Self)
            .ok_or_else(|| ParseError::new("line", format!("must be 0 to {}", Self::MAX)))
    }

    pub const fn get(self) -> u32 {
        self.0
    }

    /// The serving counter of the line before its first admission: its first ticket is next.
    pub const fn start(self) -> ServingCounter {
        ServingCounter((self.0 as i64) << Self::SPAN_BITS)
    }

    /// The first ticket number past this line (the end of its range, exclusive).
    pub const fn end(self) -> i64 {
        (self.0 as i64 + 1) << Self::SPAN_BITS
    }

    /// Where the line's pre-queue entries are numbered from: the upper half of its range, so an
    /// entry's number names its line and can never be a place.
    pub const fn pre_queue_start(self) -> i64 {
        self.start().0 + (1 << (Self::SPAN_BITS - 1))
    }

    /// How many numbers one block of a line's places holds (see [`Self::ticket_block`]).
    pub const BLOCK_SPAN: i64 = 1 << 16;

    /// The places of block `index` of the line, `(first, last)`: block 0 holds the line's first
    /// places and each block follows the one before, so a line that draws its numbers block after
    /// block has no gaps. A line kept where its data may be lost leases its blocks from a durable
    /// store and starts again in a block after every block leased before, so that it never
    /// hands out a number twice. `None` past the places' half of the range.
    pub fn ticket_block(self, index: u32) -> Option<(TicketNo, TicketNo)> {
        let first = self.start().0 + 1 + i64::from(index) * Self::BLOCK_SPAN;
        let last = first + Self::BLOCK_SPAN - 1;
        if last > self.pre_queue_start() {
            return None;
        }
        Some((TicketNo::new(first).ok()?, TicketNo::new(last).ok()?))
    }

    /// The line a ticket number (or a serving counter) belongs to.
    const fn of(number: i64) -> Self {
        // Numbers are positive and below 2⁶³, so the shifted value fits in 23 bits.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Self((number >> Self::SPAN_BITS) as u32)
    }
}

impl fmt::Display for LineNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl TicketNo {
    /// The line this ticket waits in.
    pub const fn line(self) -> LineNo {
        LineNo::of(self.get())
    }

    /// Whether this number is a pre-queue entry (a token taken before its room opened), not a
    /// place in the line.
    pub const fn is_pre_queue_entry(self) -> bool {
        self.get() > self.line().pre_queue_start()
    }
}

/// The order in which a room's pre-queue gets its places at the opening, from the entries in
/// arrival order: that order, or with `shuffle` a uniformly random one (Fisher–Yates), each
/// draw `below(n)` a uniform number in `0..n` from a secure source, so nobody can predict or
/// game it.
pub fn opening_order<T>(
    mut arrivals: Vec<T>,
    shuffle: bool,
    below: &mut dyn FnMut(usize) -> usize,
) -> Vec<T> {
    if shuffle {
        for last in (1..arrivals.len()).rev() {
            let drawn = below(last + 1).min(last);
            arrivals.swap(last, drawn);
        }
    }
    arrivals
}

/// The highest ticket number admitted so far in one line; the line's start before its first
/// admission. Only moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct ServingCounter(i64);

impl ServingCounter {
    pub const fn new(value: i64) -> Self {
        Self(if value < 0 { 0 } else { value })
    }

    pub const fn get(self) -> i64 {
        self.0
    }

    /// The counter after another view of it: the larger of the two, so it never moves back.
    pub fn advance_to(self, other: Self) -> Self {
        self.max(other)
    }

    /// The line this counter serves.
    pub const fn line(self) -> LineNo {
        LineNo::of(self.0)
    }

    /// Whether `ticket` of this line has reached the front: admitted, or ended after admission.
    /// A ticket of another line never has.
    pub fn has_served(self, ticket: TicketNo) -> bool {
        ticket.line() == self.line() && ticket.get() <= self.0
    }

    /// The place of a waiting ticket of this line: 1 for the first in line.
    pub fn position_of(self, ticket: TicketNo) -> Option<u64> {
        if ticket.line() != self.line() {
            return None;
        }
        u64::try_from(ticket.get() - self.0).ok().filter(|p| *p > 0)
    }
}

/// The place of a waiting ticket when some tickets between the serving counter and it ended
/// without being admitted (they left or were revoked): those no longer count, so the line stays
/// gap-free. `ended_waiting` must be in ticket order. `None` for a ticket that was served or
/// is itself among the ended ones.
pub fn position_in_line(
    serving: ServingCounter,
    ticket: TicketNo,
    ended_waiting: &[TicketNo],
) -> Option<u64> {
    let counted = serving.position_of(ticket)?;
    if ended_waiting.binary_search(&ticket).is_ok() {
        return None;
    }
    let ahead_from = ended_waiting.partition_point(|ended| ended.get() <= serving.get());
    let ahead_to = ended_waiting.partition_point(|ended| ended.get() < ticket.get());
    let ended_ahead = u64::try_from(ahead_to.saturating_sub(ahead_from)).unwrap_or(u64::MAX);
    Some(counted.saturating_sub(ended_ahead))
}

/// How many seconds a waiting client should wait before polling again: 1 near the front, growing
/// with the position, at most 30, so the polling load stays bounded however long the line is.
pub fn retry_after_seconds(position: u64) -> u32 {
    let seconds = 1 + position / 200;
    u32::try_from(seconds.min(30)).unwrap_or(30)
}

/// The expected wait of a ticket at `position`, given how fast the line moves.
pub fn estimated_wait_seconds(position: u64, admissions_per_second: f64) -> u64 {
    if admissions_per_second <= f64::EPSILON {
        return u64::MAX;
    }
    // Positions are far below 2^52, where f64 is exact.
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let seconds = (position as f64 / admissions_per_second).ceil() as u64;
    seconds
}

/// When an active ticket ends unless it is used again: the earlier of its active deadline and its
/// idle deadline. `None` for a ticket that was never admitted.
pub fn active_deadline(
    active_until: Option<OffsetDateTime>,
    last_seen: Option<OffsetDateTime>,
    policy: &QueuePolicy,
) -> Option<OffsetDateTime> {
    let active_until = active_until?;
    let idle_until = last_seen.map(|seen| seen + policy.idle_deadline_after_activity());
    Some(idle_until.map_or(active_until, |idle| idle.min(active_until)))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueTicket {
    ticket: TicketNo,
    user: UserId,
    status: TicketStatus,
    issued_at: OffsetDateTime,
    active_until: Option<OffsetDateTime>,
    last_seen: Option<OffsetDateTime>,
    end_reason: Option<EndReason>,
}

impl QueueTicket {
    /// A new ticket at the back of the line.
    pub fn waiting(ticket: TicketNo, user: UserId, issued_at: OffsetDateTime) -> Self {
        Self::restore(ticket, user, TicketStatus::Waiting, issued_at, None, None)
    }

    /// A ticket as a store holds it.
    pub fn restore(
        ticket: TicketNo,
        user: UserId,
        status: TicketStatus,
        issued_at: OffsetDateTime,
        active_until: Option<OffsetDateTime>,
        last_seen: Option<OffsetDateTime>,
    ) -> Self {
        Self {
            ticket,
            user,
            status,
            issued_at,
            active_until,
            last_seen,
            end_reason: None,
        }
    }

    /// The ticket with the reason its store recorded for its end (none for tickets ended before
    /// reasons were recorded).
    #[must_use]
    pub fn with_end_reason(mut self, reason: Option<EndReason>) -> Self {
        self.end_reason = reason;
        self
    }

    pub fn ticket(&self) -> TicketNo {
        self.ticket
    }

    pub fn user(&self) -> UserId {
        self.user
    }

    /// The status as stored, before its deadlines are applied (see [`Self::status_at`]).
    pub fn stored_status(&self) -> TicketStatus {
        self.status
    }

    pub fn issued_at(&self) -> OffsetDateTime {
        self.issued_at
    }

    pub fn active_until(&self) -> Option<OffsetDateTime> {
        self.active_until
    }

    pub fn last_seen(&self) -> Option<OffsetDateTime> {
        self.last_seen
    }

    /// Why the ticket ended, as stored.
    pub fn end_reason(&self) -> Option<EndReason> {
        self.end_reason
    }

    /// Why the ticket has ended at `now`: the stored reason, or for an active ticket past a
    /// deadline the deadline it passed (the active time when both passed at once). `None` while
    /// it lives.
    pub fn end_reason_at(&self, now: OffsetDateTime, policy: &QueuePolicy) -> Option<EndReason> {
        match self.status_at(now, policy) {
            TicketStatus::Waiting | TicketStatus::Active => None,
            TicketStatus::Expired if self.status == TicketStatus::Expired => self.end_reason,
            TicketStatus::Expired => {
                let idle_until = self
                    .last_seen
                    .map(|seen| seen + policy.idle_deadline_after_activity());
                match (self.active_until, idle_until) {
                    (Some(active), Some(idle)) if idle < active => Some(EndReason::Idle),
                    _ => Some(EndReason::ActiveTimeOver),
                }
            }
        }
    }

    pub fn status_at(&self, now: OffsetDateTime, policy: &QueuePolicy) -> TicketStatus {
        match self.status {
            TicketStatus::Active if self.deadline(policy).is_some_and(|end| end <= now) => {
                TicketStatus::Expired
            }
            status => status,
        }
    }

    /// When an active ticket ends unless it is used again: see [`active_deadline`].
    pub fn deadline(&self, policy: &QueuePolicy) -> Option<OffsetDateTime> {
        active_deadline(self.active_until, self.last_seen, policy)
    }

    /// WAITING → ACTIVE until `now + active_ttl`.
    pub fn admit(&mut self, now: OffsetDateTime, policy: &QueuePolicy) -> Result<(), AdmitRefused> {
        if self.status != TicketStatus::Waiting {
            return Err(AdmitRefused::NotWaiting);
        }
        self.status = TicketStatus::Active;
        self.active_until = Some(now + policy.active_ttl);
        self.last_seen = Some(now);
        Ok(())
    }

    /// Whether a waiting ticket's turn is passed over at `now` under the room's waiting rule: no
    /// poll recorded since the window (and the resolution of recording) before `now`. A ticket
    /// never polled counts from its issue, and none from before the rule was turned on.
    pub fn is_passed_over_at(&self, now: OffsetDateTime, policy: &QueuePolicy) -> bool {
        let Some(idle) = policy.waiting_idle else {
            return false;
        };
        let seen = self.last_seen.unwrap_or(self.issued_at).max(idle.since);
        self.status == TicketStatus::Waiting && seen + idle.after + idle.resolution() <= now
    }

    /// Whether the ticket may use the protected endpoints at `now`.
    pub fn authorize(
        &self,
        now: OffsetDateTime,
        policy: &QueuePolicy,
    ) -> Result<(), AccessRefused> {
        match self.status_at(now, policy) {
            TicketStatus::Active => Ok(()),
            TicketStatus::Waiting => Err(AccessRefused::Waiting),
            TicketStatus::Expired => Err(AccessRefused::Expired),
        }
    }

    /// Whether a request at `now` should be written down as activity (see
    /// [`QueuePolicy::activity_resolution`]).
    pub fn needs_activity_write(&self, now: OffsetDateTime, policy: &QueuePolicy) -> bool {
        self.status == TicketStatus::Active
            && self
                .last_seen
                .is_none_or(|seen| now - seen >= policy.activity_resolution())
    }

    /// Records a request at `now` on an active ticket (the idle timeout starts again). Activity
    /// never moves back: a request timed by a clock a little behind the last one changes nothing.
    pub fn touch(&mut self, now: OffsetDateTime) {
        if self.status == TicketStatus::Active {
            self.last_seen = Some(self.last_seen.map_or(now, |seen| seen.max(now)));
        }
    }

    /// Ends the ticket for `reason`. Ending an ended ticket changes nothing (its first reason
    /// stays).
    pub fn end(&mut self, reason: EndReason) {
        if self.status != TicketStatus::Expired {
            self.status = TicketStatus::Expired;
            self.end_reason = Some(reason);
        }
    }
}

/// What a request for a queue token does with the user's live ticket, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Join {
    /// The user already has a place (waiting, or active within its deadlines): hand it back.
    Keep(QueueTicket),
    /// Draw a new number at the back of the line; first end `ends`, an active ticket past a
    /// deadline that is still stored as active.
    Draw { ends: Option<QueueTicket> },
}

/// One live place per user: a waiting or active ticket is handed back; an active ticket past
/// its active or idle deadline has ended, and the user joins the back of the line again.
pub fn join(live: Option<&QueueTicket>, now: OffsetDateTime, policy: &QueuePolicy) -> Join {
    match live {
        None => Join::Draw { ends: None },
        Some(ticket) => match ticket.status_at(now, policy) {
            TicketStatus::Waiting | TicketStatus::Active => Join::Keep(ticket.clone()),
            TicketStatus::Expired if ticket.status == TicketStatus::Expired => {
                Join::Draw { ends: None }
            }
            TicketStatus::Expired => {
                let mut ended = ticket.clone();
                ended.end(
                    ticket
                        .end_reason_at(now, policy)
                        .unwrap_or(EndReason::ActiveTimeOver),
                );
                Join::Draw { ends: Some(ended) }
            }
        },
    }
}

/// What a user's request to leave the line does with their ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leave {
    /// The ticket was waiting or active: write it ended, `LEFT`; its place or slot is freed.
    End(QueueTicket),
    /// It had already left: nothing to write (a repeated request gets the same answer).
    AlreadyLeft,
    /// It had ended for another reason (or is past a deadline the admission step has not
    /// written yet): nothing to write, the token is simply expired.
    Ended(Option<EndReason>),
}

/// Leaving the line: a waiting or active ticket ends `LEFT`.
pub fn leave(ticket: &QueueTicket, now: OffsetDateTime, policy: &QueuePolicy) -> Leave {
    match ticket.status_at(now, policy) {
        TicketStatus::Waiting | TicketStatus::Active => {
            let mut left = ticket.clone();
            left.end(EndReason::Left);
            Leave::End(left)
        }
        TicketStatus::Expired => match ticket.end_reason_at(now, policy) {
            Some(EndReason::Left) => Leave::AlreadyLeft,
            reason => Leave::Ended(reason),
        },
    }
}

/// An operator's revocation: a ticket live at `now` ends `REVOKED`; `None` when there is nothing
/// left to end (it ended already, or is past a deadline the admission step will write).
pub fn revoke(
    ticket: &QueueTicket,
    now: OffsetDateTime,
    policy: &QueuePolicy,
) -> Option<QueueTicket> {
    match ticket.status_at(now, policy) {
        TicketStatus::Waiting | TicketStatus::Active => {
            let mut revoked = ticket.clone();
            revoked.end(EndReason::Revoked);
            Some(revoked)
        }
        TicketStatus::Expired => None,
    }
}

/// What a payment's end of its payer's ticket does when it is applied after the payment, from a
/// record written beside it (the line kept in another store than the payment): decided on the
/// ticket stored under its number now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeferredEnd {
    /// Still the payer's ticket, in the status the payment read: end it.
    End,
    /// It has ended already (the same end applied before, or a deadline came first): done.
    Ended,
    /// No ticket under that number, or not the one the payment read: the payer's ticket is
    /// gone (purged, or the line's store started again empty) and the number may have been
    /// handed out again, to someone else or to the payer's next ticket. Nothing to end.
    Moot,
}

/// Whether a payment's end, decided at `decided_at` for `payer`'s ticket read as `read_as`,
/// still applies to `found`, the ticket stored under its number now. A ticket issued after the
/// payment was decided cannot be the one it paid with.
pub fn deferred_end(
    found: Option<&QueueTicket>,
    payer: UserId,
    read_as: TicketStatus,
    decided_at: OffsetDateTime,
) -> DeferredEnd {
    let Some(ticket) = found else {
        return DeferredEnd::Moot;
    };
    if ticket.user != payer || ticket.issued_at > decided_at {
        return DeferredEnd::Moot;
    }
    match ticket.status {
        TicketStatus::Expired => DeferredEnd::Ended,
        status if status == read_as => DeferredEnd::End,
        // Tickets only move forward: one stored before the status read is another ticket.
        _ => DeferredEnd::Moot,
    }
}

/// The first half of an admission step: the active tickets past a deadline, ended, and how many
/// places are free once they are gone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overdue {
    /// Tickets stored as active that have ended at `now`, in their new state.
    pub ended: Vec<QueueTicket>,
    /// Places free for waiting tickets (never more than `max_active` active at once).
    pub free: u32,
}

/// Ends every active ticket past its active or idle deadline at `now`, and counts the places left
/// free under `policy.max_active`.
pub fn end_overdue(active: &[QueueTicket], now: OffsetDateTime, policy: &QueuePolicy) -> Overdue {
    let mut ended = Vec::new();
    let mut still_active = 0u32;
    for ticket in active {
        if let Some(reason) = ticket.end_reason_at(now, policy) {
            let mut over = ticket.clone();
            over.end(reason);
            ended.push(over);
        } else {
            still_active = still_active.saturating_add(1);
        }
    }
    Overdue {
        ended,
        free: policy.free_slots(still_active),
    }
}

/// The second half of an admission step: who gets the free places.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Admission {
    /// Admitted, in their new state, in ticket order.
    pub admitted: Vec<QueueTicket>,
    /// Waiting tickets whose turn came while their holder was away (the room's waiting rule):
    /// ended `IDLE`, in ticket order.
    pub passed_over: Vec<QueueTicket>,
}

/// Admits the oldest waiting tickets into `free` places, first come, first served; a ticket
/// idle under the room's waiting rule is passed over and the next one takes the place.
/// `waiting` must be the oldest waiting tickets in ticket order.
pub fn admit_oldest(
    waiting: &[QueueTicket],
    free: u32,
    now: OffsetDateTime,
    policy: &QueuePolicy,
) -> Admission {
    let free = usize::try_from(free).unwrap_or(usize::MAX);
    let mut admission = Admission::default();
    for ticket in waiting {
        if admission.admitted.len() >= free {
            break;
        }
        let mut next = ticket.clone();
        if ticket.is_passed_over_at(now, policy) {
            next.end(EndReason::Idle);
            admission.passed_over.push(next);
        } else if next.admit(now, policy).is_ok() {
            admission.admitted.push(next);
        }
    }
    admission
}

impl ServingCounter {
    /// The counter once `admitted` are served: it only moves forward.
    pub fn after_admitting(self, admitted: &[QueueTicket]) -> Self {
        admitted
            .iter()
            .map(|ticket| Self::new(ticket.ticket.get()))
            .fold(self, Self::advance_to)
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;
    use uuid::Uuid;

    use super::*;

    #[test]
    fn pre_queue_entries_are_numbered_apart_from_places_in_their_lines() {
        let gala = LineNo::new(2).expect("a line");
        let entry = TicketNo::new(gala.pre_queue_start() + 1).expect("an entry");
        assert!(entry.is_pre_queue_entry());
        assert_eq!(entry.line(), gala);
        let place = TicketNo::new(gala.start().get() + 1).expect("a place");
        assert!(!place.is_pre_queue_entry());
        assert!(!TicketNo::new(1).expect("a place").is_pre_queue_entry());
        assert!(gala.start().position_of(entry).is_some_and(|p| p > 1 << 38));
    }

    #[test]
    fn ticket_blocks_follow_each_other_from_the_first_place_to_the_pre_queue() {
        let gala = LineNo::new(3).expect("a line");
        let (first, last) = gala.ticket_block(0).expect("the first block");
        assert_eq!(first.get(), gala.start().get() + 1);
        assert_eq!(last.get() - first.get() + 1, LineNo::BLOCK_SPAN);
        let (next, _) = gala.ticket_block(1).expect("the second block");
        assert_eq!(next.get(), last.get() + 1);
        let blocks =
            u32::try_from((gala.pre_queue_start() - gala.start().get()) / LineNo::BLOCK_SPAN)
                .expect("a few million blocks");
        let (_, final_place) = gala.ticket_block(blocks - 1).expect("the last block");
        assert_eq!(final_place.get(), gala.pre_queue_start());
        assert!(!final_place.is_pre_queue_entry());
        assert_eq!(gala.ticket_block(blocks), None);
        assert_eq!(
            LineNo::new(i64::from(LineNo::MAX))
                .expect("the last line")
                .ticket_block(blocks),
            None
        );
    }

    proptest::proptest! {
        #[test]
        fn every_block_is_places_of_its_own_line_right_after_the_block_before(
            line in 0..=LineNo::MAX,
            index in 1u32..(1 << 23),
        ) {
            let line = LineNo::new(i64::from(line)).expect("a line");
            let (first, last) = line.ticket_block(index).expect("a block");
            let (_, before) = line.ticket_block(index - 1).expect("the block before");
            proptest::prop_assert_eq!(first.get(), before.get() + 1);
            proptest::prop_assert_eq!(first.line(), line);
            proptest::prop_assert_eq!(last.line(), line);
            proptest::prop_assert!(!last.is_pre_queue_entry());
        }
    }

    #[test]
    fn the_opening_keeps_arrival_order_unless_shuffled() {
        let arrivals: Vec<u32> = (1..=6).collect();
        let mut never = |_: usize| -> usize { panic!("no draw without shuffle") };
        assert_eq!(opening_order(arrivals.clone(), false, &mut never), arrivals);
        // Always drawing 0 moves each last element to the front in turn.
        let mut zero = |_: usize| 0;
        assert_eq!(
            opening_order(arrivals.clone(), true, &mut zero),
            vec![2, 3, 4, 5, 6, 1]
        );
        let mut draws = Vec::new();
        let mut record = |n: usize| {
            draws.push(n);
            n - 1
        };
        assert_eq!(opening_order(arrivals.clone(), true, &mut record), arrivals);
        assert_eq!(
            draws,
            vec![6, 5, 4, 3, 2],
            "one draw per place but the first"
        );
    }

    #[test]
    fn every_order_of_three_is_equally_likely_from_uniform_draws() {
        // Every combination of draws (3 choices, then 2) gives a distinct order: six orders,
        // each from exactly one of the six equally likely draw sequences.
        let mut orders = std::collections::HashSet::new();
        for first in 0..3 {
            for second in 0..2 {
                let mut script = vec![second, first];
                let mut below = |_: usize| script.pop().expect("a draw");
                orders.insert(opening_order(vec!['a', 'b', 'c'], true, &mut below));
            }
        }
        assert_eq!(orders.len(), 6);
    }

    #[test]
    fn each_line_numbers_its_own_tickets_and_serves_only_them() {
        let gala = LineNo::new(2).expect("a line");
        assert_eq!(LineNo::new(-1).map_err(|e| e.field), Err("line"));
        assert!(LineNo::new(i64::from(LineNo::MAX) + 1).is_err());
        let last = LineNo::new(i64::from(LineNo::MAX)).expect("the last line");
        assert!(last.end() > last.start().get(), "no overflow");
        let first = TicketNo::new(gala.start().get() + 1).expect("a ticket");
        assert_eq!(first.line(), gala);
        assert_eq!(
            TicketNo::new(gala.end() - 1).expect("a ticket").line(),
            gala
        );
        assert_eq!(TicketNo::new(7).expect("a ticket").line(), LineNo::DEFAULT);
        let serving = gala.start();
        assert_eq!(serving.line(), gala);
        assert_eq!(serving.position_of(first), Some(1));
        assert!(!serving.has_served(first));
        let default_ticket = TicketNo::new(7).expect("a ticket");
        assert!(
            !serving.has_served(default_ticket),
            "another line's number is lower, not served"
        );
        assert_eq!(serving.position_of(default_ticket), None);
        assert_eq!(LineNo::DEFAULT.start(), ServingCounter::default());
    }

    const NOW: OffsetDateTime = datetime!(2026-12-01 12:00 UTC);

    fn policy() -> QueuePolicy {
        QueuePolicy {
            max_active: 2,
            active_ttl: Duration::minutes(10),
            idle_timeout: Duration::minutes(2),
            waiting_idle: None,
        }
    }

    fn ticket(n: i64) -> QueueTicket {
        QueueTicket::waiting(
            TicketNo::new(n).expect("ticket"),
            UserId::from_uuid(Uuid::from_u128(n.unsigned_abs().into())),
            NOW,
        )
    }

    #[test]
    fn waiting_ticket_is_admitted_until_the_active_deadline() {
        let mut t = ticket(1);
        assert_eq!(t.authorize(NOW, &policy()), Err(AccessRefused::Waiting));
        t.admit(NOW, &policy()).expect("admitted");
        assert_eq!(t.authorize(NOW, &policy()), Ok(()));
        assert_eq!(t.admit(NOW, &policy()), Err(AdmitRefused::NotWaiting));
    }

    #[test]
    fn active_ticket_ends_at_its_active_deadline_even_when_busy() {
        let mut t = ticket(1);
        t.admit(NOW, &policy()).expect("admitted");
        let mut at = NOW;
        while at < NOW + Duration::minutes(10) {
            assert_eq!(t.status_at(at, &policy()), TicketStatus::Active);
            t.touch(at);
            at += Duration::minutes(1);
        }
        assert_eq!(
            t.status_at(NOW + Duration::minutes(10), &policy()),
            TicketStatus::Expired
        );
        assert_eq!(
            t.authorize(NOW + Duration::minutes(10), &policy()),
            Err(AccessRefused::Expired)
        );
    }

    #[test]
    fn active_ticket_idles_out_without_requests() {
        let mut t = ticket(1);
        t.admit(NOW, &policy()).expect("admitted");
        // Idle 2 minutes, activity written every 5 seconds at most: ends 2:05 after the last
        // recorded request, never before 2:00 after the last real one.
        let idle_end = NOW + Duration::seconds(125);
        let before = idle_end - Duration::seconds(1);
        assert_eq!(t.status_at(before, &policy()), TicketStatus::Active);
        assert_eq!(t.status_at(idle_end, &policy()), TicketStatus::Expired);
        t.touch(NOW + Duration::minutes(1));
        assert_eq!(t.status_at(idle_end, &policy()), TicketStatus::Active);
    }

    #[test]
    fn payment_ends_the_ticket_for_good() {
        let mut t = ticket(1);
        t.admit(NOW, &policy()).expect("admitted");
        t.end(EndReason::Paid);
        assert_eq!(t.authorize(NOW, &policy()), Err(AccessRefused::Expired));
        t.touch(NOW);
        assert_eq!(t.status, TicketStatus::Expired);
    }

    #[test]
    fn activity_is_written_at_most_once_per_resolution() {
        let mut t = ticket(1);
        assert!(
            !t.needs_activity_write(NOW, &policy()),
            "waiting tickets have no activity"
        );
        t.admit(NOW, &policy()).expect("admitted");
        assert!(!t.needs_activity_write(NOW + Duration::seconds(1), &policy()));
        assert!(t.needs_activity_write(NOW + Duration::seconds(12), &policy()));
    }

    #[test]
    fn position_counts_from_the_serving_counter_and_never_grows() {
        let mine = TicketNo::new(10).expect("ticket");
        let mut serving = ServingCounter::new(3);
        assert_eq!(serving.position_of(mine), Some(7));
        let mut last = 7;
        for seen in [5, 4, 8, 2, 9] {
            serving = serving.advance_to(ServingCounter::new(seen));
            let position = serving.position_of(mine).expect("still waiting");
            assert!(position <= last, "position grew from {last} to {position}");
            last = position;
        }
        assert_eq!(serving.get(), 9);
        assert_eq!(serving.position_of(mine), Some(1));
        serving = serving.advance_to(ServingCounter::new(10));
        assert!(serving.has_served(mine));
        assert_eq!(serving.position_of(mine), None);
    }

    #[test]
    fn admission_fills_free_slots_only() {
        assert_eq!(policy().free_slots(0), 2);
        assert_eq!(policy().free_slots(2), 0);
        assert_eq!(policy().free_slots(5), 0);
    }

    #[test]
    fn a_newcomer_passes_through_only_an_empty_line_with_a_free_place() {
        assert!(policy().admits_on_arrival(0, 0));
        assert!(policy().admits_on_arrival(0, 1));
        assert!(
            !policy().admits_on_arrival(0, 2),
            "max_active 2, both taken"
        );
        assert!(
            !policy().admits_on_arrival(1, 0),
            "someone waits: first come, first served"
        );
    }

    #[test]
    fn retry_after_grows_with_position_and_is_bounded() {
        assert!(retry_after_seconds(1) <= 2);
        assert!(retry_after_seconds(1000) > retry_after_seconds(1));
        assert_eq!(retry_after_seconds(u64::MAX), 30);
        let mut previous = 0;
        for position in 1..20_000 {
            let seconds = retry_after_seconds(position);
            assert!(seconds >= previous && seconds <= 30);
            previous = seconds;
        }
    }

    #[test]
    fn estimated_wait_follows_the_admission_rate() {
        assert_eq!(estimated_wait_seconds(100, 10.0), 10);
        assert_eq!(estimated_wait_seconds(1, 10.0), 1);
        assert_eq!(estimated_wait_seconds(5, 0.0), u64::MAX);
        assert!((policy().worst_case_admissions_per_second() - 2.0 / 600.0).abs() < 1e-9);
    }

    #[test]
    fn status_names_round_trip() {
        for status in [
            TicketStatus::Waiting,
            TicketStatus::Active,
            TicketStatus::Expired,
        ] {
            assert_eq!(TicketStatus::parse(status.as_str()), Some(status));
        }
    }

    /// A ticket as stored: active until `active_until`, last seen at `last_seen`.
    fn active(n: i64, active_until: OffsetDateTime, last_seen: OffsetDateTime) -> QueueTicket {
        let waiting = ticket(n);
        QueueTicket::restore(
            waiting.ticket(),
            waiting.user(),
            TicketStatus::Active,
            NOW,
            Some(active_until),
            Some(last_seen),
        )
    }

    /// `ticket` as an end for `reason` leaves it: the same fields, stored expired.
    fn ended(ticket: &QueueTicket, reason: EndReason) -> QueueTicket {
        QueueTicket::restore(
            ticket.ticket(),
            ticket.user(),
            TicketStatus::Expired,
            ticket.issued_at(),
            ticket.active_until(),
            ticket.last_seen(),
        )
        .with_end_reason(Some(reason))
    }

    fn numbers(tickets: &[QueueTicket]) -> Vec<i64> {
        tickets.iter().map(|t| t.ticket().get()).collect()
    }

    #[test]
    fn restore_keeps_every_field_and_waiting_starts_with_no_deadline() {
        let seen = NOW + Duration::seconds(3);
        let t = active(7, NOW + Duration::minutes(10), seen);
        assert_eq!(t.ticket().get(), 7);
        assert_eq!(t.user(), ticket(7).user());
        assert_eq!(t.stored_status(), TicketStatus::Active);
        assert_eq!(t.issued_at(), NOW);
        assert_eq!(t.active_until(), Some(NOW + Duration::minutes(10)));
        assert_eq!(t.last_seen(), Some(seen));
        let w = ticket(7);
        assert_eq!(w.stored_status(), TicketStatus::Waiting);
        assert_eq!((w.active_until(), w.last_seen()), (None, None));
    }

    #[test]
    fn join_without_a_live_ticket_draws_and_ends_nothing() {
        assert_eq!(join(None, NOW, &policy()), Join::Draw { ends: None });
    }

    #[test]
    fn join_hands_back_a_waiting_ticket() {
        let t = ticket(4);
        assert_eq!(
            join(Some(&t), NOW + Duration::hours(5), &policy()),
            Join::Keep(t)
        );
    }

    #[test]
    fn join_hands_back_an_active_ticket_within_its_deadlines() {
        let t = active(4, NOW + Duration::minutes(10), NOW);
        // Just before the idle deadline (2:05 after the last recorded activity).
        let at = NOW + Duration::seconds(124);
        assert_eq!(join(Some(&t), at, &policy()), Join::Keep(t.clone()));
        assert_eq!(join(Some(&t), NOW, &policy()), Join::Keep(t));
    }

    #[test]
    fn join_ends_an_active_ticket_past_its_active_deadline_and_draws() {
        let t = active(4, NOW + Duration::minutes(10), NOW + Duration::minutes(9));
        let at = NOW + Duration::minutes(10);
        assert_eq!(
            join(Some(&t), at, &policy()),
            Join::Draw {
                ends: Some(ended(&t, EndReason::ActiveTimeOver))
            }
        );
    }

    #[test]
    fn join_ends_an_idle_active_ticket_and_draws() {
        let t = active(4, NOW + Duration::minutes(10), NOW);
        let at = NOW + policy().idle_deadline_after_activity();
        let Join::Draw { ends: Some(over) } = join(Some(&t), at, &policy()) else {
            panic!("an idle ticket is ended and the user draws again");
        };
        assert_eq!(over, ended(&t, EndReason::Idle));
        assert_eq!(over.stored_status(), TicketStatus::Expired);
    }

    #[test]
    fn join_over_a_ticket_stored_expired_draws_without_ending_it_again() {
        let mut paid = active(4, NOW + Duration::minutes(10), NOW);
        paid.end(EndReason::Paid);
        assert_eq!(join(Some(&paid), NOW, &policy()), Join::Draw { ends: None });
        let at = NOW + Duration::minutes(30);
        assert_eq!(join(Some(&paid), at, &policy()), Join::Draw { ends: None });
    }

    #[test]
    fn end_overdue_ends_tickets_past_the_active_or_idle_deadline_and_frees_their_places() {
        let live = active(1, NOW + Duration::minutes(10), NOW);
        let past_active = active(2, NOW + Duration::seconds(30), NOW + Duration::seconds(29));
        let idle = active(3, NOW + Duration::minutes(10), NOW - Duration::seconds(95));
        let at = NOW + Duration::seconds(30);

        let overdue = end_overdue(&[live, past_active.clone(), idle.clone()], at, &policy());

        assert_eq!(
            overdue.ended,
            vec![
                ended(&past_active, EndReason::ActiveTimeOver),
                ended(&idle, EndReason::Idle)
            ]
        );
        assert_eq!(overdue.free, 1, "max_active 2, one still active");
    }

    #[test]
    fn end_overdue_counts_every_ended_ticket_as_a_free_place() {
        let a = active(1, NOW + Duration::minutes(1), NOW);
        let b = active(2, NOW + Duration::minutes(10), NOW);
        let at = NOW + Duration::minutes(3);

        let overdue = end_overdue(&[a.clone(), b.clone()], at, &policy());

        assert_eq!(
            overdue.ended,
            vec![
                ended(&a, EndReason::ActiveTimeOver),
                ended(&b, EndReason::Idle)
            ]
        );
        assert_eq!(overdue.free, 2);
    }

    #[test]
    fn end_overdue_with_none_overdue_ends_nothing() {
        let a = active(1, NOW + Duration::minutes(10), NOW);
        assert_eq!(
            end_overdue(&[a], NOW, &policy()),
            Overdue {
                ended: vec![],
                free: 1
            }
        );
        assert_eq!(
            end_overdue(&[], NOW, &policy()),
            Overdue {
                ended: vec![],
                free: 2
            }
        );
    }

    #[test]
    fn end_overdue_frees_no_place_while_more_are_active_than_max_active_now_allows() {
        // `max_active` lowered from 5 to 2 while 4 were active; one of them ends.
        let tickets: Vec<_> = (1..=4)
            .map(|n| active(n, NOW + Duration::minutes(10), NOW))
            .collect();
        let mut with_one_over = tickets.clone();
        with_one_over[0] = active(1, NOW, NOW);

        assert_eq!(end_overdue(&tickets, NOW, &policy()).free, 0);
        let overdue = end_overdue(&with_one_over, NOW, &policy());
        assert_eq!(numbers(&overdue.ended), vec![1]);
        assert_eq!(overdue.free, 0, "3 still active over a max of 2");
    }

    #[test]
    fn admit_oldest_admits_at_most_free_in_the_given_order_until_now_plus_ttl() {
        let waiting = [ticket(5), ticket(6), ticket(7)];
        let at = NOW + Duration::seconds(40);

        let admitted = admit_oldest(&waiting, 2, at, &policy()).admitted;

        assert_eq!(numbers(&admitted), vec![5, 6]);
        for t in &admitted {
            assert_eq!(t.stored_status(), TicketStatus::Active);
            assert_eq!(t.active_until(), Some(at + policy().active_ttl));
            assert_eq!(t.last_seen(), Some(at));
            assert_eq!(t.issued_at(), NOW);
        }
        assert_eq!(
            admit_oldest(&waiting, 0, at, &policy()),
            Admission::default()
        );
        assert_eq!(
            numbers(&admit_oldest(&waiting, 9, at, &policy()).admitted),
            vec![5, 6, 7]
        );
        let given = [ticket(9), ticket(8)];
        assert_eq!(
            numbers(&admit_oldest(&given, 1, at, &policy()).admitted),
            vec![9]
        );
    }

    /// A room that passes over waiting users away for a minute, on since `NOW`.
    fn idle_after_a_minute() -> QueuePolicy {
        QueuePolicy {
            waiting_idle: Some(WaitingIdle {
                after: Duration::minutes(1),
                since: NOW,
            }),
            ..policy()
        }
    }

    fn seen_waiting(
        n: i64,
        issued_at: OffsetDateTime,
        seen: Option<OffsetDateTime>,
    ) -> QueueTicket {
        QueueTicket::restore(
            TicketNo::new(n).expect("ticket"),
            UserId::from_uuid(Uuid::from_u128(n.unsigned_abs().into())),
            TicketStatus::Waiting,
            issued_at,
            None,
            seen,
        )
    }

    #[test]
    fn a_waiting_ticket_is_passed_over_only_after_the_window_and_its_resolution() {
        let idle = idle_after_a_minute();
        let resolution = idle.waiting_idle.expect("on").resolution();
        assert_eq!(resolution, Duration::seconds(6));
        let seen = NOW + Duration::minutes(5);
        let polled = seen_waiting(1, NOW, Some(seen));
        let deadline = seen + Duration::minutes(1) + resolution;
        assert!(!polled.is_passed_over_at(deadline - Duration::milliseconds(1), &idle));
        assert!(polled.is_passed_over_at(deadline, &idle));
        assert!(
            !polled.is_passed_over_at(deadline + Duration::hours(1), &policy()),
            "without the rule nobody is passed over"
        );
        let never_polled = seen_waiting(2, NOW + Duration::minutes(2), None);
        let from_issue = NOW + Duration::minutes(3) + resolution;
        assert!(!never_polled.is_passed_over_at(from_issue - Duration::milliseconds(1), &idle));
        assert!(never_polled.is_passed_over_at(from_issue, &idle));
        let from_before_the_rule = seen_waiting(3, NOW - Duration::hours(1), None);
        assert!(
            !from_before_the_rule.is_passed_over_at(NOW + Duration::seconds(65), &idle),
            "polls were not recorded before the rule was on"
        );
        assert!(from_before_the_rule.is_passed_over_at(NOW + Duration::seconds(66), &idle));
        let mut active = seen_waiting(4, NOW - Duration::hours(1), None);
        active.admit(NOW, &idle).expect("admitted");
        assert!(!active.is_passed_over_at(NOW + Duration::hours(1), &idle));
    }

    #[test]
    fn admit_oldest_passes_over_idle_waiters_and_fills_the_places_with_the_next() {
        let idle = idle_after_a_minute();
        let at = NOW + Duration::minutes(10);
        let fresh = Some(at - Duration::seconds(30));
        let stale = Some(at - Duration::minutes(2));
        let waiting = [
            seen_waiting(1, NOW, stale),
            seen_waiting(2, NOW, fresh),
            seen_waiting(3, NOW, None),
            seen_waiting(4, NOW, fresh),
            seen_waiting(5, NOW, stale),
            seen_waiting(6, NOW, fresh),
        ];
        let admission = admit_oldest(&waiting, 2, at, &idle);
        assert_eq!(numbers(&admission.admitted), vec![2, 4]);
        assert_eq!(numbers(&admission.passed_over), vec![1, 3]);
        for passed in &admission.passed_over {
            assert_eq!(passed.stored_status(), TicketStatus::Expired);
            assert_eq!(passed.end_reason(), Some(EndReason::Idle));
        }
        let short = admit_oldest(&waiting[..3], 2, at, &idle);
        assert_eq!(numbers(&short.admitted), vec![2], "fewer left than places");
        assert_eq!(
            numbers(&admit_oldest(&waiting, 2, at, &policy()).admitted),
            vec![1, 2],
            "without the rule the oldest go first"
        );
    }

    #[test]
    fn under_a_waiting_rule_clients_poll_often_enough_and_steps_read_further() {
        let idle = idle_after_a_minute();
        assert_eq!(idle.retry_after_seconds(100_000), 20);
        assert_eq!(idle.retry_after_seconds(1), policy().retry_after_seconds(1));
        assert_eq!(policy().retry_after_seconds(100_000), 30);
        let tiny = QueuePolicy {
            waiting_idle: Some(WaitingIdle {
                after: Duration::seconds(2),
                since: NOW,
            }),
            ..policy()
        };
        assert_eq!(tiny.retry_after_seconds(100_000), 1);
        assert_eq!(policy().waiting_candidates(10), 10);
        assert!(idle.waiting_candidates(10) > 10);
        assert_eq!(idle.waiting_candidates(0), 0);
    }

    proptest::proptest! {
        /// Whatever the line looks like: the admitted and the passed over are the head of the
        /// line in order, nobody is admitted beyond the free places, every passed-over ticket
        /// was idle and no admitted one was, and a step stops only when the places are full or
        /// the line it read is used up.
        #[test]
        fn admission_under_a_waiting_rule_takes_the_head_of_the_line_in_order(
            seen_ago in proptest::collection::vec(proptest::option::of(0i64..200), 0..40),
            free in 0u32..12,
        ) {
            let idle = idle_after_a_minute();
            let at = NOW + Duration::minutes(10);
            let waiting: Vec<QueueTicket> = seen_ago
                .iter()
                .enumerate()
                .map(|(i, ago)| {
                    let seen = ago.map(|ago| at - Duration::seconds(ago));
                    seen_waiting(i64::try_from(i).expect("small") + 1, NOW, seen)
                })
                .collect();
            let admission = admit_oldest(&waiting, free, at, &idle);
            proptest::prop_assert!(admission.admitted.len() <= free as usize);
            let mut taken: Vec<i64> = numbers(&admission.admitted);
            taken.extend(numbers(&admission.passed_over));
            taken.sort_unstable();
            let head: Vec<i64> = numbers(&waiting[..taken.len()]);
            proptest::prop_assert_eq!(&taken, &head);
            for passed in &admission.passed_over {
                let read = &waiting[usize::try_from(passed.ticket().get() - 1).expect("index")];
                proptest::prop_assert!(read.is_passed_over_at(at, &idle));
            }
            for admitted in &admission.admitted {
                let read = &waiting[usize::try_from(admitted.ticket().get() - 1).expect("index")];
                proptest::prop_assert!(!read.is_passed_over_at(at, &idle));
            }
            proptest::prop_assert!(
                admission.admitted.len() == free as usize || taken.len() == waiting.len()
            );
        }
    }

    #[test]
    fn a_waiting_poll_is_written_at_most_once_per_half_resolution_and_only_under_a_rule() {
        let idle = idle_after_a_minute();
        assert!(!policy().needs_waiting_poll_write(None, NOW));
        assert!(idle.needs_waiting_poll_write(None, NOW));
        assert!(!idle.needs_waiting_poll_write(Some(NOW), NOW + Duration::seconds(2)));
        assert!(idle.needs_waiting_poll_write(Some(NOW), NOW + Duration::seconds(3)));
    }

    #[test]
    fn after_admitting_moves_to_the_highest_admitted_and_never_back() {
        let admitted = [ticket(12), ticket(15), ticket(13)];
        assert_eq!(ServingCounter::new(10).after_admitting(&admitted).get(), 15);
        assert_eq!(ServingCounter::new(20).after_admitting(&admitted).get(), 20);
        assert_eq!(
            ServingCounter::new(20).after_admitting(&[ticket(12)]).get(),
            20
        );
        assert_eq!(ServingCounter::new(7).after_admitting(&[]).get(), 7);
    }

    #[test]
    fn touch_never_moves_last_seen_back() {
        let mut t = ticket(1);
        t.admit(NOW, &policy()).expect("admitted");
        t.touch(NOW + Duration::minutes(1));
        t.touch(NOW + Duration::seconds(30));
        assert_eq!(t.last_seen(), Some(NOW + Duration::minutes(1)));
        t.touch(NOW + Duration::seconds(90));
        assert_eq!(t.last_seen(), Some(NOW + Duration::seconds(90)));
    }

    #[test]
    fn touch_changes_nothing_on_a_ticket_that_is_not_active() {
        let mut waiting = ticket(1);
        waiting.touch(NOW);
        assert_eq!(waiting, ticket(1));
    }

    #[test]
    fn end_reason_names_round_trip() {
        for reason in EndReason::ALL {
            assert_eq!(EndReason::parse(reason.as_str()), Some(reason));
        }
        assert_eq!(EndReason::parse("paid"), None);
    }

    #[test]
    fn the_first_end_reason_stays() {
        let mut t = ticket(1);
        assert_eq!(t.end_reason(), None);
        t.end(EndReason::Left);
        t.end(EndReason::Paid);
        assert_eq!(t.stored_status(), TicketStatus::Expired);
        assert_eq!(t.end_reason(), Some(EndReason::Left));
    }

    #[test]
    fn an_overdue_ticket_ended_by_the_deadline_it_passed_first() {
        let idle_first = active(1, NOW + Duration::minutes(10), NOW);
        let at = NOW + Duration::minutes(3);
        assert_eq!(idle_first.end_reason_at(NOW, &policy()), None);
        assert_eq!(
            idle_first.end_reason_at(at, &policy()),
            Some(EndReason::Idle)
        );
        let time_first = active(2, NOW + Duration::minutes(1), NOW);
        assert_eq!(
            time_first.end_reason_at(at, &policy()),
            Some(EndReason::ActiveTimeOver)
        );
        assert_eq!(ticket(3).end_reason_at(at, &policy()), None);
    }

    #[test]
    fn leaving_ends_a_waiting_or_active_ticket_once() {
        let waiting = ticket(1);
        let Leave::End(left) = leave(&waiting, NOW, &policy()) else {
            panic!("a waiting ticket leaves");
        };
        assert_eq!(left, ended(&waiting, EndReason::Left));
        assert_eq!(leave(&left, NOW, &policy()), Leave::AlreadyLeft);

        let live = active(2, NOW + Duration::minutes(10), NOW);
        assert_eq!(
            leave(&live, NOW, &policy()),
            Leave::End(ended(&live, EndReason::Left))
        );
    }

    #[test]
    fn leaving_an_ended_ticket_writes_nothing_and_tells_why_it_ended() {
        let mut paid = active(1, NOW + Duration::minutes(10), NOW);
        paid.end(EndReason::Paid);
        assert_eq!(
            leave(&paid, NOW, &policy()),
            Leave::Ended(Some(EndReason::Paid))
        );
        let idle = active(2, NOW + Duration::minutes(10), NOW);
        assert_eq!(
            leave(&idle, NOW + Duration::minutes(3), &policy()),
            Leave::Ended(Some(EndReason::Idle))
        );
    }

    #[test]
    fn tickets_that_ended_while_waiting_no_longer_count_ahead() {
        let n = |value| TicketNo::new(value).expect("ticket");
        let serving = ServingCounter::new(10);
        // 12 and 15 left; 8 ended before the counter passed it and is no longer ahead of anyone.
        let ended = [n(8), n(12), n(15)];
        assert_eq!(position_in_line(serving, n(11), &ended), Some(1));
        assert_eq!(position_in_line(serving, n(13), &ended), Some(2));
        assert_eq!(position_in_line(serving, n(16), &ended), Some(4));
        assert_eq!(position_in_line(serving, n(12), &ended), None);
        assert_eq!(position_in_line(serving, n(9), &ended), None);
        assert_eq!(position_in_line(serving, n(16), &[]), Some(6));
    }

    #[test]
    fn a_revocation_ends_a_live_ticket_and_leaves_an_ended_one_alone() {
        let waiting = ticket(1);
        assert_eq!(
            revoke(&waiting, NOW, &policy()),
            Some(ended(&waiting, EndReason::Revoked))
        );
        let live = active(2, NOW + Duration::minutes(10), NOW);
        assert_eq!(
            revoke(&live, NOW, &policy()),
            Some(ended(&live, EndReason::Revoked))
        );
        assert_eq!(
            revoke(&live, NOW + Duration::minutes(3), &policy()),
            None,
            "idled out"
        );
        let mut paid = live.clone();
        paid.end(EndReason::Paid);
        assert_eq!(revoke(&paid, NOW, &policy()), None);
    }

    #[test]
    fn a_deferred_end_ends_only_the_payers_ticket_it_was_decided_on() {
        let paid_at = NOW + Duration::minutes(1);
        let live = active(2, NOW + Duration::minutes(10), NOW);
        let payer = live.user();
        let decide =
            |found: Option<&QueueTicket>| deferred_end(found, payer, TicketStatus::Active, paid_at);

        assert_eq!(decide(Some(&live)), DeferredEnd::End);
        assert_eq!(
            decide(Some(&ended(&live, EndReason::Paid))),
            DeferredEnd::Ended
        );
        assert_eq!(
            decide(Some(&ended(&live, EndReason::ActiveTimeOver))),
            DeferredEnd::Ended,
            "a deadline came first"
        );
        assert_eq!(decide(None), DeferredEnd::Moot, "gone");
        let someone_elses = QueueTicket::restore(
            live.ticket(),
            UserId::from_uuid(Uuid::from_u128(99)),
            TicketStatus::Active,
            NOW,
            live.active_until(),
            live.last_seen(),
        );
        assert_eq!(decide(Some(&someone_elses)), DeferredEnd::Moot);
        let mut payers_next =
            QueueTicket::waiting(live.ticket(), payer, paid_at + Duration::seconds(5));
        payers_next
            .admit(paid_at + Duration::seconds(6), &policy())
            .expect("admitted");
        assert_eq!(
            decide(Some(&payers_next)),
            DeferredEnd::Moot,
            "the payer's new ticket under the same number, issued after the payment, active"
        );
        let waiting_again = QueueTicket::waiting(live.ticket(), payer, NOW);
        assert_eq!(
            decide(Some(&waiting_again)),
            DeferredEnd::Moot,
            "a ticket never goes back to waiting"
        );
    }
}
