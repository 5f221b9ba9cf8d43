//! `RoomRepository`: a room is created only when its id and its concerts are still free (so a
//! concert is never in two rooms), reads back as written with a line of its own, and changes
//! only over the version read.

use std::sync::Arc;

use concert_application::ports::{Version, Versioned, Written};
use concert_domain::{
    ConcertGuard, ConcertId, CreateRoomRefused, LineNo, NewRoom, Room, RoomChange, RoomId,
    RoomState, TicketNo,
};

use crate::fixtures::{NOW, concert, finish, join_line, race, shared, user};
use crate::{RACERS, Store};

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

fn default_room() -> Room {
    Room::new(RoomId::default_room(), 500, RoomState::Open).expect("a room")
}

/// The domain's decision over what the store holds now (as `ManageRooms::create` reads it).
async fn decide<S: Store>(store: &S, new: &NewRoom) -> Result<Room, CreateRoomRefused> {
    let rooms = store.rooms();
    let exists = rooms.find(&new.id).await.expect("find").is_some();
    let guards = rooms.guards_of(&new.concerts).await.expect("guards_of");
    Room::create(new, exists, &guards, NOW)
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

pub async fn a_room_is_created_found_and_listed<S: Store>() {
    let store = S::fresh().await;
    let rooms = store.rooms();
    let (guarded, free) = (concert(&store, 1).await, concert(&store, 1).await);
    let missing = ConcertId::new(guarded.get().max(free.get()) + 1).expect("an id");
    rooms
        .create_if_absent(&default_room())
        .await
        .expect("default room");
    let decided = decide(&store, &new_room("gala", &[guarded]))
        .await
        .expect("accepted");
    let Written::Done(created) = rooms.create(&decided).await.expect("create") else {
        panic!("nothing was taken");
    };
    assert_ne!(created.line(), LineNo::DEFAULT, "a line of its own");
    assert_eq!(created, decided.clone().on_line(created.line()));
    let found = rooms
        .find(created.id())
        .await
        .expect("find")
        .expect("the room");
    assert_eq!(found.value, created);
    assert_ne!(found.version, Version::ABSENT);
    let listed: Vec<Room> = rooms
        .list()
        .await
        .expect("list")
        .into_iter()
        .map(|r| r.value)
        .collect();
    assert_eq!(
        listed,
        vec![default_room(), created.clone()],
        "default first"
    );

    let mut guards = rooms
        .guards_of(&[missing, free, guarded])
        .await
        .expect("guards_of");
    guards.sort_by_key(|(concert, _)| *concert);
    let mut expected = vec![
        (guarded, ConcertGuard::Room(created.id().clone())),
        (free, ConcertGuard::DefaultRoom),
        (missing, ConcertGuard::Missing),
    ];
    expected.sort_by_key(|(concert, _)| *concert);
    assert_eq!(guards, expected);
    assert_eq!(
        rooms
            .find(&RoomId::parse("other").expect("an id"))
            .await
            .expect("find"),
        None
    );
    store.finish().await;
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

pub async fn a_room_id_is_created_once<S: Store>() {
    let store = S::fresh().await;
    let rooms = store.rooms();
    let (one, two) = (concert(&store, 1).await, concert(&store, 1).await);
    let first = decide(&store, &new_room("gala", &[one]))
        .await
        .expect("accepted");
    let twin = decide(&store, &new_room("gala", &[two]))
        .await
        .expect("accepted");
    let Written::Done(created) = rooms.create(&first).await.expect("create") else {
        panic!("nothing was taken");
    };
    assert_eq!(rooms.create(&twin).await.expect("create"), Written::Stale);
    assert_eq!(
        rooms.find(first.id()).await.expect("find").map(|r| r.value),
        Some(created)
    );
    assert_eq!(
        rooms.guards_of(&[two]).await.expect("guards_of"),
        vec![(two, ConcertGuard::DefaultRoom)],
        "the stale creation named no concert"
    );
    store.finish().await;
}

pub async fn create_if_absent_keeps_a_stored_room<S: Store>() {
    let store = S::fresh().await;
    let rooms = store.rooms();
    assert_eq!(
        rooms.find(&RoomId::default_room()).await.expect("find"),
        None
    );
    rooms
        .create_if_absent(&default_room())
        .await
        .expect("created");
    let other = Room::new(RoomId::default_room(), 7, RoomState::Paused).expect("a room");
    rooms.create_if_absent(&other).await.expect("kept");
    let stored = rooms
        .find(&RoomId::default_room())
        .await
        .expect("find")
        .expect("the room");
    assert_eq!(stored.value, default_room());
    store.finish().await;
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
    let place = |line: LineNo, n: i64| TicketNo::new(line.start().get() + n).expect("a number");
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
