//! How to reach the database and how patient to be with it.

use std::fmt;
use std::time::Duration;

/// Settings of the connection pool. [`PgConfig::new`] gives production defaults that fail fast
/// when the database is down (2 s to connect, 2 s to wait for a free connection).
#[derive(Clone, PartialEq, Eq)]
pub struct PgConfig {
    /// A `postgres://` URL (or a `key=value` connection string).
    pub url: String,
    /// Connections the pool opens at most.
    pub max_connections: usize,
    /// How long a request waits for a free pooled connection before `Unavailable`.
    pub acquire_timeout: Duration,
    /// How long opening one connection (TCP, authentication, session setup) may take.
    pub connect_timeout: Duration,
    /// `SET statement_timeout` on every new connection: no statement runs longer.
    pub statement_timeout: Duration,
    /// `SET application_name`, so `pg_stat_activity` shows who is who.
    pub application_name: String,
}

impl PgConfig {
    pub const DEFAULT_MAX_CONNECTIONS: usize = 16;
    pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
    pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);
    pub const DEFAULT_APPLICATION_NAME: &'static str = "concert-booking";

    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            acquire_timeout: Self::DEFAULT_ACQUIRE_TIMEOUT,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            statement_timeout: Self::DEFAULT_STATEMENT_TIMEOUT,
            application_name: Self::DEFAULT_APPLICATION_NAME.to_owned(),
        }
    }

    /// The URL with its password hidden, for logs.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }
}

impl fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConfig")
            .field("url", &self.redacted_url())
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .field("application_name", &self.application_name)
            .finish()
    }
}

/// Hides the password of a `scheme://user:password@host/...` URL and of a `password=...` pair.
pub(crate) fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        if let Some((userinfo, host)) = authority.rsplit_once('@')
            && let Some((user, _password)) = userinfo.split_once(':')
        {
            return format!("{scheme}://{user}:***@{host}{tail}");
        }
        return url.to_owned();
    }
    url.split_whitespace()
        .map(|pair| {
            if pair.starts_with("password=") {
                "password=***".to_owned()
            } else {
                pair.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_the_logs() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/concert?sslmode=disable"),
            "postgres://app:***@db:5432/concert?sslmode=disable"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1/x"),
            "postgres://postgres@127.0.0.1/x"
        );
        assert_eq!(
            redact_url("host=db password=s3cret dbname=x"),
            "host=db password=*** dbname=x"
        );
        let config = PgConfig::new("postgres://a:b@h/d");
        assert!(!format!("{config:?}").contains(":b@"));
    }
}
