//! Identity tokens of the operator's identity system, verified as JWTs: HS256 with a shared
//! secret, RS256/ES256 with the public keys of a local JWKS file (reloadable for key rotation).
//! The token's `sub` is the user.
//!
//! The token's header only says which key to look up; the key decides the one algorithm it may
//! verify, so an HS256 token is never checked against a public key used as an HMAC secret.

mod error;
mod keys;
pub mod mint;
mod refusal;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use concert_application::ports::{IdentityVerifier, InvalidIdentity};
use concert_domain::UserId;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

pub use error::{IdentityConfigError, JwkProblem};
use keys::KeySet;
use refusal::Refusal;

/// RFC 7518 asks for an HS256 key at least as long as the hash: 256 bits.
pub const MIN_SECRET_LEN: usize = 32;
/// Clock skew beyond this is a misconfiguration, not skew.
pub const MAX_LEEWAY: Duration = Duration::from_secs(3600);
/// Far longer than any identity token; refuses garbage before decoding it.
const MAX_TOKEN_LEN: usize = 8 * 1024;
/// The algorithms a token may use; each key is bound to one of them.
const ACCEPTED: [Algorithm; 3] = [Algorithm::HS256, Algorithm::RS256, Algorithm::ES256];

/// How tokens are verified. At least one of the secret and the JWKS file is required.
#[derive(Clone)]
pub struct JwtSettings {
    /// The HS256 secret shared with the identity system (at least 32 bytes).
    pub hs256_secret: Option<Vec<u8>>,
    /// A JWKS file with the identity system's RS256/ES256 public keys.
    pub jwks_file: Option<PathBuf>,
    /// The `iss` every token must carry.
    pub issuer: String,
    /// The `aud` every token must carry.
    pub audience: String,
    /// The clock difference allowed on `exp` and `nbf` (whole seconds).
    pub leeway: Duration,
}

impl std::fmt::Debug for JwtSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtSettings")
            .field(
                "hs256_secret",
                &self.hs256_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("jwks_file", &self.jwks_file)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .finish()
    }
}

/// Verifies identity tokens. Cheap to share: verification only takes a read lock long enough
/// to clone the current key set.
pub struct JwtIdentity {
    hs256: Option<DecodingKey>,
    jwks_file: Option<PathBuf>,
    /// Swapped whole on reload, so a verification sees either the old set or the new one.
    jwks: RwLock<Arc<KeySet>>,
    /// One validation per accepted algorithm, each accepting that algorithm only.
    validations: HashMap<Algorithm, Validation>,
}

/// The one claim the service reads; `exp`, `nbf`, `iss` and `aud` are checked by the validation.
#[derive(Deserialize)]
struct Subject {
    sub: Option<String>,
}

impl JwtIdentity {
    /// Checks the settings and loads the JWKS file, if any.
    pub fn new(settings: JwtSettings) -> Result<Self, IdentityConfigError> {
        let JwtSettings {
            hs256_secret,
            jwks_file,
            issuer,
            audience,
            leeway,
        } = settings;
        if hs256_secret.is_none() && jwks_file.is_none() {
            return Err(IdentityConfigError::NoKey);
        }
        if issuer.is_empty() {
            return Err(IdentityConfigError::NoIssuer);
        }
        if audience.is_empty() {
            return Err(IdentityConfigError::NoAudience);
        }
        if leeway > MAX_LEEWAY {
            return Err(IdentityConfigError::LeewayTooLong {
                seconds: leeway.as_secs(),
            });
        }
        let hs256 = hs256_secret
            .map(|secret| match DecodingKey::from_secret(&secret) {
                Ok(key) if secret.len() >= MIN_SECRET_LEN => Ok(key),
                // `from_secret` refuses only an empty secret, which is short too.
                _ => Err(IdentityConfigError::ShortSecret { len: secret.len() }),
            })
            .transpose()?;
        let jwks = match &jwks_file {
            Some(path) => KeySet::load(path)?,
            None => KeySet::default(),
        };
        let validations = ACCEPTED
            .into_iter()
            .map(|algorithm| (algorithm, validation(algorithm, &issuer, &audience, leeway)))
            .collect();
        Ok(Self {
            hs256,
            jwks_file,
            jwks: RwLock::new(Arc::new(jwks)),
            validations,
        })
    }

    /// The JWKS file the keys are read from, if any.
    pub fn jwks_file(&self) -> Option<&Path> {
        self.jwks_file.as_deref()
    }

    /// Reads the JWKS file again and verifies with its keys from now on (key rotation). Returns
    /// the number of keys; on error the previous keys stay in use. Without a JWKS file there is
    /// nothing to reload: `Ok(0)`.
    pub fn reload(&self) -> Result<usize, IdentityConfigError> {
        let Some(path) = &self.jwks_file else {
            return Ok(0);
        };
        let keys = KeySet::load(path)?;
        let count = keys.len();
        // A panic elsewhere cannot leave a half-written `Arc`, so a poisoned lock is still sound.
        *self.jwks.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(keys);
        Ok(count)
    }

    fn keys(&self) -> Arc<KeySet> {
        Arc::clone(&self.jwks.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn check(&self, token: &str) -> Result<UserId, Refusal> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(Refusal::Malformed);
        }
        // `none` and unknown algorithms do not parse as a header: malformed.
        let header = jsonwebtoken::decode_header(token).map_err(|_| Refusal::Malformed)?;
        let validation = self
            .validations
            .get(&header.alg)
            .ok_or(Refusal::AlgorithmNotAccepted)?;
        let claims = if header.alg == Algorithm::HS256 {
            let secret = self.hs256.as_ref().ok_or(Refusal::AlgorithmNotAccepted)?;
            jsonwebtoken::decode::<Subject>(token, secret, validation)
        } else {
            let keys = self.keys();
            let key = keys.find(header.kid.as_deref(), header.alg)?;
            debug_assert_eq!(key.algorithm, header.alg);
            jsonwebtoken::decode::<Subject>(token, &key.key, validation)
        }?
        .claims;
        let sub = claims
            .sub
            .ok_or_else(|| Refusal::MissingClaim("sub".into()))?;
        UserId::parse(&sub).map_err(|_| Refusal::SubNotAUser)
    }
}

impl IdentityVerifier for JwtIdentity {
    fn verify(&self, credentials: &str) -> Result<UserId, InvalidIdentity> {
        Ok(self.check(credentials)?)
    }
}

impl std::fmt::Debug for JwtIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtIdentity")
            .field("hs256_secret", &self.hs256.as_ref().map(|_| "<redacted>"))
            .field("jwks_file", &self.jwks_file)
            .field("jwks_keys", &self.keys().len())
            .finish_non_exhaustive()
    }
}

/// Accepts `algorithm` only, and requires every claim the service relies on.
fn validation(algorithm: Algorithm, issuer: &str, audience: &str, leeway: Duration) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.leeway = leeway.as_secs();
    validation
}
