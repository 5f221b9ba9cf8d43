//! What the waiting line's contract modules (`queue`, `queue_races`, `pre_queue`) share: the
//! domain's admission rules at one instant, steps and joins through the port, the rooms whose
//! lines they drive, and reads of the stored tickets.

use concert_application::ports::{
    AdmissionReport, AdmissionRules, JoinWrite, PreQueueEntry, PreQueueJoin, PreQueueJoined,
    QueueRepository, QueueSnapshot, TicketEnd, Written,
};
use concert_domain::queue::{Join, admit_oldest, end_overdue, join};
use concert_domain::{
    Admission, EndReason, LineNo, NewRoom, Overdue, Pace, QueuePolicy, QueueTicket, Room, RoomId,
    RoomState, TicketNo, TicketStatus, UserId,
};
use time::{Duration, OffsetDateTime};

use crate::Store;
use crate::fixtures::{NOW, concert};

/// The instant a scheduled room opens.
pub const OPENING: OffsetDateTime = NOW.saturating_add(Duration::hours(1));

/// A line's policy with `max_active` places, ten minutes of active time and two of idling.
pub fn policy(max_active: u32) -> QueuePolicy {
    QueuePolicy {
        max_active,
        active_ttl: Duration::minutes(10),
        idle_timeout: Duration::minutes(2),
        waiting_idle: None,
    }
}

/// The place `n` of `line` (1 is the first).
pub fn place(line: LineNo, n: i64) -> TicketNo {
    TicketNo::new(line.start().get() + n).expect("a ticket number")
}

/// The domain's rules at one instant, as `AdmitNextInLine` passes them.
pub struct DomainRules {
    pub policy: QueuePolicy,
    pub now: OffsetDateTime,
    pub room: Option<Room>,
}

impl AdmissionRules for DomainRules {
    fn end_overdue(&self, active: &[QueueTicket]) -> Overdue {
        end_overdue(active, self.now, &self.policy)
    }

    fn waiting_candidates(&self, free: u32) -> u32 {
        self.policy.waiting_candidates(free)
    }

    fn admit_oldest(&self, waiting: &[QueueTicket], free: u32) -> Admission {
        admit_oldest(waiting, free, self.now, &self.policy)
    }

    fn is_paced(&self) -> bool {
        self.room.as_ref().is_some_and(Room::is_paced)
    }

    fn paced(&self, free: u32, last_minute: u32, pace: Pace) -> (u32, Pace) {
        match &self.room {
            Some(room) => room.paced(free, last_minute, pace, self.now),
            None => (free, pace),
        }
    }
}

/// One step of `line` under the domain's rules (of `room`, when it paces), as written.
pub async fn try_step(
    queue: &dyn QueueRepository,
    line: LineNo,
    policy: QueuePolicy,
    room: Option<Room>,
    now: OffsetDateTime,
) -> Written<AdmissionReport> {
    queue
        .admit(line, now, &DomainRules { policy, now, room })
        .await
        .expect("admit")
}

/// One step of `line` under the domain's rules; panics if it is stale.
pub async fn step<S: Store>(
    store: &S,
    line: LineNo,
    policy: QueuePolicy,
    now: OffsetDateTime,
) -> AdmissionReport {
    match try_step(&*store.queue(), line, policy, None, now).await {
        Written::Done(report) => report,
        Written::Stale => panic!("nothing changed under this step"),
    }
}

/// A join into `line` through the port: load, then draw over the version read; panics unless it
/// is drawn.
pub async fn join_in(
    queue: &dyn QueueRepository,
    who: UserId,
    line: LineNo,
    now: OffsetDateTime,
) -> QueueTicket {
    let live = queue.load_live(who, line).await.expect("load_live");
    let write = JoinWrite {
        line,
        user: who,
        version: live.version,
        now,
    };
    match queue.save_join(&write).await.expect("save_join") {
        Written::Done(ticket) => ticket,
        Written::Stale => panic!("the join over the version just read was stale"),
    }
}

/// A join into the `default` line; panics unless it is drawn.
pub async fn join_default<S: Store>(store: &S, who: UserId, now: OffsetDateTime) -> QueueTicket {
    join_in(&*store.queue(), who, LineNo::DEFAULT, now).await
}

/// A token request as `IssueQueueToken` makes it: load the user's place, let the domain decide
/// (keep the live ticket, or end an overdue one and draw), write over the version read, and
/// start over on `Stale`. The ticket, and whether this request drew it.
pub async fn request(
    queue: &dyn QueueRepository,
    who: UserId,
    now: OffsetDateTime,
    policy: &QueuePolicy,
) -> (QueueTicket, bool) {
    loop {
        let live = queue
            .load_live(who, LineNo::DEFAULT)
            .await
            .expect("load_live");
        match join(live.ticket.as_ref(), now, policy) {
            Join::Keep(ticket) => return (ticket, false),
            Join::Draw { ends } => {
                if let Some(overdue) = ends {
                    let end = TicketEnd {
                        ticket: overdue.ticket(),
                        read_as: TicketStatus::Active,
                        reason: overdue.end_reason().unwrap_or(EndReason::ActiveTimeOver),
                    };
                    // Another request may have ended it first: then it is stale, and fine.
                    queue.end(&end, now).await.expect("end");
                }
                let write = JoinWrite {
                    line: LineNo::DEFAULT,
                    user: who,
                    version: live.version,
                    now,
                };
                if let Written::Done(ticket) = queue.save_join(&write).await.expect("join") {
                    return (ticket, true);
                }
            }
        }
    }
}

/// A stored ticket; panics if there is none.
pub async fn stored<S: Store>(store: &S, ticket: TicketNo) -> QueueTicket {
    store
        .queue()
        .find(ticket)
        .await
        .expect("find")
        .expect("the ticket")
}

pub async fn status<S: Store>(store: &S, ticket: TicketNo) -> TicketStatus {
    stored(store, ticket).await.stored_status()
}

/// Every stored ticket of every line, in ticket order, through the port.
pub async fn all_tickets<S: Store>(store: &S) -> Vec<QueueTicket> {
    let mut tickets = Vec::new();
    for number in store.ticket_numbers().await {
        tickets.push(stored(store, number).await);
    }
    tickets
}

/// How many stored tickets (of every line) are in `status`.
pub async fn count_in<S: Store>(store: &S, status: TicketStatus) -> usize {
    all_tickets(store)
        .await
        .iter()
        .filter(|t| t.stored_status() == status)
        .count()
}

/// A snapshot as (serving, admitted, waiting, active).
pub fn counts(snapshot: QueueSnapshot) -> (i64, u64, u64, u64) {
    (
        snapshot.serving.get(),
        snapshot.admitted_total,
        snapshot.waiting,
        snapshot.active,
    )
}

/// A snapshot of `line` as (serving, admitted, waiting, active, issued, pre-queued).
pub async fn counts_of<S: Store>(store: &S, line: LineNo) -> (i64, u64, u64, u64, u64, u64) {
    let snapshot = store.queue().snapshot(line).await.expect("snapshot");
    (
        snapshot.serving.get(),
        snapshot.admitted_total,
        snapshot.waiting,
        snapshot.active,
        snapshot.issued,
        snapshot.pre_queued,
    )
}

/// `ticket` admitted with the deadlines the rules chose (not necessarily the domain's).
pub fn admitted(ticket: &QueueTicket, until: OffsetDateTime, seen: OffsetDateTime) -> QueueTicket {
    QueueTicket::restore(
        ticket.ticket(),
        ticket.user(),
        TicketStatus::Active,
        ticket.issued_at(),
        Some(until),
        Some(seen),
    )
}

/// A small deterministic generator (xorshift64*): the same seed gives the same histories every
/// run, so a failure replays.
pub struct Random(pub u64);

impl Random {
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        let len = u64::try_from(items.len()).ok()?;
        (len > 0).then(|| &items[usize::try_from(self.below(len)).unwrap_or(0)])
    }
}

// ---- Rooms and pre-queues. ----

/// The `default` room, as `bootstrap` seeds it.
pub async fn default_room<S: Store>(store: &S) {
    store
        .rooms()
        .create_if_absent(&Room::new(RoomId::default_room(), 500, RoomState::Open).expect("a room"))
        .await
        .expect("the default room");
}

/// A room `id` over a new concert, decided by the domain and created through the port (after
/// the `default` room), gathering a pre-queue until `opens_at` when it has one; panics unless it
/// is written.
pub async fn room<S: Store>(store: &S, id: &str, opens_at: Option<OffsetDateTime>) -> Room {
    default_room(store).await;
    let new = NewRoom {
        id: RoomId::parse(id).expect("an id"),
        concerts: vec![concert(store, 10).await],
        max_active: 50,
        admit_per_minute: None,
        opens_at,
        shuffle_at_open: false,
        waiting_idle_seconds: None,
    };
    let rooms = store.rooms();
    let exists = rooms.find(&new.id).await.expect("find").is_some();
    let guards = rooms.guards_of(&new.concerts).await.expect("guards_of");
    let decided = Room::create(&new, exists, &guards, NOW).expect("the domain accepts the room");
    match rooms.create(&decided).await.expect("create") {
        Written::Done(created) => created,
        Written::Stale => panic!("nothing was taken since the decision"),
    }
}

pub async fn pre_join(
    queue: &dyn QueueRepository,
    who: UserId,
    line: LineNo,
    now: OffsetDateTime,
) -> PreQueueJoined {
    queue
        .save_pre_queue_join(&PreQueueJoin {
            user: who,
            line,
            now,
        })
        .await
        .expect("save_pre_queue_join")
}

/// A pre-queue join that must add an entry.
pub async fn entry_for(
    queue: &dyn QueueRepository,
    who: UserId,
    line: LineNo,
    now: OffsetDateTime,
) -> PreQueueEntry {
    match pre_join(queue, who, line, now).await {
        PreQueueJoined::Done(entry) => entry,
        other => panic!("expected a new entry, got {other:?}"),
    }
}
