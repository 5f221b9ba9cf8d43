//! How values are stored: instants as INTEGER microseconds since the Unix epoch (UTC), user ids
//! as TEXT, and the conversions back, which refuse a value out of range as corrupt.

use concert_application::ports::RepositoryError;
use concert_domain::UserId;
use time::OffsetDateTime;

use crate::error::corrupt;

/// An instant as stored.
pub(crate) fn micros(at: OffsetDateTime) -> i64 {
    // i64 microseconds cover ±292,000 years; every instant the service handles fits.
    i64::try_from(at.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
}

/// A stored instant.
pub(crate) fn instant(micros: i64) -> Result<OffsetDateTime, RepositoryError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000).map_err(corrupt)
}

/// A stored optional instant.
pub(crate) fn instant_opt(micros: Option<i64>) -> Result<Option<OffsetDateTime>, RepositoryError> {
    micros.map(instant).transpose()
}

/// A user id as stored.
pub(crate) fn user_text(user: UserId) -> String {
    user.get().to_string()
}

/// A stored user id.
pub(crate) fn user_id(text: &str) -> Result<UserId, RepositoryError> {
    UserId::parse(text).map_err(corrupt)
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;
    use uuid::Uuid;

    use super::*;

    #[test]
    fn instants_keep_microseconds_both_ways() {
        let at = datetime!(2030-06-01 12:00:00.123456 UTC);
        assert_eq!(instant(micros(at)).expect("instant"), at);
        assert_eq!(micros(OffsetDateTime::UNIX_EPOCH), 0);
    }

    #[test]
    fn a_user_id_round_trips_and_garbage_is_corrupt() {
        let user = UserId::from_uuid(Uuid::new_v4());
        assert_eq!(user_id(&user_text(user)).expect("user"), user);
        assert!(user_id("not-a-uuid").is_err());
    }
}
