//! `PgRoomRepository`'s contract: a room is created only when absent, read back as written, and
//! changed only over the version read; a new room gets a line of its own (numbered from the
//! line's start, independent of every other line) and the concerts it names, or nothing at all
//! (`Stale`) when its id or a concert was taken meanwhile; and a room's pre-queue entries go
//! only once their room opened. (The lines of several rooms, the pre-queues and the openings
//! are the `pre_queue` module of `concert-contract`, run in `contract.rs`.)

use concert_application::ports::{
    OpeningRules, PreQueueEnd, PreQueueEntry, PreQueueJoin, PreQueueJoined, QueueRepository,
    RetentionRepository, RoomRepository, Written,
};
use concert_domain::{ConcertId, EndReason, LineNo, NewRoom, Room, RoomId, RoomState, UserId};
use concert_postgres::{PgQueueRepository, PgRoomRepository};
use time::{Duration, OffsetDateTime};

use crate::support::{Ctx, NOW, concert, user};

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
