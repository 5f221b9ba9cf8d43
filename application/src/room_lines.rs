//! This instance's waiting rooms: each room's settings as last read from the store, a view of
//! each room's line (so that a waiting poll in any room needs no database round trip), and which
//! room guards each concert. The admission job reads the rooms again on every step, so an
//! operator's change or a new room reaches every instance within a step.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use concert_domain::queue::AccessRefused;
use concert_domain::{ConcertId, LineNo, QueuePolicy, Room, RoomGuards, RoomId, TicketNo};

use crate::locked;
use crate::ports::QueueRepository;
use crate::queue_view::QueueView;

/// Shared by the use cases and the jobs; cheap to clone.
#[derive(Clone)]
pub struct RoomLines {
    queue: Arc<dyn QueueRepository>,
    policy: QueuePolicy,
    state: Arc<RwLock<LinesState>>,
}

#[derive(Default)]
struct LinesState {
    views: HashMap<LineNo, QueueView>,
    lines: HashMap<RoomId, LineNo>,
    guards: RoomGuards,
}

impl std::fmt::Debug for RoomLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state();
        f.debug_struct("RoomLines")
            .field("rooms", &state.lines.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl From<QueueView> for RoomLines {
    /// The rooms of an instance that knows only the `default` room, seen through `view`.
    fn from(view: QueueView) -> Self {
        let state = LinesState {
            views: HashMap::from([(LineNo::DEFAULT, view.clone())]),
            lines: HashMap::from([(RoomId::default_room(), LineNo::DEFAULT)]),
            guards: RoomGuards::default(),
        };
        Self {
            queue: view.queue(),
            policy: view.deployment_policy(),
            state: Arc::new(RwLock::new(state)),
        }
    }
}

impl RoomLines {
    pub fn new(queue: Arc<dyn QueueRepository>, policy: QueuePolicy) -> Self {
        QueueView::new(queue, policy).into()
    }

    fn state(&self) -> std::sync::RwLockReadGuard<'_, LinesState> {
        locked::read(&self.state)
    }

    fn state_mut(&self) -> std::sync::RwLockWriteGuard<'_, LinesState> {
        locked::write(&self.state)
    }

    /// The `default` room's line.
    pub fn default_line(&self) -> QueueView {
        self.of_line(LineNo::DEFAULT)
    }

    /// The view of `line`; a line this instance has not read yet (a room created a moment ago)
    /// gets an empty view at once, filled by the next refresh.
    pub fn of_line(&self, line: LineNo) -> QueueView {
        if let Some(view) = self.state().views.get(&line) {
            return view.clone();
        }
        self.state_mut()
            .views
            .entry(line)
            .or_insert_with(|| QueueView::of_line(self.queue.clone(), self.policy, line))
            .clone()
    }

    /// The view of the line `ticket` waits in.
    pub fn of_ticket(&self, ticket: TicketNo) -> QueueView {
        self.of_line(ticket.line())
    }

    /// The view of a room's line; `None` for a room this instance has not read (yet).
    pub fn of_room(&self, room: &RoomId) -> Option<QueueView> {
        let line = *self.state().lines.get(room)?;
        Some(self.of_line(line))
    }

    /// Every line this instance follows, `default` first.
    pub fn views(&self) -> Vec<QueueView> {
        let mut views: Vec<QueueView> = self.state().views.values().cloned().collect();
        views.sort_by_key(QueueView::line);
        views
    }

    /// Records the rooms as just read from the store: each room's settings go to its line's
    /// view, and the concerts each guards replace the ones known.
    pub fn note_rooms(&self, rooms: &[Room]) {
        for room in rooms {
            self.of_line(room.line()).note_room(room.clone());
        }
        let mut state = self.state_mut();
        state.lines = rooms
            .iter()
            .map(|room| (room.id().clone(), room.line()))
            .chain([(RoomId::default_room(), LineNo::DEFAULT)])
            .collect();
        state.guards = RoomGuards::of(rooms);
    }

    /// Records one room as just read from the store (a room found by id before the next step).
    pub fn note_room(&self, room: &Room) {
        self.of_line(room.line()).note_room(room.clone());
        let mut state = self.state_mut();
        state.lines.insert(room.id().clone(), room.line());
        let rooms: Vec<Room> = state.views.values().filter_map(QueueView::room).collect();
        state.guards = RoomGuards::of(&rooms);
    }

    /// The id of the room whose line `ticket` waits in (`default` for a line not read yet).
    pub fn room_of(&self, ticket: TicketNo) -> RoomId {
        self.of_ticket(ticket)
            .room()
            .map_or_else(RoomId::default_room, |room| room.id().clone())
    }

    /// Whether an active `ticket` may act on `concert`, by the rooms as last read.
    pub fn admit(&self, ticket: TicketNo, concert: ConcertId) -> Result<(), AccessRefused> {
        self.state().guards.admit(ticket, concert)
    }
}
