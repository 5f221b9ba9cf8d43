//! The wall clock of this machine, in UTC. Instances of one deployment are expected to run with
//! synchronised clocks (NTP); a few milliseconds of drift only shift hold and token deadlines by
//! as much, and never break a guarantee: the seat claim itself prevents a double sale.

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
