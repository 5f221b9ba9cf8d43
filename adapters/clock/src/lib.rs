//! What this machine gives the service: its wall clock, in UTC, and random numbers nobody can
//! predict.
//!
//! The server does not trust the clock alone: `PgClock` (in the PostgreSQL adapter) adds the
//! measured offset to the database's clock, so instances on machines whose clocks drift apart
//! still agree on every deadline.

use concert_application::ports::{Clock, SecureRandom};
use rand::RngExt as _;
use time::OffsetDateTime;

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// Uniform numbers from the thread's generator: a cryptographically secure one, seeded and
/// reseeded from the operating system, so a draw (the order of a pre-queue at a room's
/// opening) can be neither predicted nor replayed.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemRandom;

impl SecureRandom for SystemRandom {
    fn below(&self, n: u64) -> u64 {
        rand::rng().random_range(0..n.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_clock_reads_utc_and_moves_forward() {
        let first = SystemClock.now();
        let second = SystemClock.now();
        assert_eq!(first.offset(), time::UtcOffset::UTC);
        assert!(second >= first);
    }

    #[test]
    fn draws_stay_below_the_bound_and_reach_every_value() {
        let mut seen = [0_u32; 6];
        for _ in 0..6_000 {
            let drawn = SystemRandom.below(6);
            seen[usize::try_from(drawn).expect("small")] += 1;
        }
        // Each value is expected 1,000 times; 700 is over 9 standard deviations away.
        assert!(seen.iter().all(|count| *count > 700), "{seen:?}");
        assert_eq!(SystemRandom.below(1), 0);
        assert_eq!(
            SystemRandom.below(0),
            0,
            "an empty range draws nothing harmful"
        );
    }
}
