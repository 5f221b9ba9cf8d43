//! `PgRoomRepository`'s contract: a room is created only when absent, read back as written, and
//! changed only over the version read; a new room gets a line of its own (numbered from the
//! line's start, independent of every other line) and the concerts it names, or nothing at all
//! (`Stale`) when its id or a concert was taken meanwhile; and a room's pre-queue entries go
//! only once their room opened. (The lines of several rooms, the pre-queues and the openings
//! are the `pre_queue` module of `concert-contract`, run in `contract.rs`.)

use concert_application::ports::{
    JoinWrite, OpeningRules, PreQueueEnd, PreQueueEntry, PreQueueJoin, PreQueueJoined,
    QueueRepository, QueueSnapshot, RetentionRepository, RoomRepository, Version, Versioned,
    Written,
};
use concert_domain::{
    ConcertGuard, ConcertId, EndReason, LineNo, NewRoom, QueueTicket, Room, RoomChange, RoomId,
    RoomState, TicketNo, UserId,
};
use concert_postgres::{PgQueueRepository, PgRoomRepository};
use diesel::QueryableByName;
use diesel::sql_types::Text;
use time::{Duration, OffsetDateTime};

use crate::support::{Ctx, NOW, concert, race, user};

fn room(max_active: u32, state: RoomState) -> Room {
    Room::new(RoomId::default_room(), max_active, state).expect("a room")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_room_is_created_once_and_changed_only_over_the_version_read() {
    let ctx = Ctx::new().await;
    let rooms = PgRoomRepository::new(ctx.pool.clone());
    let id = RoomId::default_room();
    assert_eq!(rooms.find(&id).await.expect("find"), None);

    rooms
        .create_if_absent(&room(500, RoomState::Open))
        .await
        .expect("create");
    // A second instance starting with another QUEUE_MAX_ACTIVE does not overwrite it.
    rooms
        .create_if_absent(&room(7, RoomState::Open))
        .await
        .expect("create");
    let stored = rooms.find(&id).await.expect("find").expect("the room");
    assert_eq!(
        stored,
        Versioned::new(room(500, RoomState::Open), Version::new(1))
    );

    let paused = stored
        .value
        .changed(
            &RoomChange {
                max_active: Some(20),
                state: Some(RoomState::Paused),
                admit_per_minute: Some(Some(600)),
                waiting_idle_seconds: Some(Some(90)),
                ..RoomChange::default()
            },
            NOW,
        )
        .expect("a change");
    let write = Versioned::new(paused.clone(), stored.version);
    assert_eq!(rooms.save(&write).await.expect("save"), Written::Done(()));
    assert_eq!(
        rooms.save(&write).await.expect("save"),
        Written::Stale,
        "version moved"
    );
    assert_eq!(
        rooms.find(&id).await.expect("find"),
        Some(Versioned::new(paused.clone(), Version::new(2))),
        "every setting, the waiting rule's start included"
    );
    let unruled = paused
        .changed(
            &RoomChange {
                waiting_idle_seconds: Some(None),
                ..RoomChange::default()
            },
            NOW,
        )
        .expect("lifted");
    let write = Versioned::new(unruled.clone(), Version::new(2));
    assert_eq!(rooms.save(&write).await.expect("save"), Written::Done(()));
    assert_eq!(
        rooms.find(&id).await.expect("find").map(|room| room.value),
        Some(unruled)
    );
    assert_eq!(
        rooms
            .find(&RoomId::parse("gala").expect("an id"))
            .await
            .expect("find"),
        None
    );
    ctx.finish().await;
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

const LINE_SEQUENCES_SQL: &str =
    "SELECT count(*) AS count FROM pg_sequences WHERE sequencename LIKE 'queue_line_%'";

fn room_guard(id: &RoomId) -> ConcertGuard {
    ConcertGuard::Room(id.clone())
}

// ---- Creating rooms. ----

#[tokio::test(flavor = "multi_thread")]
async fn a_new_room_numbers_a_fresh_line_of_its_own_and_guards_the_concerts_it_names() {
    let ctx = Ctx::new().await;
    let rooms = PgRoomRepository::new(ctx.pool.clone());
    let queue = ctx.queue();
    default_room(&rooms).await;
    let (a, b, c) = (
        concert(&ctx, 10).await,
        concert(&ctx, 10).await,
        concert(&ctx, 10).await,
    );
    let missing = ConcertId::new(c.get() + 1000).expect("an id");
    assert_eq!(
        rooms.guards_of(&[a, b, c, missing]).await.expect("guards"),
        vec![
            (a, ConcertGuard::DefaultRoom),
            (b, ConcertGuard::DefaultRoom),
            (c, ConcertGuard::DefaultRoom),
            (missing, ConcertGuard::Missing),
        ]
    );
    // A ticket of the default line first: the new line's numbers owe it nothing.
    assert_eq!(
        join(&queue, user(), LineNo::DEFAULT, NOW)
            .await
            .ticket()
            .get(),
        1
    );

    let decided = decide(&rooms, &new_room("gala", &[b, a], None)).await;
    let gala = match rooms.create(&decided).await.expect("create") {
        Written::Done(created) => created,
        Written::Stale => panic!("nothing was taken"),
    };
    let line = gala.line();
    assert_eq!(
        line,
        LineNo::new(1).expect("a line"),
        "the first line after the default's"
    );
    assert_eq!(
        gala,
        decided.clone().on_line(line),
        "the room decided, on its line"
    );
    assert_eq!(gala.concerts(), &[a, b]);
    assert_eq!(
        rooms.find(gala.id()).await.expect("find"),
        Some(Versioned::new(gala.clone(), Version::new(1)))
    );
    let listed = rooms.list().await.expect("list");
    assert_eq!(
        listed
            .iter()
            .map(|room| (room.value.id().as_str(), room.value.line().get()))
            .collect::<Vec<_>>(),
        vec![("default", 0), ("gala", 1)],
        "in line order, default first"
    );
    assert_eq!(listed[1].value, gala);
    assert_eq!(
        rooms.guards_of(&[a, b, c, missing]).await.expect("guards"),
        vec![
            (a, room_guard(gala.id())),
            (b, room_guard(gala.id())),
            (c, ConcertGuard::DefaultRoom),
            (missing, ConcertGuard::Missing),
        ]
    );

    // An empty line at its start, with counters and a sequence of its own.
    assert_eq!(
        queue.snapshot(line).await.expect("snapshot"),
        QueueSnapshot {
            serving: line.start(),
            ..QueueSnapshot::default()
        }
    );
    assert_eq!(
        ctx.count(
            "SELECT count(*) AS count FROM pg_sequences WHERE sequencename = 'queue_line_1_seq'"
        )
        .await,
        1
    );
    let mut numbers = Vec::new();
    for _ in 0..3 {
        numbers.push(join(&queue, user(), line, NOW).await.ticket());
    }
    assert_eq!(
        numbers,
        vec![place(line, 1), place(line, 2), place(line, 3)],
        "from the line's start, without gaps"
    );
    assert!(numbers.iter().all(|ticket| ticket.line() == line));
    // The default line goes on where it was.
    assert_eq!(
        join(&queue, user(), LineNo::DEFAULT, NOW)
            .await
            .ticket()
            .get(),
        2
    );
    assert_eq!(
        counts_of(&queue, line).await,
        (line.start().get(), 0, 3, 0, 3, 0)
    );
    assert_eq!(counts_of(&queue, LineNo::DEFAULT).await, (0, 0, 2, 0, 2, 0));
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_room_over_a_concert_or_an_id_taken_since_the_decision_is_stale_and_writes_nothing() {
    let ctx = Ctx::new().await;
    let rooms = PgRoomRepository::new(ctx.pool.clone());
    let queue = ctx.queue();
    default_room(&rooms).await;
    let (a, b, c) = (
        concert(&ctx, 10).await,
        concert(&ctx, 10).await,
        concert(&ctx, 10).await,
    );
    // All three decided on the same reads: none knows of the others.
    let gala = decide(&rooms, &new_room("gala", &[a], None)).await;
    let over_a = decide(&rooms, &new_room("encore", &[b, a], None)).await;
    let same_id = decide(&rooms, &new_room("gala", &[c], None)).await;
    let gala = match rooms.create(&gala).await.expect("create") {
        Written::Done(created) => created,
        Written::Stale => panic!("nothing was taken"),
    };
    let before = room_rows(&ctx).await;

    assert_eq!(rooms.create(&over_a).await.expect("create"), Written::Stale);
    assert_eq!(
        rooms.create(&same_id).await.expect("create"),
        Written::Stale
    );
    assert_eq!(
        room_rows(&ctx).await,
        before,
        "no room, concert, counters or sequence"
    );
    assert_eq!(ctx.count("SELECT count(*) AS count FROM rooms").await, 2);
    assert_eq!(ctx.count(LINE_SEQUENCES_SQL).await, 2);
    assert_eq!(
        rooms
            .find(&RoomId::parse("encore").expect("an id"))
            .await
            .expect("find"),
        None
    );
    assert_eq!(
        rooms.find(gala.id()).await.expect("find").map(|r| r.value),
        Some(gala.clone()),
        "the first room keeps its concerts"
    );
    assert_eq!(
        rooms.guards_of(&[a, b, c]).await.expect("guards"),
        vec![
            (a, room_guard(gala.id())),
            (b, ConcertGuard::DefaultRoom),
            (c, ConcertGuard::DefaultRoom),
        ]
    );

    // The concerts left free still make a room, on a line of its own after the first.
    let encore = create_room(&rooms, "encore", &[b, c], None).await;
    assert!(encore.line() > gala.line());
    assert_eq!(
        join(&queue, user(), encore.line(), NOW).await.ticket(),
        place(encore.line(), 1)
    );
    assert_eq!(ctx.count(LINE_SEQUENCES_SQL).await, 3);
    assert_eq!(
        ctx.count("SELECT count(*) AS count FROM queue_state").await,
        3
    );
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn of_ten_rooms_created_at_once_over_one_concert_exactly_one_is_created() {
    const ROOMS: usize = 10;
    let ctx = Ctx::with_two_pools(5).await;
    ctx.warm_up(5).await;
    let rooms = PgRoomRepository::new(ctx.pool.clone());
    default_room(&rooms).await;
    let shared = concert(&ctx, 10).await;
    let mut own = Vec::new();
    for _ in 0..ROOMS {
        own.push(concert(&ctx, 10).await);
    }
    // Every decision read the concerts free, as ten operators' requests at once would.
    let mut decided = Vec::new();
    for (i, concert) in own.iter().enumerate() {
        decided.push(
            decide(
                &rooms,
                &new_room(&format!("room-{i}"), &[shared, *concert], None),
            )
            .await,
        );
    }

    let results = race(ROOMS, |i| {
        let rooms = PgRoomRepository::new(ctx.pool_of(i).clone());
        let room = decided[i].clone();
        async move { rooms.create(&room).await.expect("create") }
    })
    .await;

    let created: Vec<(usize, Room)> = results
        .iter()
        .enumerate()
        .filter_map(|(i, written)| match written {
            Written::Done(room) => Some((i, room.clone())),
            Written::Stale => None,
        })
        .collect();
    assert_eq!(created.len(), 1, "exactly one room: {created:?}");
    assert_eq!(
        results.iter().filter(|r| **r == Written::Stale).count(),
        ROOMS - 1
    );
    let (winner, room) = &created[0];
    let mut asked = vec![shared];
    asked.extend(&own);
    let expected: Vec<(ConcertId, ConcertGuard)> = asked
        .iter()
        .map(|concert| {
            let guard = if *concert == shared || *concert == own[*winner] {
                room_guard(room.id())
            } else {
                ConcertGuard::DefaultRoom
            };
            (*concert, guard)
        })
        .collect();
    assert_eq!(rooms.guards_of(&asked).await.expect("guards"), expected);
    assert_eq!(ctx.count("SELECT count(*) AS count FROM rooms").await, 2);
    assert_eq!(
        ctx.count("SELECT count(*) AS count FROM room_concerts")
            .await,
        2
    );
    assert_eq!(
        ctx.count("SELECT count(*) AS count FROM queue_state").await,
        2
    );
    assert_eq!(ctx.count(LINE_SEQUENCES_SQL).await, 2);
    assert_eq!(
        rooms
            .list()
            .await
            .expect("list")
            .into_iter()
            .map(|r| r.value.id().clone())
            .collect::<Vec<_>>(),
        vec![RoomId::default_room(), room.id().clone()]
    );
    assert_eq!(
        ctx.queue().snapshot(room.line()).await.expect("snapshot"),
        QueueSnapshot {
            serving: room.line().start(),
            ..QueueSnapshot::default()
        }
    );
    ctx.finish().await;
}

// ---- Pre-queues' retention. ----

/// Opening rules that give the places in the reverse of arrival order.
struct Reversed;

impl OpeningRules for Reversed {
    fn order(&self, mut arrivals: Vec<PreQueueEntry>) -> Vec<PreQueueEntry> {
        arrivals.reverse();
        arrivals
    }
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
            .open_line(line, OPENING, &Reversed)
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
