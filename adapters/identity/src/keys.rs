//! The public keys of a JWKS file. Each key is bound to exactly one algorithm (RS256 or ES256),
//! checked against its key type when loaded, so a token can never choose how its key is used.

use std::path::Path;

use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind};

use crate::error::{IdentityConfigError, JwkProblem};
use crate::refusal::Refusal;

/// Shorter RSA moduli are within reach of factoring; identity systems use 2048 bits or more.
const MIN_RSA_BITS: usize = 2048;

/// A public key and the one algorithm it verifies.
pub(crate) struct PublicKey {
    kid: Option<String>,
    pub(crate) algorithm: Algorithm,
    pub(crate) key: DecodingKey,
}

/// The signing keys of one JWKS file, as read at startup or at the last reload.
#[derive(Default)]
pub(crate) struct KeySet {
    keys: Vec<PublicKey>,
}

impl KeySet {
    /// Reads and checks a JWKS file: every signing key must be usable, and at least one present.
    pub(crate) fn load(path: &Path) -> Result<Self, IdentityConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|cause| IdentityConfigError::JwksUnreadable {
                path: path.to_path_buf(),
                cause,
            })?;
        Self::parse(path, &text)
    }

    fn parse(path: &Path, text: &str) -> Result<Self, IdentityConfigError> {
        let set: JwkSet =
            serde_json::from_str(text).map_err(|cause| IdentityConfigError::JwksNotJson {
                path: path.to_path_buf(),
                cause,
            })?;
        let mut keys: Vec<PublicKey> = Vec::with_capacity(set.keys.len());
        for (index, jwk) in set.keys.iter().enumerate() {
            // Encryption keys may share the file; they are not ours to verify with.
            if !matches!(
                jwk.common.public_key_use,
                None | Some(PublicKeyUse::Signature)
            ) {
                continue;
            }
            let key =
                PublicKey::from_jwk(jwk).map_err(|problem| IdentityConfigError::UnusableKey {
                    path: path.to_path_buf(),
                    key: jwk
                        .common
                        .key_id
                        .clone()
                        .unwrap_or_else(|| format!("#{} (no kid)", index + 1)),
                    problem,
                })?;
            if let Some(kid) = &key.kid
                && keys.iter().any(|known| known.kid.as_ref() == Some(kid))
            {
                return Err(IdentityConfigError::DuplicateKid {
                    path: path.to_path_buf(),
                    kid: kid.clone(),
                });
            }
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(IdentityConfigError::NoUsableKey {
                path: path.to_path_buf(),
            });
        }
        Ok(Self { keys })
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// The key for a token: the one its `kid` names, or without a `kid` the only key of its
    /// algorithm. The key's algorithm must be the token's.
    pub(crate) fn find(
        &self,
        kid: Option<&str>,
        algorithm: Algorithm,
    ) -> Result<&PublicKey, Refusal> {
        match kid {
            Some(kid) => {
                let key = self
                    .keys
                    .iter()
                    .find(|key| key.kid.as_deref() == Some(kid))
                    .ok_or(Refusal::UnknownKid)?;
                if key.algorithm == algorithm {
                    Ok(key)
                } else {
                    Err(Refusal::KeyAlgorithmMismatch)
                }
            }
            None => {
                let mut candidates = self.keys.iter().filter(|key| key.algorithm == algorithm);
                match (candidates.next(), candidates.next()) {
                    (Some(key), None) => Ok(key),
                    (None, _) => Err(Refusal::AlgorithmNotAccepted),
                    (Some(_), Some(_)) => Err(Refusal::AmbiguousKey),
                }
            }
        }
    }
}

impl PublicKey {
    fn from_jwk(jwk: &Jwk) -> Result<Self, JwkProblem> {
        let params = &jwk.algorithm;
        // Without `alg`, the key type alone names one algorithm we accept, or none.
        let algorithm = match (jwk.common.key_algorithm, params) {
            (Some(KeyAlgorithm::RS256), _) => Algorithm::RS256,
            (Some(KeyAlgorithm::ES256), _) => Algorithm::ES256,
            (Some(other), _) => return Err(JwkProblem::UnsupportedAlgorithm(other.to_string())),
            (None, AlgorithmParameters::RSA(_)) => Algorithm::RS256,
            (None, AlgorithmParameters::EllipticCurve(ec)) if ec.curve == EllipticCurve::P256 => {
                Algorithm::ES256
            }
            (None, _) => return Err(JwkProblem::NoAlgorithm),
        };
        let fits = match (algorithm, params) {
            (Algorithm::RS256, AlgorithmParameters::RSA(_)) => true,
            (Algorithm::ES256, AlgorithmParameters::EllipticCurve(ec)) => {
                ec.curve == EllipticCurve::P256
            }
            _ => false,
        };
        if !fits {
            return Err(JwkProblem::KeyTypeMismatch {
                algorithm: if algorithm == Algorithm::RS256 {
                    "RS256"
                } else {
                    "ES256"
                },
                found: describe(params),
            });
        }
        let key = DecodingKey::from_jwk(jwk).map_err(|_| JwkProblem::Malformed)?;
        if let DecodingKeyKind::RsaModulusExponent { n, .. } = key.kind() {
            let bits = significant_bits(n);
            if bits < MIN_RSA_BITS {
                return Err(JwkProblem::WeakRsaKey { bits });
            }
        }
        // Builds the verifier once: an EC point off the curve fails here rather than per token.
        jsonwebtoken::crypto::verify("", b"", &key, algorithm)
            .map_err(|_| JwkProblem::Malformed)?;
        Ok(Self {
            kid: jwk.common.key_id.clone(),
            algorithm,
            key,
        })
    }
}

/// A key's type in words, for a key that does not fit its algorithm.
fn describe(params: &AlgorithmParameters) -> String {
    match params {
        AlgorithmParameters::RSA(_) => "an RSA key".into(),
        AlgorithmParameters::EllipticCurve(ec) => format!("an EC {:?} key", ec.curve),
        AlgorithmParameters::OctetKey(_) => "a symmetric (oct) key".into(),
        AlgorithmParameters::OctetKeyPair(_) => "an OKP key".into(),
        AlgorithmParameters::Other(other) => match other.fields.get("kty").and_then(|k| k.as_str())
        {
            Some(kty) => format!("a {kty} key with missing or unknown parameters"),
            None => "a key without kty".into(),
        },
        _ => "an unknown kind of key".into(),
    }
}

/// The bit length of a big-endian unsigned integer.
fn significant_bits(bytes: &[u8]) -> usize {
    let bytes = match bytes.iter().position(|b| *b != 0) {
        Some(first) => &bytes[first..],
        None => return 0,
    };
    (bytes.len() - 1) * 8 + (8 - bytes[0].leading_zeros() as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE_JWKS: &str = include_str!("../tests/fixtures/jwks.json");

    fn parse(text: &str) -> Result<KeySet, IdentityConfigError> {
        KeySet::parse(Path::new("keys.json"), text)
    }

    fn fixture_key(kid: &str) -> serde_json::Value {
        let set: serde_json::Value = serde_json::from_str(FIXTURE_JWKS).expect("fixture JSON");
        set["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .find(|key| key["kid"] == kid)
            .cloned()
            .expect("fixture key")
    }

    fn with(kid: &str, changes: serde_json::Value) -> serde_json::Value {
        let mut key = fixture_key(kid);
        for (name, value) in changes.as_object().expect("object") {
            if value.is_null() {
                key.as_object_mut().expect("object").remove(name);
            } else {
                key[name] = value.clone();
            }
        }
        key
    }

    fn set_of(keys: &[serde_json::Value]) -> String {
        serde_json::json!({ "keys": keys }).to_string()
    }

    fn problem(text: &str) -> JwkProblem {
        match parse(text) {
            Err(IdentityConfigError::UnusableKey { problem, .. }) => problem,
            Err(other) => panic!("another error: {other}"),
            Ok(_) => panic!("the set was accepted"),
        }
    }

    #[test]
    fn the_fixture_set_loads_its_rsa_and_ec_keys() {
        let set = parse(FIXTURE_JWKS).expect("usable set");
        assert_eq!(set.len(), 2);
        assert_eq!(
            set.find(Some("rsa-1"), Algorithm::RS256)
                .map(|k| k.algorithm),
            Ok(Algorithm::RS256)
        );
        assert_eq!(
            set.find(Some("ec-1"), Algorithm::ES256)
                .map(|k| k.algorithm),
            Ok(Algorithm::ES256)
        );
    }

    #[test]
    fn a_key_without_alg_takes_the_one_its_type_implies() {
        let set = parse(&set_of(&[
            with("rsa-1", serde_json::json!({ "alg": null })),
            with("ec-1", serde_json::json!({ "alg": null })),
        ]))
        .expect("usable set");
        assert!(set.find(Some("rsa-1"), Algorithm::RS256).is_ok());
        assert!(set.find(Some("ec-1"), Algorithm::ES256).is_ok());
    }

    #[test]
    fn a_key_of_another_algorithm_is_a_configuration_error() {
        let text = set_of(&[with("rsa-1", serde_json::json!({ "alg": "PS256" }))]);
        assert_eq!(
            problem(&text),
            JwkProblem::UnsupportedAlgorithm("PS256".into())
        );
    }

    #[test]
    fn a_symmetric_key_is_a_configuration_error() {
        let text = set_of(&[serde_json::json!({
            "kty": "oct", "kid": "hmac", "alg": "HS256", "k": "c2VjcmV0"
        })]);
        assert_eq!(
            problem(&text),
            JwkProblem::UnsupportedAlgorithm("HS256".into())
        );
    }

    #[test]
    fn a_key_whose_type_does_not_match_its_algorithm_is_a_configuration_error() {
        let text = set_of(&[with("ec-1", serde_json::json!({ "alg": "RS256" }))]);
        assert_eq!(
            problem(&text),
            JwkProblem::KeyTypeMismatch {
                algorithm: "RS256",
                found: "an EC P256 key".into()
            }
        );
        let text = set_of(&[with("rsa-1", serde_json::json!({ "alg": "ES256" }))]);
        assert!(matches!(problem(&text), JwkProblem::KeyTypeMismatch { .. }));
    }

    #[test]
    fn an_ec_key_on_another_curve_is_a_configuration_error() {
        let text = set_of(&[with("ec-1", serde_json::json!({ "crv": "P-384" }))]);
        assert!(matches!(problem(&text), JwkProblem::KeyTypeMismatch { .. }));
    }

    #[test]
    fn an_rsa_key_shorter_than_2048_bits_is_a_configuration_error() {
        let text = set_of(&[with("rsa-1", serde_json::json!({ "n": "AQAB" }))]);
        assert_eq!(problem(&text), JwkProblem::WeakRsaKey { bits: 17 });
    }

    #[test]
    fn an_ec_point_off_the_curve_is_a_configuration_error() {
        let text = set_of(&[with(
            "ec-1",
            serde_json::json!({ "y": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE" }),
        )]);
        assert_eq!(problem(&text), JwkProblem::Malformed);
    }

    #[test]
    fn a_kid_twice_is_a_configuration_error() {
        let text = set_of(&[fixture_key("rsa-1"), fixture_key("rsa-1")]);
        assert!(matches!(
            parse(&text),
            Err(IdentityConfigError::DuplicateKid { kid, .. }) if kid == "rsa-1"
        ));
    }

    #[test]
    fn a_set_of_encryption_keys_only_has_no_usable_key() {
        let text = set_of(&[with("rsa-1", serde_json::json!({ "use": "enc" }))]);
        assert!(matches!(
            parse(&text),
            Err(IdentityConfigError::NoUsableKey { .. })
        ));
        assert!(matches!(
            parse(r#"{"keys": []}"#),
            Err(IdentityConfigError::NoUsableKey { .. })
        ));
    }

    #[test]
    fn text_that_is_not_a_key_set_is_a_configuration_error() {
        for text in ["not json", r#"{"kids": []}"#, "[]"] {
            assert!(
                matches!(parse(text), Err(IdentityConfigError::JwksNotJson { .. })),
                "{text}"
            );
        }
    }

    #[test]
    fn a_token_without_kid_takes_the_only_key_of_its_algorithm() {
        let set = parse(FIXTURE_JWKS).expect("usable set");
        assert!(set.find(None, Algorithm::RS256).is_ok());
        assert_eq!(
            set.find(None, Algorithm::PS256).err(),
            Some(Refusal::AlgorithmNotAccepted)
        );
        let two_rsa = parse(&set_of(&[
            fixture_key("rsa-1"),
            with("rsa-1", serde_json::json!({ "kid": "rsa-1b" })),
        ]))
        .expect("usable set");
        assert_eq!(
            two_rsa.find(None, Algorithm::RS256).err(),
            Some(Refusal::AmbiguousKey)
        );
    }

    #[test]
    fn a_kid_of_another_algorithm_is_refused() {
        let set = parse(FIXTURE_JWKS).expect("usable set");
        assert_eq!(
            set.find(Some("rsa-1"), Algorithm::ES256).err(),
            Some(Refusal::KeyAlgorithmMismatch)
        );
        assert_eq!(
            set.find(Some("rsa-9"), Algorithm::RS256).err(),
            Some(Refusal::UnknownKid)
        );
    }

    #[test]
    fn bit_lengths_ignore_leading_zero_bytes() {
        assert_eq!(significant_bits(&[0, 0, 0x01, 0x00]), 9);
        assert_eq!(significant_bits(&[0x80; 256]), 2048);
        assert_eq!(significant_bits(&[0, 0]), 0);
    }
}
