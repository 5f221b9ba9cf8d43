//! `RoomRepository`: a room is created only when its id and its concerts are still free (so a
//! concert is never in two rooms), reads back as written with a line of its own (numbered from
//! the line's start, apart from every other line), and changes only over the version read; a
//! creation or a save over anything taken or moved since the decision is `Stale` and writes
//! nothing.

use std::sync::Arc;

use concert_application::ports::{QueueSnapshot, Version, Versioned, Written};
use concert_domain::{
    ConcertGuard, ConcertId, CreateRoomRefused, LineNo, NewRoom, Opening, Room, RoomChange, RoomId,
    RoomState, TicketNo,
};
use time::{Duration, OffsetDateTime};

use crate::fixtures::{NOW, concert, finish, join_line, race, shared, user};
use crate::{RACERS, RoomCounts, Store};

/// The instant a scheduled room opens.
const OPENING: OffsetDateTime = NOW.saturating_add(Duration::hours(1));

fn new_room(id: &str, concerts: &[ConcertId]) -> NewRoom {
    NewRoom {
        id: RoomId::parse(id).expect("a room id"),
        concerts: concerts.to_vec(),
        max_active: 50,
        admit_per_minute: None,
        opens_at: None,
        shuffle_at_open: false,
        waiting_idle_seconds: None,
    }
}

fn room(max_active: u32, state: RoomState) -> Room {
    Room::new(RoomId::default_room(), max_active, state).expect("a room")
}

/// The `default` room, as `bootstrap` seeds it.
fn default_room() -> Room {
    room(500, RoomState::Open)
}

fn room_guard(id: &RoomId) -> ConcertGuard {
    ConcertGuard::Room(id.clone())
}

/// The place `n` of `line` (1 is the first).
fn place(line: LineNo, n: i64) -> TicketNo {
    TicketNo::new(line.start().get() + n).expect("a ticket number")
}

fn counts(rooms: u64, room_concerts: u64, lines: u64) -> RoomCounts {
    RoomCounts {
        rooms,
        room_concerts,
        lines,
    }
}

/// The domain's decision over what the store holds now (as `ManageRooms::create` reads it).
async fn decide<S: Store>(store: &S, new: &NewRoom) -> Result<Room, CreateRoomRefused> {
    let rooms = store.rooms();
    let exists = rooms.find(&new.id).await.expect("find").is_some();
    let guards = rooms.guards_of(&new.concerts).await.expect("guards_of");
    Room::create(new, exists, &guards, NOW)
}

/// A decision the domain accepts; panics otherwise.
async fn accepted<S: Store>(store: &S, new: &NewRoom) -> Room {
    decide(store, new)
        .await
        .expect("the domain accepts the room")
}

/// Decide and create, again while stale: the room on its line, or the domain's refusal.
async fn create<S: Store>(store: &S, new: &NewRoom) -> Result<Room, CreateRoomRefused> {
    for _ in 0..64 {
        let room = decide(store, new).await?;
        if let Written::Done(created) = store.rooms().create(&room).await.expect("create") {
            return Ok(created);
        }
    }
    panic!("a room creation stayed stale")
}

/// A creation that must be written at once (nothing was taken since the decision).
async fn created<S: Store>(store: &S, decided: &Room) -> Room {
    match store.rooms().create(decided).await.expect("create") {
        Written::Done(created) => created,
        Written::Stale => panic!("nothing was taken since the decision"),
    }
}

pub async fn a_room_is_created_once_and_changed_only_over_the_version_read<S: Store>() {
    let store = S::fresh().await;
    let rooms = store.rooms();
    let id = RoomId::default_room();
    assert_eq!(rooms.find(&id).await.expect("find"), None);
    rooms
        .create_if_absent(&default_room())
        .await
        .expect("created");
    // A second instance starting with other settings does not overwrite it.
    rooms
        .create_if_absent(&room(7, RoomState::Paused))
        .await
        .expect("kept");
    let stored = rooms.find(&id).await.expect("find").expect("the room");
    assert_eq!(stored, Versioned::new(default_room(), Version::new(1)));

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
        "the version moved"
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
        Some(Versioned::new(unruled.clone(), Version::new(3)))
    );
    // A stale write over an older version leaves the room as it is.
    let stale = Versioned::new(room(1, RoomState::Closed), Version::new(1));
    assert_eq!(rooms.save(&stale).await.expect("save"), Written::Stale);
    assert_eq!(
        rooms.find(&id).await.expect("find"),
        Some(Versioned::new(unruled, Version::new(3)))
    );
    // A room that does not exist is never written.
    let gala = RoomId::parse("gala").expect("an id");
    let ghost = Versioned::new(
        Room::new(gala.clone(), 5, RoomState::Open).expect("a room"),
        Version::new(1),
    );
    assert_eq!(rooms.save(&ghost).await.expect("save"), Written::Stale);
    assert_eq!(rooms.find(&gala).await.expect("find"), None);
    store.finish().await;
}

pub async fn a_new_room_numbers_a_fresh_line_of_its_own_and_guards_the_concerts_it_names<
    S: Store,
>() {
    let store = S::fresh().await;
    let rooms = store.rooms();
    let queue = store.queue();
    rooms
        .create_if_absent(&default_room())
        .await
        .expect("the default room");
    let (a, b, c) = (
        concert(&store, 10).await,
        concert(&store, 10).await,
        concert(&store, 10).await,
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
    // A ticket of the default line first: the new line's numbers owe it nothing.
    let (first, _) = join_line(&store, user(), LineNo::DEFAULT, NOW).await;
    assert_eq!(first.ticket(), place(LineNo::DEFAULT, 1));

    let decided = accepted(&store, &new_room("gala", &[b, a])).await;
    let gala = created(&store, &decided).await;
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
    assert_eq!(listed[0].value, default_room());
    assert_eq!(listed[0].value.concerts(), &[] as &[ConcertId]);
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
    assert_eq!(
        rooms
            .find(&RoomId::parse("other").expect("an id"))
            .await
            .expect("find"),
        None
    );

    // An empty line at its start, numbered from it without gaps; the default line goes on.
    assert_eq!(
        queue.snapshot(line).await.expect("snapshot"),
        QueueSnapshot {
            serving: line.start(),
            ..QueueSnapshot::default()
        }
    );
    let mut numbers = Vec::new();
    for _ in 0..3 {
        numbers.push(join_line(&store, user(), line, NOW).await.0.ticket());
    }
    assert_eq!(
        numbers,
        vec![place(line, 1), place(line, 2), place(line, 3)],
        "from the line's start, without gaps"
    );
    assert!(numbers.iter().all(|ticket| ticket.line() == line));
    let (second, _) = join_line(&store, user(), LineNo::DEFAULT, NOW).await;
    assert_eq!(second.ticket(), place(LineNo::DEFAULT, 2));
    for (on, issued) in [(line, 3), (LineNo::DEFAULT, 2)] {
        assert_eq!(
            queue.snapshot(on).await.expect("snapshot"),
            QueueSnapshot {
                serving: on.start(),
                waiting: issued,
                issued,
                ..QueueSnapshot::default()
            },
            "line {on}"
        );
    }

    // The concerts left free still make a room, on a line of its own after the first, with
    // every setting as decided: its opening, shuffle and pace included.
    let mut asked = new_room("encore", &[c]);
    asked.opens_at = Some(OPENING);
    asked.shuffle_at_open = true;
    asked.admit_per_minute = Some(120);
    asked.waiting_idle_seconds = Some(60);
    let decided = accepted(&store, &asked).await;
    let encore = created(&store, &decided).await;
    assert!(encore.line() > line);
    assert_eq!(encore, decided.on_line(encore.line()));
    assert_eq!(
        encore.opening(),
        Some(Opening {
            at: OPENING,
            shuffle: true,
            done: false
        })
    );
    assert_eq!(
        rooms.find(encore.id()).await.expect("find"),
        Some(Versioned::new(encore.clone(), Version::new(1)))
    );
    assert_eq!(
        queue.snapshot(encore.line()).await.expect("snapshot"),
        QueueSnapshot {
            serving: encore.line().start(),
            ..QueueSnapshot::default()
        }
    );
    assert_eq!(store.room_counts().await, counts(3, 3, 3));
    store.finish().await;
}

pub async fn a_room_over_a_concert_or_an_id_taken_since_the_decision_is_stale_and_writes_nothing<
    S: Store,
>() {
    let store = S::fresh().await;
    let rooms = store.rooms();
    rooms
        .create_if_absent(&default_room())
        .await
        .expect("the default room");
    let (a, b, c) = (
        concert(&store, 10).await,
        concert(&store, 10).await,
        concert(&store, 10).await,
    );
    // All three decided on the same reads: none knows of the others.
    let gala = accepted(&store, &new_room("gala", &[a])).await;
    let over_a = accepted(&store, &new_room("encore", &[b, a])).await;
    let same_id = accepted(&store, &new_room("gala", &[c])).await;
    let gala = created(&store, &gala).await;
    let before = store.room_rows().await;

    assert_eq!(rooms.create(&over_a).await.expect("create"), Written::Stale);
    assert_eq!(
        rooms.create(&same_id).await.expect("create"),
        Written::Stale
    );
    assert_eq!(
        store.room_rows().await,
        before,
        "no room, concert, line or line number"
    );
    assert_eq!(store.room_counts().await, counts(2, 1, 2));
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
        ],
        "the stale creations named no concert"
    );

    // The concerts left free still make a room, on a line of its own after the first.
    let encore = created(
        &store,
        &accepted(&store, &new_room("encore", &[b, c])).await,
    )
    .await;
    assert!(encore.line() > gala.line());
    let (ticket, _) = join_line(&store, user(), encore.line(), NOW).await;
    assert_eq!(ticket.ticket(), place(encore.line(), 1));
    assert_eq!(store.room_counts().await, counts(3, 3, 3));
    store.finish().await;
}

pub async fn of_racing_creations_over_one_concert_exactly_one_is_created<S: Store>() {
    let store = shared::<S>().await;
    let rooms = store.rooms();
    rooms
        .create_if_absent(&default_room())
        .await
        .expect("the default room");
    let contested = concert(&*store, 10).await;
    let mut own = Vec::new();
    for _ in 0..RACERS {
        own.push(concert(&*store, 10).await);
    }
    // Every decision read the concerts free, as many operators' requests at once would.
    let mut decided = Vec::new();
    for (i, concert) in own.iter().enumerate() {
        decided.push(
            accepted(
                &*store,
                &new_room(&format!("room-{i}"), &[contested, *concert]),
            )
            .await,
        );
    }

    let results = race(RACERS, |i| {
        let store = Arc::clone(&store);
        let room = decided[i].clone();
        async move { store.rooms().create(&room).await.expect("create") }
    })
    .await;
    let won: Vec<(usize, Room)> = results
        .iter()
        .enumerate()
        .filter_map(|(i, written)| match written {
            Written::Done(room) => Some((i, room.clone())),
            Written::Stale => None,
        })
        .collect();
    assert_eq!(won.len(), 1, "exactly one room: {won:?}");
    assert_eq!(
        results.iter().filter(|r| **r == Written::Stale).count(),
        RACERS - 1
    );
    let (winner, room) = &won[0];
    let mut asked = vec![contested];
    asked.extend(&own);
    let expected: Vec<(ConcertId, ConcertGuard)> = asked
        .iter()
        .map(|concert| {
            let guard = if *concert == contested || *concert == own[*winner] {
                room_guard(room.id())
            } else {
                ConcertGuard::DefaultRoom
            };
            (*concert, guard)
        })
        .collect();
    assert_eq!(rooms.guards_of(&asked).await.expect("guards"), expected);
    assert_eq!(store.room_counts().await, counts(2, 2, 2));
    assert_eq!(
        rooms
            .list()
            .await
            .expect("list")
            .into_iter()
            .map(|r| r.value)
            .collect::<Vec<_>>(),
        vec![default_room(), room.clone()]
    );
    assert_eq!(
        store.queue().snapshot(room.line()).await.expect("snapshot"),
        QueueSnapshot {
            serving: room.line().start(),
            ..QueueSnapshot::default()
        }
    );
    drop(rooms);
    finish(store).await;
}

pub async fn of_racing_saves_over_one_version_exactly_one_is_written<S: Store>() {
    let store = shared::<S>().await;
    let rooms = store.rooms();
    rooms
        .create_if_absent(&default_room())
        .await
        .expect("the default room");
    let stored = rooms
        .find(&RoomId::default_room())
        .await
        .expect("find")
        .expect("the room");
    let results = race(RACERS, |i| {
        let store = Arc::clone(&store);
        let changed = stored
            .value
            .changed(
                &RoomChange {
                    max_active: Some(i64::try_from(i).expect("a few racers") + 1),
                    ..RoomChange::default()
                },
                NOW,
            )
            .expect("a change");
        let write = Versioned::new(changed, stored.version);
        async move { store.rooms().save(&write).await.expect("save") }
    })
    .await;
    let done: Vec<usize> = (0..RACERS)
        .filter(|i| results[*i] == Written::Done(()))
        .collect();
    assert_eq!(done.len(), 1, "{results:?}");
    let after = rooms
        .find(&RoomId::default_room())
        .await
        .expect("find")
        .expect("the room");
    assert_eq!(after.version, Version::new(2));
    assert_eq!(
        after.value.max_active(),
        u32::try_from(done[0]).expect("a few racers") + 1,
        "the winner's settings"
    );
    drop(rooms);
    finish(store).await;
}

pub async fn a_room_is_saved_only_over_the_version_read<S: Store>() {
    let store = S::fresh().await;
    let rooms = store.rooms();
    let gala = concert(&store, 1).await;
    let created = create(&store, &new_room("gala", &[gala]))
        .await
        .expect("created");
    let read = rooms
        .find(created.id())
        .await
        .expect("find")
        .expect("the room");
    let change = RoomChange {
        max_active: Some(7),
        state: Some(RoomState::Paused),
        admit_per_minute: Some(Some(120)),
        waiting_idle_seconds: Some(Some(60)),
        ..RoomChange::default()
    };
    let changed = read.value.changed(&change, NOW).expect("a valid change");
    let write = Versioned::new(changed.clone(), read.version);
    assert_eq!(rooms.save(&write).await.expect("save"), Written::Done(()));
    assert_eq!(
        rooms.save(&write).await.expect("save"),
        Written::Stale,
        "the version moved"
    );
    let stored = rooms
        .find(created.id())
        .await
        .expect("find")
        .expect("the room");
    assert_eq!(stored.value, changed, "every setting as written");
    assert_ne!(stored.version, read.version);

    let lifted = changed
        .changed(
            &RoomChange {
                waiting_idle_seconds: Some(None),
                ..RoomChange::default()
            },
            NOW,
        )
        .expect("a valid change");
    let stale = Versioned::new(lifted.clone(), read.version);
    assert_eq!(rooms.save(&stale).await.expect("save"), Written::Stale);
    assert_eq!(
        rooms
            .find(created.id())
            .await
            .expect("find")
            .map(|r| r.value),
        Some(changed)
    );
    store.finish().await;
}

pub async fn a_concert_cannot_be_in_two_rooms<S: Store>() {
    let store = shared::<S>().await;
    let rooms = store.rooms();
    let gala = concert(&*store, 1).await;
    // Two decisions over the same reads: the second is stale once the first is written.
    let first = decide(&*store, &new_room("first", &[gala]))
        .await
        .expect("accepted");
    let second = decide(&*store, &new_room("second", &[gala]))
        .await
        .expect("accepted");
    assert!(matches!(
        rooms.create(&first).await.expect("create"),
        Written::Done(_)
    ));
    assert_eq!(rooms.create(&second).await.expect("create"), Written::Stale);
    assert_eq!(
        rooms.find(second.id()).await.expect("find"),
        None,
        "nothing written"
    );

    // Many operators at once, each naming the same concert.
    let contested = concert(&*store, 1).await;
    let outcomes = race(RACERS, |i| {
        let store = Arc::clone(&store);
        async move { create(&*store, &new_room(&format!("room-{i}"), &[contested])).await }
    })
    .await;
    let won: Vec<&Room> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
    assert_eq!(won.len(), 1, "{outcomes:?}");
    assert!(outcomes.iter().all(|o| o.is_ok()
        || *o
            == Err(CreateRoomRefused::ConcertInAnotherRoom(
                contested,
                won[0].id().clone()
            ))));
    assert_eq!(
        rooms.guards_of(&[contested]).await.expect("guards_of"),
        vec![(contested, ConcertGuard::Room(won[0].id().clone()))]
    );
    assert_eq!(rooms.list().await.expect("list").len(), 2);
    finish(store).await;
}

pub async fn each_room_has_a_line_of_its_own<S: Store>() {
    let store = S::fresh().await;
    let (one, two) = (concert(&store, 1).await, concert(&store, 1).await);
    let first = create(&store, &new_room("first", &[one]))
        .await
        .expect("created");
    let second = create(&store, &new_room("second", &[two]))
        .await
        .expect("created");
    assert_ne!(first.line(), second.line());
    for line in [first.line(), LineNo::DEFAULT, second.line(), first.line()] {
        join_line(&store, user(), line, NOW).await;
    }
    let who = user();
    let (in_first, _) = join_line(&store, who, first.line(), NOW).await;
    let (in_default, _) = join_line(&store, who, LineNo::DEFAULT, NOW).await;
    assert_eq!(
        in_first.ticket(),
        place(first.line(), 3),
        "numbered on its own"
    );
    assert_eq!(in_default.ticket(), place(LineNo::DEFAULT, 2));
    assert_eq!(in_first.ticket().line(), first.line());
    let queue = store.queue();
    for (line, issued) in [(first.line(), 3), (second.line(), 1), (LineNo::DEFAULT, 2)] {
        let snapshot = queue.snapshot(line).await.expect("snapshot");
        assert_eq!(
            (snapshot.issued, snapshot.waiting),
            (issued, issued),
            "line {line}"
        );
        assert_eq!(snapshot.serving, line.start());
    }
    store.finish().await;
}
