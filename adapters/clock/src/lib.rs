//! The wall clock of this machine, in UTC. The server does not trust it alone: `PgClock` (in the
//! PostgreSQL adapter) adds the measured offset to the database's clock, so instances on machines
//! whose clocks drift apart still agree on every deadline.

use concert_application::ports::Clock;
use time::OffsetDateTime;

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
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
}
