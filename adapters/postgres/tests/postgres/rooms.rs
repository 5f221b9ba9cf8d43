//! `PgRoomRepository`'s contract: a room is created only when absent, read back as written, and
//! changed only over the version read; a new room gets a line of its own (numbered from the
//! line's start, independent of every other line) and the concerts it names, or nothing at all
//! (`Stale`) when its id or a concert was taken meanwhile. And the lines of `PgQueueRepository`
//! per room: steps, counts and ends of one line never touch another, and a room's pre-queue gets
//! the line's first places at its opening, once, in the order the opening rules return, while
//! every later join is sent to the line.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use concert_application::ports::{
    AdmissionReport, AdmissionRules, JoinWrite, OpeningRules, PreQueueEnd, PreQueueEntry,
    PreQueueJoin, PreQueueJoined, PreQueueOutcome, QueueRepository, QueueSnapshot,
    RetentionRepository, RoomRepository, Version, Written,
};
use concert_domain::queue::{admit_oldest, end_overdue};
use concert_domain::{
    Admission, ConcertId, EndReason, LineNo, NewRoom, Overdue, Pace, QueuePolicy, QueueTicket,
    Room, RoomId, RoomState, TicketNo, TicketStatus, UserId,
};
use concert_postgres::{PgQueueRepository, PgRoomRepository};
use diesel::QueryableByName;
use diesel::sql_types::Text;
use time::{Duration, OffsetDateTime};
use tokio::sync::watch;

use crate::queue::policy;
use crate::support::{Ctx, NOW, concert, race, ticket_status, user};

fn room(max_active: u32, state: RoomState) -> Room {
    Room::new(RoomId::default_room(), max_active, state).expect("a room")
}

// ---- Fixtures. ----

/// The instant a scheduled room opens.
const OPENING: OffsetDateTime = NOW.saturating_add(Duration::hours(1));

/// The `default` room, as `bootstrap` seeds it.
async fn default_room(rooms: &PgRoomRepository) {
    rooms
        .create_if_absent(&room(500, RoomState::Open))
        .await
        .expect("the default room");
}

fn new_room(id: &str, concerts: &[ConcertId], opens_at: Option<OffsetDateTime>) -> NewRoom {
    NewRoom {
        id: RoomId::parse(id).expect("an id"),
        concerts: concerts.to_vec(),
        max_active: 50,
        admit_per_minute: None,
        opens_at,
        shuffle_at_open: false,
        waiting_idle_seconds: None,
    }
}

/// The domain's decision on a new room over what the store holds now (as `CreateRoom` reads
/// it); panics if the domain refuses.
async fn decide(rooms: &PgRoomRepository, new: &NewRoom) -> Room {
    let exists = rooms.find(&new.id).await.expect("find").is_some();
    let guards = rooms.guards_of(&new.concerts).await.expect("guards_of");
    Room::create(new, exists, &guards, NOW).expect("the domain accepts the room")
}

/// A room decided and created; panics unless it is written.
async fn create_room(
    rooms: &PgRoomRepository,
    id: &str,
    concerts: &[ConcertId],
    opens_at: Option<OffsetDateTime>,
) -> Room {
    let decided = decide(rooms, &new_room(id, concerts, opens_at)).await;
    match rooms.create(&decided).await.expect("create") {
        Written::Done(created) => created,
        Written::Stale => panic!("nothing was taken since the decision"),
    }
}

/// A join into `line` through the port: load, then draw over the version read.
async fn join(
    queue: &PgQueueRepository,
    who: UserId,
    line: LineNo,
    now: OffsetDateTime,
) -> QueueTicket {
    let live = queue.load_live(who, line).await.expect("load_live");
    let write = JoinWrite {
        user: who,
        line,
        version: live.version,
        now,
    };
    match queue.save_join(&write).await.expect("save_join") {
        Written::Done(ticket) => ticket,
        Written::Stale => panic!("the join over the version just read was stale"),
    }
}

async fn pre_join(
    queue: &PgQueueRepository,
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
async fn entry_for(
    queue: &PgQueueRepository,
    who: UserId,
    line: LineNo,
    now: OffsetDateTime,
) -> PreQueueEntry {
    match pre_join(queue, who, line, now).await {
        PreQueueJoined::Done(entry) => entry,
        other => panic!("expected a new entry, got {other:?}"),
    }
}

/// The place `n` of `line` (1 is the first).
fn place(line: LineNo, n: i64) -> TicketNo {
    TicketNo::new(line.start().get() + n).expect("a ticket number")
}

/// The domain's admission rules at one instant (what `AdmitNextInLine` passes, unpaced).
struct RulesAt {
    policy: QueuePolicy,
    now: OffsetDateTime,
}

impl AdmissionRules for RulesAt {
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
        false
    }

    fn paced(&self, free: u32, _last_minute: u32, pace: Pace) -> (u32, Pace) {
        (free, pace)
    }
}

/// One admission step of `line` with at most `max_active` active; panics if it is stale.
async fn step(
    queue: &PgQueueRepository,
    line: LineNo,
    max_active: u32,
    now: OffsetDateTime,
) -> AdmissionReport {
    let rules = RulesAt {
        policy: policy(max_active),
        now,
    };
    match queue.admit(line, now, &rules).await.expect("admit") {
        Written::Done(report) => report,
        Written::Stale => panic!("nothing changed under this step"),
    }
}

/// A snapshot as (serving, admitted, waiting, active, issued, pre-queued).
fn counts(snapshot: QueueSnapshot) -> (i64, u64, u64, u64, u64, u64) {
    (
        snapshot.serving.get(),
        snapshot.admitted_total,
        snapshot.waiting,
        snapshot.active,
        snapshot.issued,
        snapshot.pre_queued,
    )
}

async fn counts_of(queue: &PgQueueRepository, line: LineNo) -> (i64, u64, u64, u64, u64, u64) {
    counts(queue.snapshot(line).await.expect("snapshot"))
}

async fn ended_since(queue: &PgQueueRepository, line: LineNo) -> Vec<TicketNo> {
    let mut ended: Vec<TicketNo> = queue
        .ended_since(line, NOW)
        .await
        .expect("ended_since")
        .into_iter()
        .map(|ended| ended.ticket)
        .collect();
    ended.sort_unstable();
    ended
}

/// Every row a room's creation writes (rooms, their concerts, lines' counters) and the names of
/// the lines' sequences, as text: two equal dumps mean that nothing was written in between.
async fn room_rows(ctx: &Ctx) -> String {
    use diesel_async::RunQueryDsl;

    #[derive(QueryableByName)]
    struct Dump {
        #[diesel(sql_type = Text)]
        dump: String,
    }
    let mut conn = ctx.pool.get().await.expect("a pooled connection");
    diesel::sql_query(
        "SELECT (SELECT coalesce(string_agg(r::text, ';' ORDER BY r.room_id), '') FROM rooms r) \
             || '|' || (SELECT coalesce(string_agg(c::text, ';' ORDER BY c.concert_id), '') \
                        FROM room_concerts c) \
             || '|' || (SELECT coalesce(string_agg(s::text, ';' ORDER BY s.line), '') \
                        FROM queue_state s) \
             || '|' || (SELECT coalesce(string_agg(sequencename, ';' ORDER BY sequencename), '') \
                        FROM pg_sequences WHERE sequencename LIKE 'queue_line_%') AS dump",
    )
    .get_result::<Dump>(&mut conn)
    .await
    .expect("dump")
    .dump
}

// ---- Lines. ----

#[tokio::test(flavor = "multi_thread")]
async fn each_line_admits_ends_and_counts_only_its_own_tickets_and_a_user_may_wait_in_two_rooms() {
    let ctx = Ctx::new().await;
    let rooms = PgRoomRepository::new(ctx.pool.clone());
    let queue = ctx.queue();
    default_room(&rooms).await;
    let gala = create_room(&rooms, "gala", &[concert(&ctx, 10).await], None).await;
    let line = gala.line();
    let default = LineNo::DEFAULT;
    let (both, elsewhere, second, third) = (user(), user(), user(), user());

    let d1 = join(&queue, both, default, NOW).await.ticket();
    let d2 = join(&queue, elsewhere, default, NOW).await.ticket();
    let g1 = join(&queue, both, line, NOW).await.ticket();
    let g2 = join(&queue, second, line, NOW).await.ticket();
    let g3 = join(&queue, third, line, NOW).await.ticket();
    assert_eq!((d1.get(), d2.get()), (1, 2));
    assert_eq!(
        (g1, g2, g3),
        (place(line, 1), place(line, 2), place(line, 3))
    );

    // One live place per user per room: `both` waits in the two rooms at once.
    let in_default = queue.load_live(both, default).await.expect("load");
    let in_gala = queue.load_live(both, line).await.expect("load");
    assert_eq!(
        (in_default.ticket.map(|t| t.ticket()), in_default.version),
        (Some(d1), Version::new(1))
    );
    assert_eq!(
        (in_gala.ticket.map(|t| t.ticket()), in_gala.version),
        (Some(g1), Version::new(1))
    );
    // A second join into the room over the place read before the first draws nothing.
    let again = JoinWrite {
        user: both,
        line,
        version: Version::ABSENT,
        now: NOW,
    };
    assert_eq!(
        queue.save_join(&again).await.expect("save_join"),
        Written::Stale
    );
    assert_eq!(
        queue.load_live(elsewhere, line).await.expect("load").ticket,
        None,
        "a place in one room is none in another"
    );

    // A step of the room admits its own oldest; the default line's tickets stay waiting.
    let report = step(&queue, line, 1, NOW).await;
    assert_eq!(
        (report.admitted, report.expired, report.serving.get()),
        (1, 0, g1.get())
    );
    assert_eq!(ticket_status(&ctx, g1).await, "ACTIVE");
    assert_eq!(ticket_status(&ctx, d1).await, "WAITING");
    assert_eq!(counts_of(&queue, line).await, (g1.get(), 1, 2, 1, 3, 0));
    assert_eq!(counts_of(&queue, default).await, (0, 0, 2, 0, 2, 0));

    // The default line's step admits its own first, though its user is active in the room.
    let report = step(&queue, default, 1, NOW).await;
    assert_eq!((report.admitted, report.serving.get()), (1, 1));
    assert_eq!(ticket_status(&ctx, d1).await, "ACTIVE");
    assert_eq!(counts_of(&queue, line).await, (g1.get(), 1, 2, 1, 3, 0));

    // Both active tickets are overdue later; each line's step ends only its own.
    let later = NOW + Duration::minutes(11);
    let report = step(&queue, default, 1, later).await;
    assert_eq!(
        (report.expired, report.admitted, report.serving.get()),
        (1, 1, 2)
    );
    assert_eq!(
        ticket_status(&ctx, g1).await,
        "ACTIVE",
        "another line's ticket"
    );
    assert_eq!(ended_since(&queue, default).await, vec![d1]);
    assert_eq!(ended_since(&queue, line).await, Vec::<TicketNo>::new());
    assert_eq!(counts_of(&queue, default).await, (2, 2, 0, 1, 2, 0));
    assert_eq!(counts_of(&queue, line).await, (g1.get(), 1, 2, 1, 3, 0));

    let report = step(&queue, line, 1, later).await;
    assert_eq!(
        (report.expired, report.admitted, report.serving.get()),
        (1, 1, g2.get())
    );
    assert_eq!(ended_since(&queue, line).await, vec![g1]);
    assert_eq!(ended_since(&queue, default).await, vec![d1]);
    assert_eq!(ticket_status(&ctx, g2).await, "ACTIVE");
    assert_eq!(ticket_status(&ctx, d2).await, "ACTIVE");
    assert_eq!(counts_of(&queue, line).await, (g2.get(), 2, 1, 1, 3, 0));
    assert_eq!(counts_of(&queue, default).await, (2, 2, 0, 1, 2, 0));
    ctx.finish().await;
}

// ---- Pre-queues. ----

/// Opening rules that give the places in the reverse of arrival order, and keep what they were
/// shown.
#[derive(Default)]
struct Reversed {
    shown: Mutex<Vec<TicketNo>>,
}

impl Reversed {
    fn shown(&self) -> Vec<TicketNo> {
        self.shown.lock().expect("shown").clone()
    }
}

impl OpeningRules for Reversed {
    fn order(&self, mut arrivals: Vec<PreQueueEntry>) -> Vec<PreQueueEntry> {
        *self.shown.lock().expect("shown") = arrivals.iter().map(|e| e.entry).collect();
        arrivals.reverse();
        arrivals
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pre_queue_gets_the_first_places_in_the_order_the_opening_rules_return_once_then_joins_go_to_the_line()
 {
    let ctx = Ctx::new().await;
    let rooms = PgRoomRepository::new(ctx.pool.clone());
    let queue = ctx.queue();
    default_room(&rooms).await;
    let gala = create_room(&rooms, "gala", &[concert(&ctx, 10).await], Some(OPENING)).await;
    let line = gala.line();
    let (a, b, c, d, e) = (user(), user(), user(), user(), user());

    let mut entries = Vec::new();
    for (i, who) in [a, b, c, d].into_iter().enumerate() {
        let at = NOW + Duration::seconds(i64::try_from(i).expect("small"));
        let entry = entry_for(&queue, who, line, at).await;
        assert_eq!((entry.user, entry.issued_at), (who, at));
        // The number names the line and is never a place in it.
        assert_eq!(entry.entry.line(), line);
        assert!(entry.entry.is_pre_queue_entry());
        entries.push(entry);
    }
    assert!(
        entries.windows(2).all(|w| w[0].entry < w[1].entry),
        "in arrival order"
    );
    let [ea, eb, ec, ed] = [entries[0], entries[1], entries[2], entries[3]];

    // The same user again: no second entry; the one they hold loads back.
    assert_eq!(pre_join(&queue, a, line, NOW).await, PreQueueJoined::Stale);
    assert_eq!(queue.load_pre_queue(a, line).await.expect("load"), Some(ea));
    assert_eq!(
        queue
            .load_pre_queue(a, LineNo::DEFAULT)
            .await
            .expect("load"),
        None
    );
    assert_eq!(
        queue.load_live(a, line).await.expect("load").ticket,
        None,
        "no place yet"
    );
    assert_eq!(
        counts_of(&queue, line).await,
        (line.start().get(), 0, 0, 0, 0, 4)
    );

    // b leaves before the opening; an entry is ended only by its own user.
    let left_at = NOW + Duration::minutes(1);
    assert_eq!(
        queue
            .end_pre_queue(eb.entry, b, EndReason::Left, left_at)
            .await
            .expect("end"),
        PreQueueEnd::Ended
    );
    assert_eq!(
        queue
            .end_pre_queue(eb.entry, b, EndReason::Left, left_at)
            .await
            .expect("end"),
        PreQueueEnd::AlreadyEnded(Some(EndReason::Left))
    );
    assert_eq!(
        queue
            .end_pre_queue(ec.entry, a, EndReason::Left, left_at)
            .await
            .expect("end"),
        PreQueueEnd::Missing
    );
    assert_eq!(queue.load_pre_queue(c, line).await.expect("load"), Some(ec));
    assert_eq!(queue.load_pre_queue(b, line).await.expect("load"), None);
    assert_eq!(counts_of(&queue, line).await.5, 3);

    // The opening: the live entries, in arrival order, get places in the order returned.
    let rules = Reversed::default();
    assert_eq!(
        queue.open_line(line, OPENING, &rules).await.expect("open"),
        Written::Done(3)
    );
    assert_eq!(rules.shown(), vec![ea.entry, ec.entry, ed.entry]);
    for (n, entry) in [(1, ed), (2, ec), (3, ea)] {
        assert_eq!(
            queue.find(place(line, n)).await.expect("find"),
            Some(QueueTicket::restore(
                place(line, n),
                entry.user,
                TicketStatus::Waiting,
                entry.issued_at,
                None,
                Some(OPENING),
            )),
            "place {n}"
        );
    }
    let live = queue.load_live(d, line).await.expect("load");
    assert_eq!(
        (live.ticket.map(|t| t.ticket()), live.version),
        (Some(place(line, 1)), Version::new(1))
    );
    let mut outcomes = queue.pre_queue_outcomes(line).await.expect("outcomes");
    outcomes.sort_by_key(|outcome| outcome.entry);
    assert_eq!(
        outcomes,
        vec![
            PreQueueOutcome {
                entry: ea.entry,
                place: Some(place(line, 3)),
                ended: None
            },
            PreQueueOutcome {
                entry: eb.entry,
                place: None,
                ended: Some(EndReason::Left)
            },
            PreQueueOutcome {
                entry: ec.entry,
                place: Some(place(line, 2)),
                ended: None
            },
            PreQueueOutcome {
                entry: ed.entry,
                place: Some(place(line, 1)),
                ended: None
            },
        ]
    );
    assert_eq!(
        queue
            .end_pre_queue(ea.entry, a, EndReason::Left, OPENING)
            .await
            .expect("end"),
        PreQueueEnd::Placed(place(line, 3))
    );
    assert_eq!(
        queue
            .end_pre_queue(eb.entry, b, EndReason::Left, OPENING)
            .await
            .expect("end"),
        PreQueueEnd::AlreadyEnded(Some(EndReason::Left))
    );
    assert_eq!(
        queue
            .end_pre_queue(ed.entry, c, EndReason::Left, OPENING)
            .await
            .expect("end"),
        PreQueueEnd::Missing
    );
    assert_eq!(queue.load_pre_queue(a, line).await.expect("load"), None);
    assert_eq!(
        counts_of(&queue, line).await,
        (line.start().get(), 0, 3, 0, 3, 0)
    );
    let stored = rooms
        .find(gala.id())
        .await
        .expect("find")
        .expect("the room");
    assert_eq!(stored.value.opening().map(|o| o.done), Some(true));
    assert_eq!(stored.version, Version::new(2));

    // Once: a second opening is stale, asks the rules nothing and writes nothing.
    let before = room_rows(&ctx).await;
    let tickets = ctx
        .count("SELECT count(*) AS count FROM queue_tickets")
        .await;
    let again = Reversed::default();
    assert_eq!(
        queue.open_line(line, OPENING, &again).await.expect("open"),
        Written::Stale
    );
    assert_eq!(again.shown(), Vec::<TicketNo>::new());
    assert_eq!(room_rows(&ctx).await, before);
    assert_eq!(
        ctx.count("SELECT count(*) AS count FROM queue_tickets")
            .await,
        tickets
    );

    // Later joins go to the line, after every placed one, and the placed come first.
    assert_eq!(
        pre_join(&queue, e, line, OPENING).await,
        PreQueueJoined::Opened
    );
    assert_eq!(
        pre_join(&queue, b, line, OPENING).await,
        PreQueueJoined::Opened
    );
    assert_eq!(
        pre_join(&queue, a, line, OPENING).await,
        PreQueueJoined::Opened
    );
    assert_eq!(
        ctx.count("SELECT count(*) AS count FROM pre_queue").await,
        4,
        "no entry after the opening"
    );
    assert_eq!(
        join(&queue, e, line, OPENING).await.ticket(),
        place(line, 4)
    );
    let report = step(&queue, line, 1, OPENING).await;
    assert_eq!(
        (report.admitted, report.serving.get()),
        (1, place(line, 1).get())
    );
    assert_eq!(ticket_status(&ctx, place(line, 1)).await, "ACTIVE");
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_opening_with_an_empty_pre_queue_places_nobody_and_the_line_numbers_from_its_start() {
    let ctx = Ctx::new().await;
    let rooms = PgRoomRepository::new(ctx.pool.clone());
    let queue = ctx.queue();
    default_room(&rooms).await;
    let gala = create_room(&rooms, "gala", &[concert(&ctx, 10).await], Some(OPENING)).await;
    let line = gala.line();

    assert_eq!(
        queue
            .open_line(line, OPENING, &Reversed::default())
            .await
            .expect("open"),
        Written::Done(0)
    );
    assert_eq!(
        pre_join(&queue, user(), line, OPENING).await,
        PreQueueJoined::Opened
    );
    assert_eq!(
        join(&queue, user(), line, OPENING).await.ticket(),
        place(line, 1)
    );
    assert_eq!(
        queue
            .open_line(line, OPENING, &Reversed::default())
            .await
            .expect("open"),
        Written::Stale
    );
    assert_eq!(
        join(&queue, user(), line, OPENING).await.ticket(),
        place(line, 2)
    );
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn of_ten_openings_of_one_room_at_once_on_two_instances_exactly_one_places_the_pre_queue() {
    const OPENINGS: usize = 10;
    const WAITING: i64 = 20;
    let ctx = Ctx::with_two_pools(5).await;
    ctx.warm_up(5).await;
    let rooms = PgRoomRepository::new(ctx.pool.clone());
    let queue = ctx.queue();
    default_room(&rooms).await;
    let gala = create_room(&rooms, "gala", &[concert(&ctx, 10).await], Some(OPENING)).await;
    let line = gala.line();
    for _ in 0..WAITING {
        entry_for(&queue, user(), line, NOW).await;
    }

    let results = race(OPENINGS, |i| {
        let queue = PgQueueRepository::new(ctx.pool_of(i).clone());
        async move {
            queue
                .open_line(line, OPENING, &Reversed::default())
                .await
                .expect("open")
        }
    })
    .await;

    assert_eq!(
        results
            .iter()
            .filter(|r| **r == Written::Done(u64::try_from(WAITING).expect("small")))
            .count(),
        1,
        "{results:?}"
    );
    assert_eq!(
        results.iter().filter(|r| **r == Written::Stale).count(),
        OPENINGS - 1
    );
    // One set of places: the line's first, each once.
    let start = line.start().get();
    assert_eq!(
        ctx.count(&format!(
            "SELECT count(DISTINCT ticket) AS count FROM queue_tickets \
             WHERE ticket > {start} AND ticket <= {start} + {WAITING}"
        ))
        .await,
        WAITING
    );
    assert_eq!(
        ctx.count("SELECT count(*) AS count FROM queue_tickets")
            .await,
        WAITING
    );
    assert_eq!(counts_of(&queue, line).await, (start, 0, 20, 0, 20, 0));
    assert_eq!(
        join(&queue, user(), line, OPENING).await.ticket(),
        place(line, WAITING + 1)
    );
    ctx.finish().await;
}

/// Opening rules that, while the opening holds the line (between its read of the entries and
/// its write of the places), start ending one entry on another connection, as its user leaving
/// on another instance would; the leave is kept to be awaited after the opening.
struct LeavingMeanwhile {
    queue: PgQueueRepository,
    entry: PreQueueEntry,
    leave: Mutex<Option<tokio::task::JoinHandle<PreQueueEnd>>>,
}

impl OpeningRules for LeavingMeanwhile {
    fn order(&self, arrivals: Vec<PreQueueEntry>) -> Vec<PreQueueEntry> {
        let (queue, entry) = (self.queue.clone(), self.entry);
        let leave = tokio::spawn(async move {
            queue
                .end_pre_queue(entry.entry, entry.user, EndReason::Left, OPENING)
                .await
                .expect("end")
        });
        *self.leave.lock().expect("lock") = Some(leave);
        // Long enough for the leave's statement to reach the entry's row lock.
        std::thread::sleep(StdDuration::from_millis(100));
        arrivals
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_entry_ending_while_the_opening_orders_the_pre_queue_waits_and_finds_its_place() {
    let ctx = Ctx::new().await;
    let rooms = PgRoomRepository::new(ctx.pool.clone());
    let queue = ctx.queue();
    default_room(&rooms).await;
    let gala = create_room(&rooms, "gala", &[concert(&ctx, 10).await], Some(OPENING)).await;
    let line = gala.line();
    let (stays, leaves) = (user(), user());
    let kept = entry_for(&queue, stays, line, NOW).await;
    let gone = entry_for(&queue, leaves, line, NOW).await;

    let rules = LeavingMeanwhile {
        queue: ctx.queue(),
        entry: gone,
        leave: Mutex::new(None),
    };
    // The opening is not held up nor undone by the leave: both entries are placed.
    assert_eq!(
        queue.open_line(line, OPENING, &rules).await.expect("open"),
        Written::Done(2)
    );
    let leave = rules.leave.lock().expect("lock").take().expect("a leave");
    let first = leave.await.expect("the leave");
    // The leave waited for the opening: it ended nothing, and on asking again (as the use
    // case does on Stale) learns the place to end instead.
    assert!(
        matches!(first, PreQueueEnd::Stale | PreQueueEnd::Placed(_)),
        "{first:?}"
    );
    assert_eq!(
        queue
            .end_pre_queue(gone.entry, leaves, EndReason::Left, OPENING)
            .await
            .expect("end"),
        PreQueueEnd::Placed(place(line, 2)),
        "places in entry order (the rules kept arrival order)"
    );
    assert_eq!(
        queue
            .end_pre_queue(kept.entry, stays, EndReason::Left, OPENING)
            .await
            .expect("end"),
        PreQueueEnd::Placed(place(line, 1))
    );
    assert_eq!(
        ctx.count("SELECT count(*) AS count FROM queue_tickets WHERE status = 'WAITING'")
            .await,
        2
    );
    ctx.finish().await;
}

/// How far the opening of the race below got.
const STARTED: u8 = 1;
/// The opening holds the line: it marked the room opened and read the entries.
const ORDERING: u8 = 2;

/// Opening rules that order the entries by user id (not their arrival order) and keep the order
/// returned; they announce that the opening holds the line, then hold it a moment, so that joins
/// arrive while it does.
struct ByUser {
    hold: StdDuration,
    stage: Arc<watch::Sender<u8>>,
    returned: Mutex<Vec<TicketNo>>,
}

impl OpeningRules for ByUser {
    fn order(&self, mut arrivals: Vec<PreQueueEntry>) -> Vec<PreQueueEntry> {
        self.stage.send_replace(ORDERING);
        tokio::task::block_in_place(|| std::thread::sleep(self.hold));
        arrivals.sort_by_key(|entry| entry.user.get());
        *self.returned.lock().expect("returned") = arrivals.iter().map(|e| e.entry).collect();
        arrivals
    }
}

/// What one task of the race below ended with.
#[derive(Debug)]
enum Outcome {
    /// A pre-queue entry.
    Entry(PreQueueEntry),
    /// Turned away by the opening, then a place drawn in the line.
    Drawn(QueueTicket),
    /// The opening, with how many it placed.
    Opening(u64),
}

#[tokio::test(flavor = "multi_thread")]
async fn pre_queue_joins_racing_the_opening_on_two_instances_each_get_a_place_or_a_number_after_every_placed_one()
 {
    const USERS: usize = 200;
    let ctx = Ctx::with_two_pools(20).await;
    ctx.warm_up(20).await;
    let rooms = PgRoomRepository::new(ctx.pool.clone());
    default_room(&rooms).await;
    let gala = create_room(&rooms, "gala", &[concert(&ctx, 10).await], Some(OPENING)).await;
    let line = gala.line();
    // The opening runs on a pool of its own (the instance whose admission loop reached the
    // opening time), so it never waits behind the joins for a connection.
    let opener_pool = ctx.db.pool(1);
    drop(
        opener_pool
            .get()
            .await
            .expect("a connection ready for the opening"),
    );
    let opener = PgQueueRepository::new(opener_pool.clone());
    let (stage, stage_rx) = watch::channel(0u8);
    let stage = Arc::new(stage);
    let rules = Arc::new(ByUser {
        hold: StdDuration::from_millis(20),
        stage: Arc::clone(&stage),
        returned: Mutex::new(Vec::new()),
    });
    let users: Vec<UserId> = (0..USERS).map(|_| user()).collect();
    let finished = Arc::new(AtomicUsize::new(0));

    // Half the users join before the opening starts; a quarter are released as it starts (they
    // race its marking of the room); the last quarter while it holds the line (they must be
    // turned away: the opening has read the entries it places).
    let outcomes = race(USERS + 1, |i| {
        let finished = Arc::clone(&finished);
        let stage = Arc::clone(&stage);
        let mut stage_rx = stage_rx.clone();
        let rules = Arc::clone(&rules);
        let opener = opener.clone();
        let queue = PgQueueRepository::new(ctx.pool_of(i).clone());
        let who = users.get(i).copied();
        async move {
            let Some(who) = who else {
                while finished.load(Ordering::SeqCst) < USERS / 2 {
                    tokio::time::sleep(StdDuration::from_millis(1)).await;
                }
                stage.send_replace(STARTED);
                return match opener
                    .open_line(line, OPENING, &*rules)
                    .await
                    .expect("open")
                {
                    Written::Done(placed) => Outcome::Opening(placed),
                    Written::Stale => panic!("the only opening was stale"),
                };
            };
            let released_at = match i {
                i if i < USERS / 2 => 0,
                i if i < USERS * 3 / 4 => STARTED,
                _ => ORDERING,
            };
            stage_rx
                .wait_for(|stage| *stage >= released_at)
                .await
                .expect("the opener keeps the stage");
            let outcome = match pre_join(&queue, who, line, NOW).await {
                PreQueueJoined::Done(entry) => Outcome::Entry(entry),
                PreQueueJoined::Opened => Outcome::Drawn(join(&queue, who, line, OPENING).await),
                PreQueueJoined::Stale => panic!("each user joins once"),
            };
            finished.fetch_add(1, Ordering::SeqCst);
            outcome
        }
    })
    .await;

    let mut placed = None;
    let mut entries = Vec::new();
    let mut drawn = Vec::new();
    for outcome in outcomes {
        match outcome {
            Outcome::Opening(n) => placed = Some(n),
            Outcome::Entry(entry) => entries.push(entry),
            Outcome::Drawn(ticket) => drawn.push(ticket),
        }
    }
    let placed = placed.expect("the opening ran");
    let entry_count = i64::try_from(entries.len()).expect("small");
    let (all, all_u64) = (
        i64::try_from(USERS).expect("small"),
        u64::try_from(USERS).expect("small"),
    );
    eprintln!(
        "{} pre-queue entries, {} turned away to the line",
        entries.len(),
        drawn.len()
    );
    assert_eq!(entries.len() + drawn.len(), USERS);
    assert!(entries.len() >= USERS / 2, "the first half joined before");
    // Every entry a join was given is placed: none was added behind the opening's back.
    assert_eq!(placed, u64::try_from(entries.len()).expect("small"));
    assert_eq!(
        ctx.count(
            "SELECT count(*) AS count FROM pre_queue WHERE ticket IS NULL AND ended_at IS NULL"
        )
        .await,
        0,
        "no entry left without a place"
    );
    assert!(
        drawn.len() >= USERS / 4,
        "the last quarter came while it held the line"
    );
    assert_eq!(
        ctx.count("SELECT count(*) AS count FROM pre_queue").await,
        entry_count
    );

    // The places are the line's first, in exactly the order the rules returned.
    let returned = rules.returned.lock().expect("returned").clone();
    let mut given: Vec<TicketNo> = entries.iter().map(|e| e.entry).collect();
    given.sort_unstable();
    let mut shown = returned.clone();
    shown.sort_unstable();
    assert_eq!(shown, given, "the rules were shown every entry given");
    let places: HashMap<TicketNo, Option<TicketNo>> = queue_outcomes(&ctx, line).await;
    assert_eq!(places.len(), entries.len());
    for (n, entry) in returned.iter().enumerate() {
        let n = i64::try_from(n).expect("small") + 1;
        assert_eq!(
            places.get(entry),
            Some(&Some(place(line, n))),
            "entry {entry}"
        );
    }
    let queue = ctx.queue();
    for entry in &entries {
        let live = queue.load_live(entry.user, line).await.expect("load");
        assert_eq!(
            live.ticket.map(|t| (t.ticket(), t.user())),
            Some((places[&entry.entry].expect("placed"), entry.user))
        );
    }

    // The users turned away drew the numbers right after the placed ones, without a gap.
    let mut numbers: Vec<i64> = drawn.iter().map(|t| t.ticket().get()).collect();
    numbers.sort_unstable();
    let start = line.start().get();
    assert_eq!(
        numbers,
        ((start + entry_count + 1)..=(start + all)).collect::<Vec<_>>()
    );
    let holders: HashSet<UserId> = entries
        .iter()
        .map(|e| e.user)
        .chain(drawn.iter().map(QueueTicket::user))
        .collect();
    assert_eq!(holders.len(), USERS, "one place per user");
    assert_eq!(
        ctx.count(&format!(
            "SELECT count(*) AS count FROM queue_tickets \
             WHERE status = 'WAITING' AND ticket > {start} AND ticket <= {start} + {USERS}"
        ))
        .await,
        all
    );
    assert_eq!(
        ctx.count("SELECT count(*) AS count FROM queue_tickets")
            .await,
        all
    );
    assert_eq!(
        counts_of(&queue, line).await,
        (start, 0, all_u64, 0, all_u64, 0)
    );
    opener_pool.close();
    ctx.finish().await;
}

/// Each placed or ended entry of `line` and its place.
async fn queue_outcomes(ctx: &Ctx, line: LineNo) -> HashMap<TicketNo, Option<TicketNo>> {
    ctx.queue()
        .pre_queue_outcomes(line)
        .await
        .expect("outcomes")
        .into_iter()
        .map(|outcome| {
            assert_eq!(outcome.ended, None, "nobody left");
            (outcome.entry, outcome.place)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn pre_queue_entries_go_only_once_their_room_opened_and_their_story_is_over() {
    let ctx = Ctx::new().await;
    let rooms = PgRoomRepository::new(ctx.pool.clone());
    let retention = concert_postgres::PgRetentionRepository::new(ctx.pool.clone());
    let queue = ctx.queue();
    default_room(&rooms).await;
    let gala = create_room(&rooms, "gala", &[concert(&ctx, 10).await], Some(OPENING)).await;
    let line = gala.line();
    let (left, first, second) = (user(), user(), user());
    let gone = entry_for(&queue, left, line, NOW).await;
    let placed_first = entry_for(&queue, first, line, NOW).await;
    entry_for(&queue, second, line, NOW).await;
    assert_eq!(
        queue
            .end_pre_queue(gone.entry, left, EndReason::Left, NOW)
            .await
            .expect("end"),
        PreQueueEnd::Ended
    );
    let purge = || retention.purge_pre_queue_entries(NOW + Duration::days(30), 100);

    // Before the opening nothing goes, not even the entry that left.
    assert_eq!(purge().await.expect("purge"), 0);
    assert_eq!(
        queue
            .open_line(line, OPENING, &Reversed::default())
            .await
            .expect("open"),
        Written::Done(2)
    );
    // Opened: the ended entry goes; the placed ones stay while their tickets are kept.
    assert_eq!(
        retention
            .purge_pre_queue_entries(NOW - Duration::seconds(1), 100)
            .await
            .expect("purge"),
        0,
        "an end after the cutoff stays"
    );
    assert_eq!(purge().await.expect("purge"), 1);
    assert_eq!(
        ctx.count("SELECT count(*) AS count FROM pre_queue").await,
        2
    );
    // A placed entry goes once its ticket was purged.
    let outcomes = queue.pre_queue_outcomes(line).await.expect("outcomes");
    let ticket = outcomes
        .iter()
        .find(|outcome| outcome.entry == placed_first.entry)
        .and_then(|outcome| outcome.place)
        .expect("a place");
    ctx.execute(&format!(
        "DELETE FROM queue_tickets WHERE ticket = {}",
        ticket.get()
    ))
    .await;
    assert_eq!(purge().await.expect("purge"), 1);
    let left_over = queue.pre_queue_outcomes(line).await.expect("outcomes");
    assert_eq!(left_over.len(), 1);
    assert!(
        left_over
            .iter()
            .all(|outcome| outcome.entry != placed_first.entry)
    );
    ctx.finish().await;
}
