//! The identity mode (`IDENTITY_MODE`) built from the configuration, and the watch that reloads
//! a JWKS file when the operator replaces it (key rotation without a restart).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use concert_application::identify_caller::IdentityMode;
use concert_identity::{JwtIdentity, JwtSettings};
use secrecy::ExposeSecret;

use crate::config::{Config, IdentityModeSetting};

/// How often the JWKS file's modification time is looked at.
pub(crate) const JWKS_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// The mode the use cases run with, and the JWT verifier behind it, if any (for the reload job).
pub struct Identity {
    pub mode: IdentityMode,
    pub jwt: Option<Arc<JwtIdentity>>,
}

/// Builds the configured identity mode; in `trusted` mode, warns that anyone can act for anyone.
pub fn build(config: &Config) -> anyhow::Result<Identity> {
    match config.identity_mode {
        IdentityModeSetting::Trusted => {
            tracing::warn!(
                "IDENTITY_MODE=trusted: joining the line and the points endpoints take the user id \
                 as sent, so any caller can act for any user; use IDENTITY_MODE=jwt in production"
            );
            Ok(Identity {
                mode: IdentityMode::Trusted,
                jwt: None,
            })
        }
        IdentityModeSetting::Jwt => {
            // IDENTITY_JWT_SECRET_FILE was read into the setting (Config::read_secret_files).
            let hs256_secret = config
                .identity_jwt_secret
                .as_ref()
                .map(|secret| secret.expose_secret().as_bytes().to_vec());
            let jwt = JwtIdentity::new(JwtSettings {
                hs256_secret,
                jwks_file: config.identity_jwks_file.clone(),
                issuer: config.identity_issuer.clone().unwrap_or_default(),
                audience: config.identity_audience.clone().unwrap_or_default(),
                leeway: Duration::from_secs(config.identity_clock_skew_seconds),
            })
            .context("IDENTITY_MODE=jwt")?;
            let jwt = Arc::new(jwt);
            tracing::info!(
                issuer = config.identity_issuer.as_deref().unwrap_or_default(),
                audience = config.identity_audience.as_deref().unwrap_or_default(),
                jwks_file = ?config.identity_jwks_file,
                "identity tokens verified as JWTs"
            );
            Ok(Identity {
                mode: IdentityMode::Verified(jwt.clone()),
                jwt: Some(jwt),
            })
        }
    }
}

/// Reloads the verifier's JWKS file when its modification time changes.
pub(crate) struct JwksWatch {
    jwt: Arc<JwtIdentity>,
    file: PathBuf,
    seen: Option<SystemTime>,
}

impl JwksWatch {
    /// A watch over the verifier's JWKS file, if it has one.
    pub(crate) fn of(jwt: Arc<JwtIdentity>) -> Option<Self> {
        let file = jwt.jwks_file()?.to_path_buf();
        let seen = modified(&file);
        Some(Self { jwt, file, seen })
    }

    /// Reloads the keys if the file changed since the last look; a file that cannot be read or
    /// parsed leaves the current keys in place.
    pub(crate) fn check(&mut self) {
        let now = modified(&self.file);
        if now == self.seen {
            return;
        }
        self.seen = now;
        match self.jwt.reload() {
            Ok(keys) => tracing::info!(file = %self.file.display(), keys, "JWKS reloaded"),
            Err(error) => tracing::warn!(
                file = %self.file.display(),
                %error,
                "JWKS not reloaded; the previous keys stay in use"
            ),
        }
    }
}

fn modified(file: &Path) -> Option<SystemTime> {
    std::fs::metadata(file).and_then(|m| m.modified()).ok()
}
