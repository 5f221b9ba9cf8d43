//! The lines of several rooms and their pre-queues, through `QueueRepository`: each room's line
//! is numbered, stepped, ended and counted on its own and a user may wait in two rooms at once;
//! a room's pre-queue gets the line's first places at its opening, once, in the order the
//! opening rules return, while every later join is sent to the line (after every placed one).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use concert_application::ports::{
    JoinWrite, OpeningRules, PreQueueEnd, PreQueueEntry, PreQueueJoined, PreQueueOutcome,
    QueueRepository, TicketEnd, Version, Written,
};
use concert_domain::queue::ServingCounter;
use concert_domain::{EndReason, LineNo, QueueTicket, TicketNo, TicketStatus, UserId};
use time::Duration;
use tokio::sync::watch;

use crate::Store;
use crate::fixtures::{NOW, finish, race, shared, user};
use crate::line::{
    OPENING, count_in, counts_of, entry_for, join_in, place, policy, pre_join, room, status, step,
};

/// The tickets of `line` that ended since [`NOW`], in ticket order.
async fn ended_since<S: Store>(store: &S, line: LineNo) -> Vec<TicketNo> {
    let mut ended: Vec<TicketNo> = store
        .queue()
        .ended_since(line, NOW)
        .await
        .expect("ended_since")
        .into_iter()
        .map(|ended| ended.ticket)
        .collect();
    ended.sort_unstable();
    ended
}

/// The line of a room gathering a pre-queue until [`OPENING`].
async fn gathering<S: Store>(store: &S) -> LineNo {
    room(store, "gala", Some(OPENING)).await.line()
}

// ---- Lines of several rooms. ----

pub async fn each_line_admits_ends_and_counts_only_its_own_tickets_and_a_user_may_wait_in_two_rooms<
    S: Store,
>() {
    let store = S::fresh().await;
    let queue = store.queue();
    let line = room(&store, "gala", None).await.line();
    let default = LineNo::DEFAULT;
    let (both, elsewhere, second, third) = (user(), user(), user(), user());

    let d1 = join_in(&*queue, both, default, NOW).await.ticket();
    let d2 = join_in(&*queue, elsewhere, default, NOW).await.ticket();
    let g1 = join_in(&*queue, both, line, NOW).await.ticket();
    let g2 = join_in(&*queue, second, line, NOW).await.ticket();
    let g3 = join_in(&*queue, third, line, NOW).await.ticket();
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
    let before = store.line_rows().await;
    assert_eq!(
        queue.save_join(&again).await.expect("save_join"),
        Written::Stale
    );
    assert_eq!(store.line_rows().await, before, "nothing written");
    assert_eq!(
        queue.load_live(elsewhere, line).await.expect("load").ticket,
        None,
        "a place in one room is none in another"
    );

    // A step of the room admits its own oldest; the default line's tickets stay waiting.
    let report = step(&store, line, policy(1), NOW).await;
    assert_eq!(
        (report.admitted, report.expired, report.serving.get()),
        (1, 0, g1.get())
    );
    assert_eq!(status(&store, g1).await, TicketStatus::Active);
    assert_eq!(status(&store, d1).await, TicketStatus::Waiting);
    assert_eq!(counts_of(&store, line).await, (g1.get(), 1, 2, 1, 3, 0));
    assert_eq!(counts_of(&store, default).await, (0, 0, 2, 0, 2, 0));

    // The default line's step admits its own first, though its user is active in the room.
    let report = step(&store, default, policy(1), NOW).await;
    assert_eq!((report.admitted, report.serving.get()), (1, 1));
    assert_eq!(status(&store, d1).await, TicketStatus::Active);
    assert_eq!(counts_of(&store, line).await, (g1.get(), 1, 2, 1, 3, 0));

    // Both active tickets are overdue later; each line's step ends only its own.
    let later = NOW + Duration::minutes(11);
    let report = step(&store, default, policy(1), later).await;
    assert_eq!(
        (report.expired, report.admitted, report.serving.get()),
        (1, 1, 2)
    );
    assert_eq!(
        status(&store, g1).await,
        TicketStatus::Active,
        "another line's ticket"
    );
    assert_eq!(ended_since(&store, default).await, vec![d1]);
    assert_eq!(ended_since(&store, line).await, Vec::<TicketNo>::new());
    assert_eq!(counts_of(&store, default).await, (2, 2, 0, 1, 2, 0));
    assert_eq!(counts_of(&store, line).await, (g1.get(), 1, 2, 1, 3, 0));

    let report = step(&store, line, policy(1), later).await;
    assert_eq!(
        (report.expired, report.admitted, report.serving.get()),
        (1, 1, g2.get())
    );
    assert_eq!(ended_since(&store, line).await, vec![g1]);
    assert_eq!(ended_since(&store, default).await, vec![d1]);
    assert_eq!(status(&store, g2).await, TicketStatus::Active);
    assert_eq!(status(&store, d2).await, TicketStatus::Active);
    assert_eq!(counts_of(&store, line).await, (g2.get(), 2, 1, 1, 3, 0));
    assert_eq!(counts_of(&store, default).await, (2, 2, 0, 1, 2, 0));

    // A user leaving the room's line while waiting is listed above its serving counter only.
    let end = TicketEnd {
        ticket: g3,
        read_as: TicketStatus::Waiting,
        reason: EndReason::Left,
    };
    assert_eq!(
        queue.end(&end, later).await.expect("end"),
        Written::Done(())
    );
    let left = queue
        .ended_waiting(ServingCounter::new(g2.get()))
        .await
        .expect("ended waiting");
    assert_eq!(
        left.iter()
            .map(|e| (e.ticket, e.reason))
            .collect::<Vec<_>>(),
        vec![(g3, Some(EndReason::Left))]
    );
    assert!(
        queue
            .ended_waiting(ServingCounter::new(2))
            .await
            .expect("ended waiting")
            .is_empty(),
        "another line's"
    );
    assert_eq!(counts_of(&store, line).await, (g2.get(), 2, 0, 1, 3, 0));
    store.finish().await;
}

// ---- Pre-queues and openings. ----

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

pub async fn the_pre_queue_gets_the_first_places_in_the_order_the_opening_rules_return_once_then_joins_go_to_the_line<
    S: Store,
>() {
    let store = S::fresh().await;
    let queue = store.queue();
    let line = gathering(&store).await;
    let (a, b, c, d, e) = (user(), user(), user(), user(), user());

    let mut entries = Vec::new();
    for (i, who) in [a, b, c, d].into_iter().enumerate() {
        let at = NOW + Duration::seconds(i64::try_from(i).expect("small"));
        let entry = entry_for(&*queue, who, line, at).await;
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
    assert_eq!(entries[0].entry.get(), line.pre_queue_start() + 1);
    let [ea, eb, ec, ed] = [entries[0], entries[1], entries[2], entries[3]];

    // The same user again: no second entry; the one they hold loads back.
    let before = store.line_rows().await;
    assert_eq!(pre_join(&*queue, a, line, NOW).await, PreQueueJoined::Stale);
    assert_eq!(store.line_rows().await, before, "nothing written");
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
        counts_of(&store, line).await,
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
    let before = store.line_rows().await;
    assert_eq!(
        queue
            .end_pre_queue(ec.entry, a, EndReason::Left, left_at)
            .await
            .expect("end"),
        PreQueueEnd::Missing
    );
    assert_eq!(store.line_rows().await, before, "nothing written");
    assert_eq!(queue.load_pre_queue(c, line).await.expect("load"), Some(ec));
    assert_eq!(queue.load_pre_queue(b, line).await.expect("load"), None);
    assert_eq!(counts_of(&store, line).await.5, 3);
    assert_eq!(
        queue.pre_queue_outcomes(line).await.expect("outcomes"),
        vec![PreQueueOutcome {
            entry: eb.entry,
            place: None,
            ended: Some(EndReason::Left)
        }]
    );

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
    assert!(
        queue
            .pre_queue_outcomes(LineNo::DEFAULT)
            .await
            .expect("outcomes")
            .is_empty()
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
        counts_of(&store, line).await,
        (line.start().get(), 0, 3, 0, 3, 0)
    );
    // The room is marked opened, once, with its version moved.
    let gala = store
        .rooms()
        .list()
        .await
        .expect("list")
        .into_iter()
        .find(|room| room.value.line() == line)
        .expect("the room");
    assert_eq!(gala.value.opening().map(|o| o.done), Some(true));
    assert_eq!(gala.version, Version::new(2));

    // Once: a second opening is stale, asks the rules nothing and writes nothing.
    let before = store.line_rows().await;
    let again = Reversed::default();
    assert_eq!(
        queue.open_line(line, OPENING, &again).await.expect("open"),
        Written::Stale
    );
    assert_eq!(again.shown(), Vec::<TicketNo>::new());
    assert_eq!(store.line_rows().await, before, "nothing written");

    // Later joins go to the line (no entry after the opening), after every placed one, and the
    // placed come first.
    for who in [e, b, a] {
        assert_eq!(
            pre_join(&*queue, who, line, OPENING).await,
            PreQueueJoined::Opened
        );
    }
    assert_eq!(store.line_rows().await, before, "nothing written");
    assert_eq!(
        join_in(&*queue, e, line, OPENING).await.ticket(),
        place(line, 4)
    );
    let report = step(&store, line, policy(1), OPENING).await;
    assert_eq!(
        (report.admitted, report.serving.get()),
        (1, place(line, 1).get())
    );
    assert_eq!(status(&store, place(line, 1)).await, TicketStatus::Active);
    store.finish().await;
}

pub async fn a_pre_queue_join_on_a_line_with_no_room_is_sent_to_the_line_and_writes_nothing<
    S: Store,
>() {
    let store = S::fresh().await;
    let queue = store.queue();
    let roomless = LineNo::new(1).expect("line 1");
    let before = store.line_rows().await;
    assert_eq!(
        pre_join(&*queue, user(), roomless, NOW).await,
        PreQueueJoined::Opened
    );
    assert_eq!(store.line_rows().await, before, "nothing written");
    assert_eq!(
        queue
            .open_line(roomless, NOW, &Reversed::default())
            .await
            .expect("open"),
        Written::Stale,
        "no room to open"
    );
    assert_eq!(store.line_rows().await, before, "nothing written");
    store.finish().await;
}

pub async fn an_opening_with_an_empty_pre_queue_places_nobody_and_the_line_numbers_from_its_start<
    S: Store,
>() {
    let store = S::fresh().await;
    let queue = store.queue();
    let line = gathering(&store).await;

    assert_eq!(
        queue
            .open_line(line, OPENING, &Reversed::default())
            .await
            .expect("open"),
        Written::Done(0)
    );
    assert_eq!(
        pre_join(&*queue, user(), line, OPENING).await,
        PreQueueJoined::Opened
    );
    assert_eq!(
        join_in(&*queue, user(), line, OPENING).await.ticket(),
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
        join_in(&*queue, user(), line, OPENING).await.ticket(),
        place(line, 2)
    );
    store.finish().await;
}

/// Opening rules that place an entry that is no longer live (its user left before; a decision
/// on entries not as stored).
struct WithAnEndedEntry(PreQueueEntry);

impl OpeningRules for WithAnEndedEntry {
    fn order(&self, mut arrivals: Vec<PreQueueEntry>) -> Vec<PreQueueEntry> {
        arrivals.push(self.0);
        arrivals
    }
}

/// An opening that places an entry not live is stale and writes nothing, the room included.
pub async fn an_opening_placing_an_entry_not_live_is_stale_and_writes_nothing<S: Store>() {
    let store = S::fresh().await;
    let queue = store.queue();
    let line = gathering(&store).await;
    let stays = entry_for(&*queue, user(), line, NOW).await;
    let leaver = user();
    let gone = entry_for(&*queue, leaver, line, NOW).await;
    assert_eq!(
        queue
            .end_pre_queue(gone.entry, leaver, EndReason::Left, NOW)
            .await
            .expect("end"),
        PreQueueEnd::Ended
    );
    let before = store.line_rows().await;
    assert_eq!(
        queue
            .open_line(line, OPENING, &WithAnEndedEntry(gone))
            .await
            .expect("open"),
        Written::Stale
    );
    assert_eq!(store.line_rows().await, before, "nothing written");

    // The next opening decides again.
    assert_eq!(
        queue
            .open_line(line, OPENING, &Reversed::default())
            .await
            .expect("open"),
        Written::Done(1)
    );
    assert_eq!(
        queue
            .load_live(stays.user, line)
            .await
            .expect("load")
            .ticket
            .map(|t| t.ticket()),
        Some(place(line, 1))
    );
    store.finish().await;
}

pub async fn of_ten_openings_of_one_room_at_once_exactly_one_places_the_pre_queue<S: Store>() {
    const OPENINGS: usize = 10;
    const WAITING: i64 = 20;
    let store = shared::<S>().await;
    let line = gathering(&*store).await;
    for _ in 0..WAITING {
        entry_for(&*store.queue(), user(), line, NOW).await;
    }

    let results = race(OPENINGS, |_| {
        let queue = store.queue();
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
    // One set of places: the line's first, each once, and no other ticket.
    assert_eq!(
        store.ticket_numbers().await,
        (1..=WAITING).map(|n| place(line, n)).collect::<Vec<_>>()
    );
    let start = line.start().get();
    assert_eq!(counts_of(&*store, line).await, (start, 0, 20, 0, 20, 0));
    assert_eq!(
        join_in(&*store.queue(), user(), line, OPENING)
            .await
            .ticket(),
        place(line, WAITING + 1)
    );
    finish(store).await;
}

/// Opening rules that, while the opening holds the line (between its read of the entries and
/// its write of the places), start ending one entry, as its user leaving on another instance
/// would; the leave is kept to be awaited after the opening.
struct LeavingMeanwhile {
    queue: Arc<dyn QueueRepository>,
    entry: PreQueueEntry,
    leave: Mutex<Option<tokio::task::JoinHandle<PreQueueEnd>>>,
}

impl OpeningRules for LeavingMeanwhile {
    fn order(&self, arrivals: Vec<PreQueueEntry>) -> Vec<PreQueueEntry> {
        let (queue, entry) = (Arc::clone(&self.queue), self.entry);
        let leave = tokio::spawn(async move {
            queue
                .end_pre_queue(entry.entry, entry.user, EndReason::Left, OPENING)
                .await
                .expect("end")
        });
        *self.leave.lock().expect("lock") = Some(leave);
        // Long enough for the leave to reach the store (the entry's row lock).
        std::thread::sleep(StdDuration::from_millis(100));
        arrivals
    }
}

pub async fn an_entry_ending_while_the_opening_orders_the_pre_queue_waits_and_finds_its_place<
    S: Store,
>() {
    let store = S::fresh().await;
    let queue = store.queue();
    let line = gathering(&store).await;
    let (stays, leaves) = (user(), user());
    let kept = entry_for(&*queue, stays, line, NOW).await;
    let gone = entry_for(&*queue, leaves, line, NOW).await;

    let rules = LeavingMeanwhile {
        queue: Arc::clone(&queue),
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
    // The leave waited for the opening: it ended nothing. Behind the one writer it learns the
    // place at once; elsewhere it may be told to ask again (as the use case does on Stale).
    if S::ONE_WRITER {
        assert_eq!(first, PreQueueEnd::Placed(place(line, 2)));
    } else {
        assert!(
            matches!(first, PreQueueEnd::Stale | PreQueueEnd::Placed(_)),
            "{first:?}"
        );
    }
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
    assert_eq!(count_in(&store, TicketStatus::Waiting).await, 2);
    store.finish().await;
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

pub async fn pre_queue_joins_racing_the_opening_each_get_a_place_or_a_number_after_every_placed_one<
    S: Store,
>() {
    const USERS: usize = 200;
    let store = shared::<S>().await;
    let line = gathering(&*store).await;
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
        let queue = store.queue();
        let who = users.get(i).copied();
        async move {
            let Some(who) = who else {
                while finished.load(Ordering::SeqCst) < USERS / 2 {
                    tokio::time::sleep(StdDuration::from_millis(1)).await;
                }
                stage.send_replace(STARTED);
                return match queue.open_line(line, OPENING, &*rules).await.expect("open") {
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
            let outcome = match pre_join(&*queue, who, line, NOW).await {
                PreQueueJoined::Done(entry) => Outcome::Entry(entry),
                PreQueueJoined::Opened => {
                    Outcome::Drawn(join_in(&*queue, who, line, OPENING).await)
                }
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
    assert!(
        drawn.len() >= USERS / 4,
        "the last quarter came while it held the line"
    );

    // The places are the line's first, in exactly the order the rules returned; every entry
    // stored is one a join was given (the outcomes list every placed or ended entry, and the
    // snapshot below counts no entry left without a place).
    let returned = rules.returned.lock().expect("returned").clone();
    let mut given: Vec<TicketNo> = entries.iter().map(|e| e.entry).collect();
    given.sort_unstable();
    let mut shown = returned.clone();
    shown.sort_unstable();
    assert_eq!(shown, given, "the rules were shown every entry given");
    let places: HashMap<TicketNo, Option<TicketNo>> = store
        .queue()
        .pre_queue_outcomes(line)
        .await
        .expect("outcomes")
        .into_iter()
        .map(|outcome| {
            assert_eq!(outcome.ended, None, "nobody left");
            (outcome.entry, outcome.place)
        })
        .collect();
    assert_eq!(places.len(), entries.len());
    for (n, entry) in returned.iter().enumerate() {
        let n = i64::try_from(n).expect("small") + 1;
        assert_eq!(
            places.get(entry),
            Some(&Some(place(line, n))),
            "entry {entry}"
        );
    }
    for entry in &entries {
        let live = store
            .queue()
            .load_live(entry.user, line)
            .await
            .expect("load");
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
        store.ticket_numbers().await,
        (1..=all).map(|n| place(line, n)).collect::<Vec<_>>()
    );
    assert_eq!(count_in(&*store, TicketStatus::Waiting).await, USERS);
    assert_eq!(
        counts_of(&*store, line).await,
        (start, 0, all_u64, 0, all_u64, 0)
    );
    finish(store).await;
}
