//! How long the records that only serve late reads are kept: an idempotency key answers retries
//! of its request, an ended queue ticket answers its token's status (`EXPIRED`). Past their
//! retention they only take space, and a background job purges them.

use time::{Duration, OffsetDateTime};

/// Retention periods, each at least [`RetentionPolicy::MINIMUM`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    idempotency_keys: Duration,
    ended_tickets: Duration,
}

/// The instants before which records may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cutoffs {
    /// Idempotency keys stored before this no longer replay: a retry with such a key is a new
    /// request.
    pub idempotency_keys: OffsetDateTime,
    /// Tickets ended before this are forgotten: their token reads as unknown (`TOKEN_INVALID`)
    /// rather than `TOKEN_EXPIRED`.
    pub ended_tickets: OffsetDateTime,
}

impl RetentionPolicy {
    /// Shorter periods would purge records a client may still reasonably ask about.
    pub const MINIMUM: Duration = Duration::hours(1);

    /// `None` when a period is shorter than [`Self::MINIMUM`].
    pub fn new(idempotency_keys: Duration, ended_tickets: Duration) -> Option<Self> {
        (idempotency_keys >= Self::MINIMUM && ended_tickets >= Self::MINIMUM).then_some(Self {
            idempotency_keys,
            ended_tickets,
        })
    }

    pub fn cutoffs(&self, now: OffsetDateTime) -> Cutoffs {
        Cutoffs {
            idempotency_keys: now - self.idempotency_keys,
            ended_tickets: now - self.ended_tickets,
        }
    }
}

impl Default for RetentionPolicy {
    /// Seven days of replays, one day of `EXPIRED` answers.
    fn default() -> Self {
        Self {
            idempotency_keys: Duration::days(7),
            ended_tickets: Duration::days(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const NOW: OffsetDateTime = datetime!(2030-06-01 12:00 UTC);

    #[test]
    fn cutoffs_lie_one_period_before_now() {
        let policy = RetentionPolicy::new(Duration::days(7), Duration::hours(6)).expect("valid");

        assert_eq!(
            policy.cutoffs(NOW),
            Cutoffs {
                idempotency_keys: datetime!(2030-05-25 12:00 UTC),
                ended_tickets: datetime!(2030-06-01 06:00 UTC),
            }
        );
    }

    #[test]
    fn periods_shorter_than_an_hour_are_refused() {
        let short = Duration::minutes(59);
        assert_eq!(RetentionPolicy::new(short, Duration::days(1)), None);
        assert_eq!(RetentionPolicy::new(Duration::days(1), short), None);
        assert!(RetentionPolicy::new(Duration::hours(1), Duration::hours(1)).is_some());
    }

    #[test]
    fn the_default_keeps_keys_a_week_and_ended_tickets_a_day() {
        assert_eq!(
            RetentionPolicy::default().cutoffs(NOW),
            Cutoffs {
                idempotency_keys: NOW - Duration::days(7),
                ended_tickets: NOW - Duration::days(1),
            }
        );
    }
}
