//! Who may call the administration endpoints: the holders of the administrators' key, compared
//! in constant time. Wrong keys are logged and, past a few a minute, throttled on this instance;
//! every administration use case shares the one throttle.

use std::sync::{Arc, Mutex};

use subtle::ConstantTimeEq;
use time::{Duration, OffsetDateTime};

use crate::ports::Clock;

/// The administrators' shared secret (`ADMIN_API_KEY`); with none configured, nobody is admitted.
#[derive(Clone, Default)]
pub struct AdminKey(Option<String>);

impl AdminKey {
    pub fn new(key: Option<String>) -> Self {
        Self(key.filter(|key| !key.is_empty()))
    }

    /// Compares in constant time: how long it takes says nothing of where the first
    /// difference is.
    pub fn admits(&self, presented: Option<&str>) -> bool {
        let (Some(expected), Some(presented)) = (&self.0, presented) else {
            return false;
        };
        expected.as_bytes().ct_eq(presented.as_bytes()).into()
    }
}

/// Wrong admin keys this instance accepts per [`FAILURE_WINDOW`] before it stops looking at keys
/// until the window ends. A key of 16 bytes or more cannot be guessed at this pace; the limit
/// keeps a flood of guesses from filling the logs and the CPU. While it holds, the real key is
/// refused too (`429`, retry after the window), a minute at most.
pub const MAX_FAILED_ADMIN_ATTEMPTS: u32 = 10;
pub const FAILURE_WINDOW: Duration = Duration::minutes(1);

/// Failed admin attempts in the current window.
#[derive(Debug)]
struct Failures {
    window_start: OffsetDateTime,
    count: u32,
}

impl Failures {
    /// Seconds until keys are looked at again, while the window's failures are used up.
    fn throttled_for(&self, now: OffsetDateTime) -> Option<u64> {
        let ends = self.window_start + FAILURE_WINDOW;
        (self.count >= MAX_FAILED_ADMIN_ATTEMPTS && now < ends).then(|| {
            u64::try_from((ends - now).whole_seconds())
                .unwrap_or(0)
                .max(1)
        })
    }

    /// Counts one failure; returns how many the window holds now.
    fn record(&mut self, now: OffsetDateTime) -> u32 {
        if now >= self.window_start + FAILURE_WINDOW {
            self.window_start = now;
            self.count = 0;
        }
        self.count += 1;
        self.count
    }
}

impl std::fmt::Debug for AdminKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "AdminKey(set)"
        } else {
            "AdminKey(none)"
        })
    }
}

/// Why an administration call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AdminRefused {
    /// Missing or wrong (`401 ADMIN_KEY_INVALID`).
    #[error("the admin key is missing or wrong")]
    KeyInvalid,
    /// Too many wrong keys lately (`429 RATE_LIMITED`).
    #[error("too many wrong admin keys; retry in {retry_after_seconds} s")]
    Throttled { retry_after_seconds: u64 },
}

/// The administrators' key and this instance's throttle of wrong ones.
pub struct AdminAccess {
    key: AdminKey,
    clock: Arc<dyn Clock>,
    failures: Mutex<Failures>,
}

impl AdminAccess {
    pub fn new(key: AdminKey, clock: Arc<dyn Clock>) -> Self {
        Self {
            key,
            clock,
            failures: Mutex::new(Failures {
                window_start: OffsetDateTime::UNIX_EPOCH,
                count: 0,
            }),
        }
    }

    /// Whether `presented` is the administrators' key, without counting a failure.
    pub fn admits(&self, presented: Option<&str>) -> bool {
        self.key.admits(presented)
    }

    /// Lets the holder of the key through; counts and logs a wrong key, and refuses every key
    /// while the window's failures are used up.
    pub fn check(&self, presented: Option<&str>) -> Result<(), AdminRefused> {
        let now = self.clock.now();
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(retry_after_seconds) = failures.throttled_for(now) {
            return Err(AdminRefused::Throttled {
                retry_after_seconds,
            });
        }
        if !self.admits(presented) {
            let count = failures.record(now);
            tracing::warn!(
                presented = presented.is_some(),
                failures_in_window = count,
                "admin key refused"
            );
            return Err(AdminRefused::KeyInvalid);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::clock;

    #[test]
    fn only_the_configured_key_is_admitted_and_asking_counts_no_failure() {
        let access = AdminAccess::new(AdminKey::new(Some("s3cret-admin-key".to_owned())), clock());
        assert!(access.admits(Some("s3cret-admin-key")));
        for _ in 0..=MAX_FAILED_ADMIN_ATTEMPTS {
            assert!(!access.admits(Some("guess")));
        }
        assert!(!access.admits(None));
        assert_eq!(
            access.check(Some("s3cret-admin-key")),
            Ok(()),
            "not throttled"
        );
        let unconfigured = AdminAccess::new(AdminKey::new(None), clock());
        assert!(!unconfigured.admits(Some("")));
        assert_eq!(unconfigured.check(Some("")), Err(AdminRefused::KeyInvalid));
    }
}
