//! The line's counters, recorded where each decision is written (a facade: the server installs
//! the Prometheus recorder; without one they cost nothing). Each carries the room it counts in;
//! one room, `default`, runs today.

use concert_domain::{EndReason, RoomId};

/// `queue_tickets_ended_total{room, reason}`: tickets ended, by why.
pub(crate) fn tickets_ended(reason: EndReason, count: u64) {
    if count > 0 {
        metrics::counter!(
            "queue_tickets_ended_total",
            "room" => RoomId::DEFAULT,
            "reason" => reason.as_str()
        )
        .increment(count);
    }
}

/// `queue_admissions_total{room}`: waiting tickets made active.
pub(crate) fn admitted(count: u64) {
    if count > 0 {
        metrics::counter!("queue_admissions_total", "room" => RoomId::DEFAULT).increment(count);
    }
}
