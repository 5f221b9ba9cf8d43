//! Why a verifier could not be built or its keys reloaded: operator mistakes, each message
//! naming what to fix. Causes are part of the message because reload failures are only logged.

use std::path::PathBuf;

use crate::{MAX_LEEWAY, MIN_SECRET_LEN};

/// A configuration the verifier refuses to start (or reload) with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityConfigError {
    #[error("no identity key is configured: give an HS256 secret, a JWKS file, or both")]
    NoKey,
    #[error("the HS256 secret is {len} bytes long; at least {MIN_SECRET_LEN} are needed")]
    ShortSecret { len: usize },
    #[error("the expected issuer of identity tokens is empty")]
    NoIssuer,
    #[error("the expected audience of identity tokens is empty")]
    NoAudience,
    #[error("the clock skew leeway of {seconds} s exceeds the {} s allowed", MAX_LEEWAY.as_secs())]
    LeewayTooLong { seconds: u64 },
    #[error("cannot read the JWKS file {}: {cause}", path.display())]
    JwksUnreadable {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("the JWKS file {} is not a JSON Web Key Set: {cause}", path.display())]
    JwksNotJson {
        path: PathBuf,
        cause: serde_json::Error,
    },
    #[error("the JWKS file {} has no RS256 or ES256 signing key", path.display())]
    NoUsableKey { path: PathBuf },
    #[error("the JWKS file {} has an unusable key {key}: {problem}", path.display())]
    UnusableKey {
        path: PathBuf,
        /// The key's `kid`, or its position in the set when it has none.
        key: String,
        problem: JwkProblem,
    },
    #[error("the JWKS file {} has the kid {kid:?} more than once", path.display())]
    DuplicateKid { path: PathBuf, kid: String },
}

/// What is wrong with one key of a JWKS file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwkProblem {
    #[error("its algorithm {0} is not RS256 or ES256")]
    UnsupportedAlgorithm(String),
    #[error("it names no algorithm and is neither an RSA nor an EC P-256 key")]
    NoAlgorithm,
    #[error("it is {found}, which cannot verify {algorithm}")]
    KeyTypeMismatch {
        algorithm: &'static str,
        found: String,
    },
    #[error("its RSA modulus has {bits} bits; at least 2048 are needed")]
    WeakRsaKey { bits: usize },
    #[error("its key material is not a valid public key")]
    Malformed,
}
