//! Advisory lock keys. PostgreSQL's two-`int4` form keeps each purpose in its own namespace (the
//! first key), with `hashtext(...)` of the subject as the second key. A hash collision between two
//! subjects only serialises them; it never lets two holders of one subject in at once.

/// The queue as a whole, second key 0: shared by every ticket issue, exclusive for admission.
pub(crate) const QUEUE: i32 = 0x4353_0004;
/// Migrations at start-up, second key 0 (session-level, on a one-off connection).
pub(crate) const MIGRATIONS: i32 = 0x4353_0005;
/// Creating the test template database (session-level, on the maintenance database).
#[cfg(feature = "test-support")]
pub(crate) const TEST_TEMPLATE: i32 = 0x4353_0006;
