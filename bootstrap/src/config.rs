//! Configuration: every setting of docs/API.md section 8 as an environment variable with a
//! command-line flag of the same meaning, checked at start with a clear message.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use clap::{Parser, ValueEnum};
use concert_application::admin_access::AdminKey;
use concert_application::hold_seat::HoldSettings;
use concert_application::identify_caller::IdentityMode;
use concert_application::services::Settings;
use concert_domain::{HoldLimit, QueuePolicy, RetentionPolicy, WalletLimits};
use concert_postgres::PgConfig;
use time::Duration as Span;

/// A browser origin: `scheme://host[:port]`, nothing after it (a trailing `/` is dropped).
fn origin(raw: &str) -> Result<String, String> {
    let origin = raw.trim().trim_end_matches('/');
    let (scheme, rest) = origin
        .split_once("://")
        .ok_or_else(|| format!("{origin:?} is not an origin like https://tickets.example"))?;
    if !["http", "https"].contains(&scheme)
        || rest.is_empty()
        || rest.contains(['/', '?', '#', ' '])
    {
        return Err(format!(
            "{origin:?} is not an origin like https://tickets.example"
        ));
    }
    Ok(origin.to_owned())
}

/// A secret setting, held so that it never prints.
fn secret(raw: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(raw.into())
}

/// A secret file's content without the line break editors and `echo` leave at its end.
pub fn read_secret_file(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context as _;
    let mut bytes = std::fs::read(path)
        .with_context(|| format!("reading the secret file {}", path.display()))?;
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    Ok(bytes)
}

/// Who vouches for the user a join or a points request names (`IDENTITY_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IdentityModeSetting {
    /// The user id as the request sends it (development, or behind a gateway that authenticates).
    Trusted,
    /// A bearer JWT of the operator's identity system; its `sub` is the user.
    Jwt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line, for log shippers.
    Json,
}

/// The concert booking server: a fair waiting queue in front of seat holds and payments.
#[derive(Clone, Parser)]
#[command(name = "concert-server", version, about)]
pub struct Config {
    /// The store: `postgres://…` (any number of instances) or `sqlite://PATH` (the embedded
    /// store, one instance); created and migrated at start-up when missing. Unset: the embedded
    /// store `sqlite://concert.db` in the working directory.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,

    /// Where the waiting line lives, when not in the main database: `redis://host:port/db` (or
    /// `rediss://`, with a password if any). Bookings and money stay in the main database, which
    /// must then be PostgreSQL. Unset: the line lives in the main database.
    #[arg(long, env = "QUEUE_URL", hide_env_values = true, value_parser = secret)]
    pub queue_url: Option<SecretString>,

    /// The prefix of every Redis key of the line, so that several deployments can share a Redis.
    #[arg(long, env = "QUEUE_KEY_PREFIX", default_value = "concert:")]
    pub queue_key_prefix: String,

    /// How long one Redis command may take before the queue endpoints answer 503.
    #[arg(long, env = "QUEUE_COMMAND_TIMEOUT_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub queue_command_timeout_ms: u64,

    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "BIND_ADDR", default_value = "127.0.0.1:8080")]
    pub bind_addr: SocketAddr,

    /// Browser origins whose pages may call the API (CORS), comma-separated, e.g.
    /// `https://tickets.example`; none by default.
    #[arg(long, env = "CORS_ALLOWED_ORIGINS", value_delimiter = ',', value_parser = origin)]
    pub cors_allowed_origins: Vec<String>,

    /// Joins of the line per minute from one client address (0: no limit).
    #[arg(long, env = "JOIN_RATE_LIMIT_PER_ADDRESS", default_value_t = 0)]
    pub join_rate_limit_per_address: u32,

    /// Joins of the line per minute by one user (0: no limit).
    #[arg(long, env = "JOIN_RATE_LIMIT_PER_USER", default_value_t = 0)]
    pub join_rate_limit_per_user: u32,

    /// Proxies (IP addresses, comma-separated) whose X-Forwarded-For names the client.
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<std::net::IpAddr>,

    /// Seconds a client has to send a request's headers; also the longest a keep-alive
    /// connection may sit idle between requests.
    #[arg(long, env = "HTTP_HEADER_TIMEOUT_SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub http_header_timeout_seconds: u64,

    /// Seconds a request may take from its headers to its answer (408 beyond).
    #[arg(long, env = "HTTP_REQUEST_TIMEOUT_SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub http_request_timeout_seconds: u64,

    /// Seconds a request body may take to arrive (408 beyond).
    #[arg(long, env = "HTTP_BODY_TIMEOUT_SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub http_body_timeout_seconds: u64,

    /// Event streams (`GET /v1/queue/events`) open at once on this instance; 503 beyond.
    #[arg(long, env = "QUEUE_EVENT_STREAMS_MAX", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    pub queue_event_streams_max: u64,

    /// Connections open at once on BIND_ADDR; default: the open-files limit less 128.
    #[arg(long, env = "MAX_CONNECTIONS", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: Option<u64>,

    /// A directory with the operator's own waiting page (`index.html`, and files under
    /// `assets/` served at `/assets/`) in place of the embedded one.
    #[arg(long, env = "PAGES_DIR")]
    pub pages_dir: Option<PathBuf>,

    /// A separate address for `/health/*` and `/metrics`, which then leave BIND_ADDR.
    #[arg(long, env = "OPS_BIND_ADDR")]
    pub ops_bind_addr: Option<SocketAddr>,

    /// A file holding DATABASE_URL (as container platforms pass secrets); it wins over it.
    #[arg(long, env = "DATABASE_URL_FILE")]
    pub database_url_file: Option<PathBuf>,

    /// Key for signing queue tokens; every instance of one deployment shares it.
    #[arg(long, env = "TOKEN_SECRET", hide_env_values = true, value_parser = secret)]
    pub token_secret: Option<SecretString>,

    /// Keys whose tokens still verify besides TOKEN_SECRET's, comma-separated: the previous key
    /// after a rotation, or the next one while instances switch to it.
    #[arg(long, env = "TOKEN_VERIFY_SECRETS", hide_env_values = true, value_delimiter = ',', value_parser = secret)]
    pub token_verify_secrets: Vec<SecretString>,

    /// A file holding TOKEN_SECRET (instead of it).
    #[arg(long, env = "TOKEN_SECRET_FILE")]
    pub token_secret_file: Option<PathBuf>,

    /// Bearer key of the admin endpoint; without it the endpoint answers 401 to everyone.
    #[arg(long, env = "ADMIN_API_KEY", hide_env_values = true, value_parser = secret)]
    pub admin_api_key: Option<SecretString>,

    /// A file holding ADMIN_API_KEY (instead of it).
    #[arg(long, env = "ADMIN_API_KEY_FILE")]
    pub admin_api_key_file: Option<PathBuf>,

    /// Tokens active at once.
    #[arg(long, env = "QUEUE_MAX_ACTIVE", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub queue_max_active: u32,

    /// How long a token stays active after admission.
    #[arg(long, env = "QUEUE_ACTIVE_TTL_SECONDS", default_value_t = 600, value_parser = clap::value_parser!(u32).range(1..=86_400))]
    pub queue_active_ttl_seconds: u32,

    /// An active token with no request for this long ends.
    #[arg(long, env = "QUEUE_IDLE_TIMEOUT_SECONDS", default_value_t = 120, value_parser = clap::value_parser!(u32).range(1..=86_400))]
    pub queue_idle_timeout_seconds: u32,

    /// Seat hold length.
    #[arg(long, env = "HOLD_TTL_SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..=86_400))]
    pub hold_ttl_seconds: u32,

    /// Live holds one user may have at once.
    #[arg(long, env = "MAX_HOLDS_PER_USER", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_holds_per_user: u32,

    /// Largest single charge, in won.
    #[arg(long, env = "MAX_CHARGE_AMOUNT", default_value_t = 10_000_000, value_parser = clap::value_parser!(i64).range(1..))]
    pub max_charge_amount: i64,

    /// Largest balance a wallet may reach, in won.
    #[arg(long, env = "MAX_BALANCE", default_value_t = 1_000_000_000, value_parser = clap::value_parser!(i64).range(1..))]
    pub max_balance: i64,

    /// Create a few concerts with future dates when the database has none.
    #[arg(long, env = "DEMO_DATA", default_value_t = false, action = clap::ArgAction::Set)]
    pub demo_data: bool,

    /// Log line format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,

    /// Database connections per instance.
    #[arg(long, env = "DATABASE_POOL_SIZE", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub database_pool_size: u32,

    /// Milliseconds between admission steps of this instance.
    #[arg(long, env = "ADMISSION_INTERVAL_MS", default_value_t = 250, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub admission_interval_ms: u64,

    /// Seconds to finish in-flight requests after SIGTERM/SIGINT.
    #[arg(long, env = "SHUTDOWN_GRACE_SECONDS", default_value_t = 20)]
    pub shutdown_grace_seconds: u64,

    /// Hours an idempotency key replays its first answer; then a background job removes it.
    #[arg(long, env = "IDEMPOTENCY_KEY_RETENTION_HOURS", default_value_t = 168, value_parser = clap::value_parser!(u32).range(1..=87_600))]
    pub idempotency_key_retention_hours: u32,

    /// Hours an ended queue ticket still answers its token's status (`EXPIRED`).
    #[arg(long, env = "ENDED_TICKET_RETENTION_HOURS", default_value_t = 24, value_parser = clap::value_parser!(u32).range(1..=87_600))]
    pub ended_ticket_retention_hours: u32,

    /// Who vouches for the user that joining the line and the points endpoints name.
    #[arg(long, env = "IDENTITY_MODE", value_enum, default_value_t = IdentityModeSetting::Trusted)]
    pub identity_mode: IdentityModeSetting,

    /// `jwt` mode: the HS256 secret the identity system signs with (at least 32 bytes).
    #[arg(long, env = "IDENTITY_JWT_SECRET", hide_env_values = true, value_parser = secret)]
    pub identity_jwt_secret: Option<SecretString>,

    /// `jwt` mode: a file holding the HS256 secret (instead of IDENTITY_JWT_SECRET).
    #[arg(long, env = "IDENTITY_JWT_SECRET_FILE")]
    pub identity_jwt_secret_file: Option<PathBuf>,

    /// `jwt` mode: a JWKS file of RS256/ES256 public keys, read again whenever it changes.
    #[arg(long, env = "IDENTITY_JWKS_FILE")]
    pub identity_jwks_file: Option<PathBuf>,

    /// `jwt` mode: the `iss` every identity token must carry.
    #[arg(long, env = "IDENTITY_ISSUER")]
    pub identity_issuer: Option<String>,

    /// `jwt` mode: the `aud` every identity token must carry.
    #[arg(long, env = "IDENTITY_AUDIENCE")]
    pub identity_audience: Option<String>,

    /// `jwt` mode: seconds of clock difference allowed on `exp` and `nbf`.
    #[arg(long, env = "IDENTITY_CLOCK_SKEW_SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=300))]
    pub identity_clock_skew_seconds: u64,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field(
                "database_url",
                &PgConfig::new(self.store_url()).redacted_url(),
            )
            .field("queue_url", &self.queue_url.as_ref().map(|_| "<set>"))
            .field("queue_key_prefix", &self.queue_key_prefix)
            .field("bind_addr", &self.bind_addr)
            .field("ops_bind_addr", &self.ops_bind_addr)
            .field("cors_allowed_origins", &self.cors_allowed_origins)
            .field(
                "join_rate_limit_per_address",
                &self.join_rate_limit_per_address,
            )
            .field("join_rate_limit_per_user", &self.join_rate_limit_per_user)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("token_secret", &self.token_secret.as_ref().map(|_| "<set>"))
            .field("token_verify_secrets", &self.token_verify_secrets.len())
            .field(
                "admin_api_key",
                &self.admin_api_key.as_ref().map(|_| "<set>"),
            )
            .field("queue_max_active", &self.queue_max_active)
            .field("queue_active_ttl_seconds", &self.queue_active_ttl_seconds)
            .field(
                "queue_idle_timeout_seconds",
                &self.queue_idle_timeout_seconds,
            )
            .field("hold_ttl_seconds", &self.hold_ttl_seconds)
            .field("max_holds_per_user", &self.max_holds_per_user)
            .field("max_charge_amount", &self.max_charge_amount)
            .field("max_balance", &self.max_balance)
            .field("demo_data", &self.demo_data)
            .field("database_pool_size", &self.database_pool_size)
            .field("identity_mode", &self.identity_mode)
            .field(
                "identity_jwt_secret",
                &self.identity_jwt_secret.as_ref().map(|_| "<set>"),
            )
            .field("identity_jwks_file", &self.identity_jwks_file)
            .field("identity_issuer", &self.identity_issuer)
            .field("identity_audience", &self.identity_audience)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// The store's URL: `DATABASE_URL`, else the embedded store in the working directory.
    pub fn store_url(&self) -> &str {
        self.database_url
            .as_deref()
            .unwrap_or(crate::store::DEFAULT_STORE_URL)
    }

    /// Where the line lives when `QUEUE_URL` names a Redis.
    pub fn redis_line(&self) -> Option<concert_redis::RedisLineConfig> {
        self.queue_url
            .as_ref()
            .map(|url| concert_redis::RedisLineConfig {
                url: url.clone(),
                key_prefix: self.queue_key_prefix.clone(),
                command_timeout: Duration::from_millis(self.queue_command_timeout_ms),
            })
    }

    /// Checks what the flags' types cannot: relations between settings.
    pub fn validate(&self) -> Result<(), String> {
        let url = self.store_url();
        if !url.starts_with("postgres://")
            && !url.starts_with("postgresql://")
            && !concert_sqlite::Location::is_sqlite_url(url)
        {
            return Err("DATABASE_URL must be a postgres:// or a sqlite:// URL".into());
        }
        if let Some(queue_url) = &self.queue_url {
            let queue_url = queue_url.expose_secret();
            if !queue_url.starts_with("redis://") && !queue_url.starts_with("rediss://") {
                return Err("QUEUE_URL must be a redis:// or a rediss:// URL".into());
            }
            if concert_sqlite::Location::is_sqlite_url(url) {
                return Err(
                    "QUEUE_URL needs DATABASE_URL=postgres://…: the line on Redis serves \
                            several instances, the embedded store only one"
                        .into(),
                );
            }
        }
        if self.queue_key_prefix.is_empty() || self.queue_key_prefix.contains(['{', '}']) {
            return Err(
                "QUEUE_KEY_PREFIX must be non-empty and without braces (they make \
                        Redis Cluster hash tags)"
                    .into(),
            );
        }
        if self.max_charge_amount > self.max_balance {
            return Err("MAX_CHARGE_AMOUNT must not exceed MAX_BALANCE".into());
        }
        if self
            .token_secret
            .as_ref()
            .is_some_and(|secret| secret.expose_secret().len() < 16)
        {
            return Err("TOKEN_SECRET must be at least 16 bytes long".into());
        }
        if self
            .token_verify_secrets
            .iter()
            .any(|secret| secret.expose_secret().len() < 16)
        {
            return Err("each of TOKEN_VERIFY_SECRETS must be at least 16 bytes long".into());
        }
        if self
            .admin_api_key
            .as_ref()
            .is_some_and(|key| key.expose_secret().len() < 16)
        {
            return Err("ADMIN_API_KEY must be at least 16 bytes long".into());
        }
        if self.identity_mode == IdentityModeSetting::Jwt {
            if self.identity_jwt_secret.is_none()
                && self.identity_jwt_secret_file.is_none()
                && self.identity_jwks_file.is_none()
            {
                return Err("IDENTITY_MODE=jwt needs IDENTITY_JWT_SECRET(_FILE) or \
                            IDENTITY_JWKS_FILE"
                    .into());
            }
            if self.identity_issuer.as_deref().is_none_or(str::is_empty)
                || self.identity_audience.as_deref().is_none_or(str::is_empty)
            {
                return Err("IDENTITY_MODE=jwt needs IDENTITY_ISSUER and IDENTITY_AUDIENCE".into());
            }
        }
        Ok(())
    }

    /// Reads the secrets given as files (`*_FILE`) into their settings; a setting given both
    /// ways is an error. Run before [`Self::validate`].
    pub fn read_secret_files(&mut self) -> Result<(), String> {
        fn exclusive<T>(
            value: &Option<T>,
            file: &Option<PathBuf>,
            name: &str,
        ) -> Result<(), String> {
            if value.is_some() && file.is_some() {
                return Err(format!("set {name} or {name}_FILE, not both"));
            }
            Ok(())
        }
        exclusive(&self.token_secret, &self.token_secret_file, "TOKEN_SECRET")?;
        exclusive(
            &self.admin_api_key,
            &self.admin_api_key_file,
            "ADMIN_API_KEY",
        )?;
        exclusive(
            &self.identity_jwt_secret,
            &self.identity_jwt_secret_file,
            "IDENTITY_JWT_SECRET",
        )?;
        let read = |file: &PathBuf| -> Result<String, String> {
            let bytes = read_secret_file(file).map_err(|error| format!("{error:#}"))?;
            String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8 text", file.display()))
        };
        if let Some(file) = self.database_url_file.take() {
            self.database_url = Some(read(&file)?);
        }
        if let Some(file) = self.token_secret_file.take() {
            self.token_secret = Some(read(&file)?.into());
        }
        if let Some(file) = self.admin_api_key_file.take() {
            self.admin_api_key = Some(read(&file)?.into());
        }
        if let Some(file) = self.identity_jwt_secret_file.take() {
            self.identity_jwt_secret = Some(read(&file)?.into());
        }
        Ok(())
    }

    /// The business settings the use cases run with, `identity` built by [`crate::identity`].
    pub fn settings(&self, identity: IdentityMode) -> Settings {
        Settings {
            queue: QueuePolicy {
                max_active: self.queue_max_active,
                active_ttl: Span::seconds(self.queue_active_ttl_seconds.into()),
                idle_timeout: Span::seconds(self.queue_idle_timeout_seconds.into()),
                // A room's setting, read from the store by every admission step.
                waiting_idle: None,
            },
            holds: HoldSettings {
                ttl: Span::seconds(self.hold_ttl_seconds.into()),
                // The flag's range starts at 1, so the default is never taken.
                limit: HoldLimit::new(self.max_holds_per_user).unwrap_or(HoldLimit::DEFAULT),
            },
            wallet: WalletLimits {
                max_charge: self.max_charge_amount,
                max_balance: self.max_balance,
            },
            admin_key: AdminKey::new(
                self.admin_api_key
                    .as_ref()
                    .map(|key| key.expose_secret().to_owned()),
            ),
            identity,
            // Both settings' ranges start at one hour, the policy's minimum.
            retention: RetentionPolicy::new(
                Span::hours(self.idempotency_key_retention_hours.into()),
                Span::hours(self.ended_ticket_retention_hours.into()),
            )
            .unwrap_or_default(),
            most_status_watches: usize::try_from(self.queue_event_streams_max)
                .unwrap_or(usize::MAX),
        }
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_seconds)
    }

    /// The defaults of docs/API.md §8, for tests and embedding: as if no variable or flag were set.
    pub fn defaults() -> Self {
        Self::parse_from(["concert-server"])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_contract() {
        let config = Config::try_parse_from(["concert-server"]).expect("defaults parse");
        assert_eq!(config.bind_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(config.queue_max_active, 1000);
        assert_eq!(config.queue_active_ttl_seconds, 600);
        assert_eq!(config.queue_idle_timeout_seconds, 120);
        assert_eq!(config.hold_ttl_seconds, 300);
        assert_eq!(config.max_holds_per_user, 4);
        assert_eq!(config.max_charge_amount, 10_000_000);
        assert_eq!(config.max_balance, 1_000_000_000);
        assert!(!config.demo_data);
        assert!(config.validate().is_ok());
        assert!(config.token_secret.is_none() && config.token_verify_secrets.is_empty());
    }

    #[test]
    fn the_store_is_the_embedded_file_unless_database_url_names_another() {
        // Parsed flags would read DATABASE_URL from the environment: set the field itself.
        let unset = Config {
            database_url: None,
            ..Config::defaults()
        };
        assert_eq!(unset.store_url(), "sqlite://concert.db");
        unset.validate().expect("the default store is valid");
        for url in [
            "postgres://postgres@127.0.0.1:5432/concert",
            "postgresql://db/concert",
            "sqlite:///var/lib/concert/concert.db",
            "sqlite::memory:",
        ] {
            let config = Config {
                database_url: Some(url.to_owned()),
                ..Config::defaults()
            };
            assert_eq!(config.store_url(), url);
            config.validate().expect(url);
        }
        let other = Config {
            database_url: Some("mysql://db/concert".to_owned()),
            ..Config::defaults()
        };
        assert!(other.validate().is_err());
    }

    #[test]
    fn the_line_goes_to_redis_only_beside_postgresql_and_with_a_usable_prefix() {
        let with = |database: &str, queue: &str, prefix: &str| Config {
            database_url: Some(database.to_owned()),
            queue_url: Some(queue.to_owned().into()),
            queue_key_prefix: prefix.to_owned(),
            ..Config::defaults()
        };
        let pg = "postgres://postgres@127.0.0.1:5432/concert";
        assert_eq!(Config::defaults().queue_key_prefix, "concert:");
        with(pg, "redis://127.0.0.1:6379/0", "concert:")
            .validate()
            .expect("redis beside postgres");
        with(pg, "rediss://:secret@cache:6380/2", "shop-a:")
            .validate()
            .expect("tls and password");
        let refused = [
            with(pg, "http://127.0.0.1:6379", "concert:"),
            with("sqlite://concert.db", "redis://127.0.0.1:6379", "concert:"),
            with(pg, "redis://127.0.0.1:6379", ""),
            with(pg, "redis://127.0.0.1:6379", "{shop}:"),
        ];
        for config in refused {
            assert!(config.validate().is_err(), "{config:?}");
        }
        // The URL may carry a password: it never prints.
        let printed = format!(
            "{:?}",
            with(pg, "redis://:hunter2hunter2@cache:6379", "concert:")
        );
        assert!(!printed.contains("hunter2"), "{printed}");
    }

    #[test]
    fn flags_are_parsed_and_checked() {
        let config = Config::try_parse_from([
            "concert-server",
            "--queue-max-active",
            "5",
            "--demo-data",
            "true",
        ])
        .expect("flags parse");
        assert_eq!(config.queue_max_active, 5);
        assert!(config.demo_data);
        assert!(Config::try_parse_from(["concert-server", "--queue-max-active", "0"]).is_err());
        assert!(Config::try_parse_from(["concert-server", "--hold-ttl-seconds", "-1"]).is_err());
        let short_secret =
            Config::try_parse_from(["concert-server", "--token-secret", "short"]).expect("parses");
        assert!(short_secret.validate().is_err());
        let short_admin_key =
            Config::try_parse_from(["concert-server", "--admin-api-key", "fifteen-bytes!!"])
                .expect("parses");
        assert!(short_admin_key.validate().is_err());
        let bad_limits = Config::try_parse_from([
            "concert-server",
            "--max-charge-amount",
            "10",
            "--max-balance",
            "5",
        ])
        .expect("parses");
        assert!(bad_limits.validate().is_err());
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let config = Config::try_parse_from([
            "concert-server",
            "--token-secret",
            "a-very-long-secret-value",
            "--database-url",
            "postgres://app:hunter2@db:5432/concert",
        ])
        .expect("parses");
        let shown = format!("{config:?}");
        assert!(!shown.contains("a-very-long-secret-value"));
        assert!(!shown.contains("hunter2"));
    }

    #[test]
    fn jwt_identity_mode_needs_a_key_an_issuer_and_an_audience() {
        let jwt = |extra: &[&str]| {
            let mut args = vec!["concert-server", "--identity-mode", "jwt"];
            args.extend_from_slice(extra);
            Config::try_parse_from(args).expect("parses").validate()
        };
        let issuer = ["--identity-issuer", "https://id.example"];
        let audience = ["--identity-audience", "concert"];
        let secret = ["--identity-jwt-secret", "an-identity-secret-of-32-bytes!!"];
        assert!(jwt(&[issuer, audience, secret].concat()).is_ok());
        assert!(jwt(&[issuer, audience].concat()).is_err(), "no key");
        assert!(jwt(&[audience, secret].concat()).is_err(), "no issuer");
        assert!(jwt(&[issuer, secret].concat()).is_err(), "no audience");
        let both = [
            &issuer[..],
            &audience,
            &secret,
            &["--identity-jwt-secret-file", "/run/secrets/identity"],
        ]
        .concat();
        let mut both = Config::try_parse_from(
            [&["concert-server", "--identity-mode", "jwt"][..], &both].concat(),
        )
        .expect("parses");
        assert!(both.read_secret_files().is_err(), "secret and secret file");
        // Trusted mode needs none of them.
        assert!(Config::defaults().validate().is_ok());
    }

    #[test]
    fn the_identity_secret_stays_out_of_debug_output() {
        let config = Config::try_parse_from([
            "concert-server",
            "--identity-jwt-secret",
            "an-identity-secret-of-32-bytes!!",
        ])
        .expect("parses");
        assert!(!format!("{config:?}").contains("an-identity-secret"));
    }

    /// A file under the temporary directory holding `content`, removed on drop.
    struct SecretFile(std::path::PathBuf);

    impl SecretFile {
        fn new(name: &str, content: &str) -> Self {
            let path = std::env::temp_dir().join(format!("concert-{name}-{}", std::process::id()));
            std::fs::write(&path, content).expect("write");
            Self(path)
        }

        fn arg(&self) -> &str {
            self.0.to_str().expect("a UTF-8 path")
        }
    }

    impl Drop for SecretFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn secrets_are_read_from_files_without_their_final_line_break() {
        let token = SecretFile::new("token", "a-token-secret-from-a-file\n");
        let admin = SecretFile::new("admin", "an-admin-key-from-a-file\r\n");
        let url = SecretFile::new("url", "postgres://app:hunter2@db:5432/concert\n");
        let identity = SecretFile::new("identity", "  an identity secret, spaces kept ");
        let mut config = Config::try_parse_from([
            "concert-server",
            "--token-secret-file",
            token.arg(),
            "--admin-api-key-file",
            admin.arg(),
            "--database-url-file",
            url.arg(),
            "--identity-jwt-secret-file",
            identity.arg(),
        ])
        .expect("parses");

        config.read_secret_files().expect("read");

        let exposed =
            |secret: &Option<SecretString>| secret.as_ref().map(|s| s.expose_secret().to_owned());
        assert_eq!(
            exposed(&config.token_secret).as_deref(),
            Some("a-token-secret-from-a-file")
        );
        assert_eq!(
            exposed(&config.admin_api_key).as_deref(),
            Some("an-admin-key-from-a-file")
        );
        assert_eq!(
            config.database_url.as_deref(),
            Some("postgres://app:hunter2@db:5432/concert")
        );
        assert_eq!(
            exposed(&config.identity_jwt_secret).as_deref(),
            Some("  an identity secret, spaces kept ")
        );
        assert!(config.validate().is_ok());
        let shown = format!("{config:?}");
        for secret in [
            "a-token-secret",
            "an-admin-key",
            "hunter2",
            "identity secret",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
    }

    #[test]
    fn a_secret_given_both_ways_or_a_missing_file_is_an_error_naming_it() {
        let token = SecretFile::new("both", "a-token-secret-from-a-file");
        let mut both = Config::try_parse_from([
            "concert-server",
            "--token-secret",
            "a-token-secret-inline",
            "--token-secret-file",
            token.arg(),
        ])
        .expect("parses");
        let error = both.read_secret_files().expect_err("both");
        assert!(error.contains("TOKEN_SECRET_FILE"), "{error}");

        let mut missing = Config::try_parse_from([
            "concert-server",
            "--admin-api-key-file",
            "/nonexistent/admin-key",
        ])
        .expect("parses");
        let error = missing.read_secret_files().expect_err("missing");
        assert!(error.contains("/nonexistent/admin-key"), "{error}");
    }

    #[test]
    fn cors_origins_are_a_list_of_bare_origins() {
        let config = Config::try_parse_from([
            "concert-server",
            "--cors-allowed-origins",
            "https://tickets.example/,http://localhost:3000",
        ])
        .expect("parses");
        assert_eq!(
            config.cors_allowed_origins,
            ["https://tickets.example", "http://localhost:3000"]
        );
        for bad in [
            "tickets.example",
            "https://tickets.example/path",
            "ftp://x",
            "https://",
        ] {
            assert!(
                Config::try_parse_from(["concert-server", "--cors-allowed-origins", bad]).is_err(),
                "{bad}"
            );
        }
        assert!(Config::defaults().cors_allowed_origins.is_empty());
    }
}
