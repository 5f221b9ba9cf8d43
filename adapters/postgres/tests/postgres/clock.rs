//! `PgClock`: the instances' time follows the database's, whatever their own clocks say.

use std::sync::Arc;

use concert_application::ports::Clock;
use concert_postgres::PgClock;
use time::{Duration, OffsetDateTime};

use crate::support::Ctx;

/// A machine clock that is wrong by a fixed amount.
struct DriftingClock(Duration);

impl Clock for DriftingClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + self.0
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_drifting_machine_clock_is_brought_to_the_database_time() {
    let ctx = Ctx::new().await;
    // One instance an hour fast, another ten minutes slow.
    for drift in [Duration::hours(1), Duration::minutes(-10)] {
        let clock = PgClock::new(ctx.pool.clone(), Arc::new(DriftingClock(drift)));
        assert_eq!(
            clock.offset(),
            Duration::ZERO,
            "uncalibrated: the machine's time"
        );
        let offset = clock.calibrate().await.expect("calibrate");
        assert!(
            (offset + drift).abs() < Duration::seconds(1),
            "offset {offset} should undo a drift of {drift}"
        );
        // The database runs on this machine, so its time is this machine's true time.
        let error = clock.now() - OffsetDateTime::now_utc();
        assert!(
            error.abs() < Duration::seconds(1),
            "{error} off the database time"
        );
    }
    ctx.finish().await;
}
