//! `SqliteRoomRepository`'s contract: a room is created only when absent, read back as written,
//! and changed only over the version read; a new room gets a line of its own (drawn after the
//! default's, empty, at its start) and the concerts it names, or nothing at all (`Stale`) when
//! its id or a concert was taken meanwhile.

use concert_application::ports::{RoomRepository, Version, Versioned, Written};
use concert_domain::{
    ConcertGuard, ConcertId, LineNo, NewRoom, Opening, Room, RoomChange, RoomId, RoomState,
};
use concert_sqlite::{SqliteRoomRepository, SqliteStore};
use time::{Duration, OffsetDateTime};

use crate::catalog::{NOW, Raw, concert, micros};

fn room(max_active: u32, state: RoomState) -> Room {
    Room::new(RoomId::default_room(), max_active, state).expect("a room")
}

/// The instant a scheduled room opens.
const OPENING: OffsetDateTime = NOW.saturating_add(Duration::hours(1));

/// The `default` room, as `bootstrap` seeds it.
async fn default_room(rooms: &SqliteRoomRepository) {
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
async fn decide(rooms: &SqliteRoomRepository, new: &NewRoom) -> Room {
    let exists = rooms.find(&new.id).await.expect("find").is_some();
    let guards = rooms.guards_of(&new.concerts).await.expect("guards_of");
    Room::create(new, exists, &guards, NOW).expect("the domain accepts the room")
}

async fn create_room(
    rooms: &SqliteRoomRepository,
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

fn room_guard(id: &RoomId) -> ConcertGuard {
    ConcertGuard::Room(id.clone())
}

/// Every row a room's creation writes, as one comparable dump.
fn room_rows(raw: &Raw) -> (i64, i64, i64, i64, i64) {
    (
        raw.count("SELECT count(*) AS count FROM rooms"),
        raw.count("SELECT coalesce(sum(version), 0) AS count FROM rooms"),
        raw.count("SELECT count(*) AS count FROM room_concerts"),
        raw.count("SELECT count(*) AS count FROM queue_state"),
        raw.count(
            "SELECT coalesce((SELECT value FROM counters WHERE name = 'room_lines'), 0) AS count",
        ),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_room_is_created_once_and_changed_only_over_the_version_read() {
    let store = SqliteStore::in_memory().expect("store");
    let rooms = SqliteRoomRepository::new(store);
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
        rooms.find(&id).await.expect("find"),
        Some(Versioned::new(unruled, Version::new(3)))
    );
    // A stale write over an older version leaves the room as it is.
    let stale = Versioned::new(room(1, RoomState::Closed), Version::new(1));
    assert_eq!(rooms.save(&stale).await.expect("save"), Written::Stale);
    assert_eq!(
        rooms.find(&id).await.expect("find").map(|r| r.version),
        Some(Version::new(3))
    );
    // A room that does not exist is never written.
    let ghost = Versioned::new(
        Room::new(RoomId::parse("gala").expect("an id"), 5, RoomState::Open).expect("a room"),
        Version::new(1),
    );
    assert_eq!(rooms.save(&ghost).await.expect("save"), Written::Stale);
    assert_eq!(
        rooms
            .find(&RoomId::parse("gala").expect("an id"))
            .await
            .expect("find"),
        None
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_room_numbers_a_fresh_line_of_its_own_and_guards_the_concerts_it_names() {
    let raw = Raw::new().await;
    let rooms = SqliteRoomRepository::new(raw.store.clone());
    default_room(&rooms).await;
    let (a, b, c) = (
        concert(&raw.store, 10).await,
        concert(&raw.store, 10).await,
        concert(&raw.store, 10).await,
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
    assert_eq!(rooms.guards_of(&[]).await.expect("guards"), vec![]);

    let mut asked = new_room("gala", &[b, a], Some(OPENING));
    asked.shuffle_at_open = true;
    asked.admit_per_minute = Some(120);
    asked.waiting_idle_seconds = Some(60);
    let decided = decide(&rooms, &asked).await;
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
        gala.opening(),
        Some(Opening {
            at: OPENING,
            shuffle: true,
            done: false
        })
    );
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
    assert_eq!(listed[0].value.concerts(), &[] as &[ConcertId]);
    assert_eq!(
        rooms.guards_of(&[a, b, c, missing]).await.expect("guards"),
        vec![
            (a, room_guard(gala.id())),
            (b, room_guard(gala.id())),
            (c, ConcertGuard::DefaultRoom),
            (missing, ConcertGuard::Missing),
        ]
    );

    // An empty line at its start, with counters of its own.
    let start = line.start().get();
    assert_eq!(
        raw.count(&format!(
            "SELECT count(*) AS count FROM queue_state \
             WHERE line = 1 AND serving = {start} AND issued_hwm = {start} \
               AND admitted_total = 0 AND issued_total = 0"
        )),
        1
    );
    // The opening as stored: the instant and the shuffle; not yet done.
    assert_eq!(
        raw.count(&format!(
            "SELECT count(*) AS count FROM rooms WHERE room_id = 'gala' \
             AND opens_at = {} AND shuffle_at_open = 1 AND opened = 0",
            micros(OPENING)
        )),
        1
    );

    // The concerts left free still make a room, on a line of its own after the first.
    let encore = create_room(&rooms, "encore", &[c], None).await;
    assert_eq!(encore.line(), LineNo::new(2).expect("a line"));
    assert_eq!(raw.count("SELECT count(*) AS count FROM queue_state"), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_room_over_a_concert_or_an_id_taken_since_the_decision_is_stale_and_writes_nothing() {
    let raw = Raw::new().await;
    let rooms = SqliteRoomRepository::new(raw.store.clone());
    default_room(&rooms).await;
    let (a, b, c) = (
        concert(&raw.store, 10).await,
        concert(&raw.store, 10).await,
        concert(&raw.store, 10).await,
    );
    // All three decided on the same reads: none knows of the others.
    let gala = decide(&rooms, &new_room("gala", &[a], None)).await;
    let over_a = decide(&rooms, &new_room("encore", &[b, a], None)).await;
    let same_id = decide(&rooms, &new_room("gala", &[c], None)).await;
    let gala = match rooms.create(&gala).await.expect("create") {
        Written::Done(created) => created,
        Written::Stale => panic!("nothing was taken"),
    };
    let before = room_rows(&raw);

    assert_eq!(rooms.create(&over_a).await.expect("create"), Written::Stale);
    assert_eq!(
        rooms.create(&same_id).await.expect("create"),
        Written::Stale
    );
    assert_eq!(
        room_rows(&raw),
        before,
        "no room, concert, counters or line number"
    );
    assert_eq!(raw.count("SELECT count(*) AS count FROM rooms"), 2);
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

    // The concerts left free still make a room, on the next line: the stale ones drew none.
    let encore = create_room(&rooms, "encore", &[b, c], None).await;
    assert_eq!(
        (gala.line(), encore.line()),
        (
            LineNo::new(1).expect("a line"),
            LineNo::new(2).expect("a line")
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn of_ten_rooms_created_at_once_over_one_concert_exactly_one_is_created() {
    const ROOMS: usize = 10;
    let raw = Raw::new().await;
    let rooms = SqliteRoomRepository::new(raw.store.clone());
    default_room(&rooms).await;
    let shared = concert(&raw.store, 10).await;
    let mut own = Vec::new();
    for _ in 0..ROOMS {
        own.push(concert(&raw.store, 10).await);
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

    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(ROOMS));
    let handles: Vec<_> = decided
        .iter()
        .cloned()
        .map(|room| {
            let rooms = rooms.clone();
            let barrier = std::sync::Arc::clone(&barrier);
            tokio::spawn(async move {
                barrier.wait().await;
                rooms.create(&room).await.expect("create")
            })
        })
        .collect();
    let mut results = Vec::new();
    for handle in handles {
        results.push(handle.await.expect("joined"));
    }

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
    assert_eq!(room.line(), LineNo::new(1).expect("a line"), "no line lost");
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
    assert_eq!(room_rows(&raw), (2, 2, 2, 2, 1));
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
}

#[tokio::test(flavor = "multi_thread")]
async fn of_ten_saves_at_once_over_one_version_exactly_one_is_written() {
    const SAVES: usize = 10;
    let store = SqliteStore::in_memory().expect("store");
    let rooms = SqliteRoomRepository::new(store);
    default_room(&rooms).await;
    let stored = rooms
        .find(&RoomId::default_room())
        .await
        .expect("find")
        .expect("the room");
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(SAVES));
    let handles: Vec<_> = (0..SAVES)
        .map(|i| {
            let rooms = rooms.clone();
            let barrier = std::sync::Arc::clone(&barrier);
            let changed = stored
                .value
                .changed(
                    &RoomChange {
                        max_active: Some(i64::try_from(i).expect("small") + 1),
                        ..RoomChange::default()
                    },
                    NOW,
                )
                .expect("a change");
            let write = Versioned::new(changed, stored.version);
            tokio::spawn(async move {
                barrier.wait().await;
                (i, rooms.save(&write).await.expect("save"))
            })
        })
        .collect();
    let mut done = Vec::new();
    for handle in handles {
        let (i, written) = handle.await.expect("joined");
        if written == Written::Done(()) {
            done.push(i);
        }
    }
    assert_eq!(done.len(), 1, "{done:?}");
    let after = rooms
        .find(&RoomId::default_room())
        .await
        .expect("find")
        .expect("the room");
    assert_eq!(after.version, Version::new(2));
    assert_eq!(
        after.value.max_active(),
        u32::try_from(done[0]).expect("small") + 1,
        "the winner's settings"
    );
}
