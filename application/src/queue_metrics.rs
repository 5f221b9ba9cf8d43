//! The lines' counters, recorded where each decision is written (a facade: the server installs
//! the Prometheus recorder; without one they cost nothing). Each carries the room it counts in.

use concert_domain::{EndReason, RoomId};

/// `queue_tickets_ended_total{room, reason}`: tickets ended, by why.
pub(crate) fn tickets_ended(room: &RoomId, reason: EndReason, count: u64) {
    if count > 0 {
        metrics::counter!(
            "queue_tickets_ended_total",
            "room" => room.as_str().to_owned(),
            "reason" => reason.as_str()
        )
        .increment(count);
    }
}

/// `queue_admissions_total{room}`: waiting tickets made active.
pub(crate) fn admitted(room: &RoomId, count: u64) {
    if count > 0 {
        metrics::counter!("queue_admissions_total", "room" => room.as_str().to_owned())
            .increment(count);
    }
}
