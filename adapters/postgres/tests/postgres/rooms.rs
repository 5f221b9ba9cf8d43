//! `PgRoomRepository`'s contract: a room is created only when absent, read back as written, and
//! changed only over the version read.

use concert_application::ports::{RoomRepository, Version, Versioned, Written};
use concert_domain::{Room, RoomChange, RoomId, RoomState};
use concert_postgres::PgRoomRepository;

use crate::support::{Ctx, NOW};

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
