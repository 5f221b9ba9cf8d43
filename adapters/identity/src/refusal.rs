//! Why a token was refused, in words fit for the caller. No reason quotes the token or a key:
//! they go back to whoever presented the token and into logs.

use concert_application::ports::InvalidIdentity;
use jsonwebtoken::errors::{Error, ErrorKind};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("the identity token is malformed")]
    Malformed,
    #[error("the identity token's algorithm is not accepted")]
    AlgorithmNotAccepted,
    #[error("no key for the identity token's kid")]
    UnknownKid,
    #[error("the identity token's algorithm does not match its key")]
    KeyAlgorithmMismatch,
    #[error("the identity token has no kid and several keys could have signed it")]
    AmbiguousKey,
    #[error("the identity token's signature does not verify")]
    BadSignature,
    #[error("the identity token has expired")]
    Expired,
    #[error("the identity token is not valid yet")]
    NotYetValid,
    #[error("the identity token was issued by another issuer")]
    WrongIssuer,
    #[error("the identity token is for another audience")]
    WrongAudience,
    /// The claim's name comes from the required set, never from the token.
    #[error("the identity token has no {0} claim")]
    MissingClaim(String),
    #[error("the identity token's {0} claim is malformed")]
    MalformedClaim(String),
    #[error("the identity token's sub is not a user id (a UUID)")]
    SubNotAUser,
    #[error("the identity token is not valid")]
    Other,
}

impl From<Error> for Refusal {
    fn from(error: Error) -> Self {
        match error.into_kind() {
            ErrorKind::InvalidToken
            | ErrorKind::Base64(_)
            | ErrorKind::Json(_)
            | ErrorKind::Utf8(_) => Self::Malformed,
            ErrorKind::InvalidAlgorithm
            | ErrorKind::UnsupportedAlgorithm
            | ErrorKind::MissingAlgorithm => Self::AlgorithmNotAccepted,
            // Key errors cannot come from keys checked at load; a bad key verifies nothing.
            ErrorKind::InvalidSignature
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidRsaKey(_)
            | ErrorKind::InvalidKeyFormat => Self::BadSignature,
            ErrorKind::ExpiredSignature => Self::Expired,
            ErrorKind::ImmatureSignature => Self::NotYetValid,
            ErrorKind::InvalidIssuer => Self::WrongIssuer,
            ErrorKind::InvalidAudience => Self::WrongAudience,
            ErrorKind::MissingRequiredClaim(claim) => Self::MissingClaim(claim),
            ErrorKind::InvalidClaimFormat(claim) => Self::MalformedClaim(claim),
            _ => Self::Other,
        }
    }
}

impl From<Refusal> for InvalidIdentity {
    fn from(refusal: Refusal) -> Self {
        Self::new(refusal.to_string())
    }
}
