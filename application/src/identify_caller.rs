//! Use case: which user a request may act for.
//!
//! Joining the line and the points endpoints name a user (in the body or the path). Whether that
//! name is believed depends on the deployment's identity mode: `Trusted` takes it as sent (the v1
//! contract, for development and for a gateway that already authenticates), `Verified` takes the
//! user from credentials issued by the operator's identity system, and a named user must be that
//! same user.

use std::sync::Arc;

use concert_domain::UserId;

use crate::ports::{IdentityVerifier, InvalidIdentity};

/// Who vouches for the user a request names.
#[derive(Clone)]
pub enum IdentityMode {
    /// The request's own word: any caller may name any user.
    Trusted,
    /// The operator's identity system, through its verifier.
    Verified(Arc<dyn IdentityVerifier>),
}

impl std::fmt::Debug for IdentityMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Trusted => "Trusted",
            Self::Verified(_) => "Verified",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// No credentials, or credentials that do not verify (`401 IDENTITY_INVALID`).
    #[error("the identity token is missing or not valid: {0}")]
    Invalid(InvalidIdentity),
    /// The request names another user than the verified one (`403 IDENTITY_MISMATCH`).
    #[error("the request names another user than the verified identity")]
    Mismatch,
    /// Trusted mode, and the request names no user (`400 VALIDATION_FAILED`).
    #[error("the request names no user")]
    Unnamed,
}

pub struct IdentifyCaller {
    mode: IdentityMode,
}

impl IdentifyCaller {
    pub fn new(mode: IdentityMode) -> Self {
        Self { mode }
    }

    pub fn mode(&self) -> &IdentityMode {
        &self.mode
    }

    /// The user the request acts for, given its identity `credentials` (a bearer token, if any)
    /// and the user it `names` (if any).
    pub fn acting_user(
        &self,
        credentials: Option<&str>,
        names: Option<UserId>,
    ) -> Result<UserId, IdentityError> {
        match &self.mode {
            IdentityMode::Trusted => names.ok_or(IdentityError::Unnamed),
            IdentityMode::Verified(verifier) => {
                let credentials = credentials.ok_or_else(|| {
                    IdentityError::Invalid(InvalidIdentity::new(
                        "send the identity token as `Authorization: Bearer <token>`",
                    ))
                })?;
                let verified = verifier
                    .verify(credentials)
                    .map_err(IdentityError::Invalid)?;
                match names {
                    Some(named) if named != verified => Err(IdentityError::Mismatch),
                    _ => Ok(verified),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use mockall::predicate::eq;

    use super::*;
    use crate::ports::MockIdentityVerifier;
    use crate::test_support::{other_user, user};

    fn verifying(
        credentials: &'static str,
        answer: Result<UserId, InvalidIdentity>,
    ) -> IdentifyCaller {
        let mut verifier = MockIdentityVerifier::new();
        verifier
            .expect_verify()
            .with(eq(credentials))
            .times(1)
            .returning(move |_| answer.clone());
        IdentifyCaller::new(IdentityMode::Verified(Arc::new(verifier)))
    }

    fn verifying_nothing() -> IdentifyCaller {
        let mut verifier = MockIdentityVerifier::new();
        verifier.expect_verify().never();
        IdentifyCaller::new(IdentityMode::Verified(Arc::new(verifier)))
    }

    #[test]
    fn trusted_mode_takes_the_named_user_and_ignores_credentials() {
        let trusted = IdentifyCaller::new(IdentityMode::Trusted);

        assert_eq!(trusted.acting_user(None, Some(user())), Ok(user()));
        assert_eq!(
            trusted.acting_user(Some("anything"), Some(other_user())),
            Ok(other_user())
        );
    }

    #[test]
    fn trusted_mode_needs_a_named_user() {
        let trusted = IdentifyCaller::new(IdentityMode::Trusted);

        assert_eq!(trusted.acting_user(None, None), Err(IdentityError::Unnamed));
    }

    #[test]
    fn verified_mode_acts_for_the_verified_user() {
        assert_eq!(
            verifying("jwt", Ok(user())).acting_user(Some("jwt"), None),
            Ok(user())
        );
        assert_eq!(
            verifying("jwt", Ok(user())).acting_user(Some("jwt"), Some(user())),
            Ok(user())
        );
    }

    #[test]
    fn verified_mode_refuses_a_request_naming_another_user() {
        assert_eq!(
            verifying("jwt", Ok(user())).acting_user(Some("jwt"), Some(other_user())),
            Err(IdentityError::Mismatch)
        );
    }

    #[test]
    fn verified_mode_refuses_missing_credentials_without_asking_the_verifier() {
        let refused = verifying_nothing().acting_user(None, Some(user()));

        assert!(matches!(refused, Err(IdentityError::Invalid(_))));
    }

    #[test]
    fn verified_mode_passes_the_verifiers_refusal_on() {
        let why = InvalidIdentity::new("the identity token has expired");

        let refused = verifying("old", Err(why.clone())).acting_user(Some("old"), Some(user()));

        assert_eq!(refused, Err(IdentityError::Invalid(why)));
    }
}
