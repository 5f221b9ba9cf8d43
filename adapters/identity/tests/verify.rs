//! `JwtIdentity` against tokens signed with the fixture keys (tests/fixtures, test-only keys).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use concert_application::ports::{IdentityVerifier, InvalidIdentity};
use concert_domain::UserId;
use concert_identity::mint::{MintClaims, mint_hs256};
use concert_identity::{IdentityConfigError, JwtIdentity, JwtSettings};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

const ISSUER: &str = "https://id.example.test";
const AUDIENCE: &str = "concert-queue";
const SECRET: &[u8] = b"an-hs256-secret-of-at-least-32-bytes";
const USER: &str = "3f1c9a52-6c1e-4c55-9a1b-2f4a8f0c1d2e";
const LEEWAY: i64 = 60;

/// Base64url without padding, as JWTs use it.
fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn read_fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).expect("fixture")
}

fn now() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970");
    i64::try_from(since_epoch.as_secs()).expect("seconds fit")
}

fn user() -> UserId {
    UserId::parse(USER).expect("a UUID")
}

fn settings() -> JwtSettings {
    JwtSettings {
        hs256_secret: Some(SECRET.to_vec()),
        jwks_file: Some(fixture("jwks.json")),
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        leeway: Duration::from_secs(LEEWAY.unsigned_abs()),
    }
}

fn verifier() -> JwtIdentity {
    JwtIdentity::new(settings()).expect("a valid configuration")
}

/// Valid claims, with `changes` applied (a `null` removes the claim).
fn claims(changes: Value) -> Value {
    let mut claims = json!({
        "sub": USER, "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 600, "iat": now(),
    });
    for (name, value) in changes.as_object().expect("an object") {
        if value.is_null() {
            claims.as_object_mut().expect("an object").remove(name);
        } else {
            claims[name] = value.clone();
        }
    }
    claims
}

fn valid() -> Value {
    claims(json!({}))
}

fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).expect("signed")
}

fn hs256(secret: &[u8], claims: &Value) -> String {
    let key = EncodingKey::from_secret(secret).expect("a secret");
    sign(Algorithm::HS256, None, &key, claims)
}

fn rs256(private_pem: &str, kid: Option<&str>, claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(&read_fixture(private_pem)).expect("an RSA key");
    sign(Algorithm::RS256, kid, &key, claims)
}

fn es256(kid: Option<&str>, claims: &Value) -> String {
    let key = EncodingKey::from_ec_pem(&read_fixture("ec-1-private.pem")).expect("an EC key");
    sign(Algorithm::ES256, kid, &key, claims)
}

/// A token with any header, signed with HMAC-SHA256 under `secret` whatever the header says.
fn hmac_signed(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let message = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let key = EncodingKey::from_secret(secret).expect("a secret");
    let signature =
        jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256).expect("signed");
    format!("{message}.{signature}")
}

fn refused(verifier: &JwtIdentity, token: &str) -> String {
    match verifier.verify(token) {
        Err(InvalidIdentity { reason }) => {
            assert!(
                token.is_empty() || !reason.contains(token),
                "the reason quotes the token"
            );
            reason
        }
        Ok(user) => panic!("accepted as {user}"),
    }
}

/// The `n` of the fixture's rsa-1 JWK, as the JWKS publishes it.
fn rsa_1_modulus() -> String {
    let jwks: Value = serde_json::from_slice(&read_fixture("jwks.json")).expect("JSON");
    jwks["keys"][0]["n"].as_str().expect("n").to_owned()
}

/// A file under the system temporary directory, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn with(contents: &[u8]) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "concert-identity-test-{}-{}.json",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let file = Self(path);
        file.write(contents);
        file
    }

    fn write(&self, contents: &[u8]) {
        std::fs::write(&self.0, contents).expect("a temporary file");
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn config_error(settings: JwtSettings) -> IdentityConfigError {
    JwtIdentity::new(settings).expect_err("a configuration error")
}

#[test]
fn a_valid_hs256_token_is_its_subject() {
    assert_eq!(verifier().verify(&hs256(SECRET, &valid())), Ok(user()));
}

#[test]
fn a_token_minted_by_the_mint_module_verifies() {
    let token = mint_hs256(
        SECRET,
        &MintClaims {
            sub: USER.into(),
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            exp: now() + 600,
            nbf: Some(now()),
            iat: now(),
        },
    )
    .expect("minted");
    assert_eq!(verifier().verify(&token), Ok(user()));
}

#[test]
fn a_valid_rs256_token_from_the_jwks_is_its_subject() {
    let token = rs256("rsa-1-private.pem", Some("rsa-1"), &valid());
    assert_eq!(verifier().verify(&token), Ok(user()));
}

#[test]
fn a_valid_es256_token_from_the_jwks_is_its_subject() {
    let token = es256(Some("ec-1"), &valid());
    assert_eq!(verifier().verify(&token), Ok(user()));
}

#[test]
fn a_token_without_kid_is_verified_with_the_only_key_of_its_algorithm() {
    let verifier = verifier();
    assert_eq!(
        verifier.verify(&rs256("rsa-1-private.pem", None, &valid())),
        Ok(user())
    );
    assert_eq!(verifier.verify(&es256(None, &valid())), Ok(user()));
}

#[test]
fn an_expired_token_is_refused() {
    let token = hs256(SECRET, &claims(json!({ "exp": now() - LEEWAY - 60 })));
    assert_eq!(
        refused(&verifier(), &token),
        "the identity token has expired"
    );
}

#[test]
fn a_token_not_valid_yet_is_refused() {
    let token = rs256(
        "rsa-1-private.pem",
        Some("rsa-1"),
        &claims(json!({ "nbf": now() + LEEWAY + 60 })),
    );
    assert_eq!(
        refused(&verifier(), &token),
        "the identity token is not valid yet"
    );
}

#[test]
fn a_token_expired_or_not_yet_valid_within_the_leeway_is_accepted() {
    let verifier = verifier();
    let just_expired = hs256(SECRET, &claims(json!({ "exp": now() - LEEWAY / 2 })));
    assert_eq!(verifier.verify(&just_expired), Ok(user()));
    let almost_valid = hs256(SECRET, &claims(json!({ "nbf": now() + LEEWAY / 2 })));
    assert_eq!(verifier.verify(&almost_valid), Ok(user()));
}

#[test]
fn a_token_of_another_issuer_is_refused() {
    let token = hs256(
        SECRET,
        &claims(json!({ "iss": "https://evil.example.test" })),
    );
    assert_eq!(
        refused(&verifier(), &token),
        "the identity token was issued by another issuer"
    );
}

#[test]
fn a_token_for_another_audience_is_refused() {
    let token = es256(Some("ec-1"), &claims(json!({ "aud": "another-service" })));
    assert_eq!(
        refused(&verifier(), &token),
        "the identity token is for another audience"
    );
}

#[test]
fn a_token_signed_with_another_rsa_key_is_refused() {
    let token = rs256("rsa-2-private.pem", Some("rsa-1"), &valid());
    assert_eq!(
        refused(&verifier(), &token),
        "the identity token's signature does not verify"
    );
}

#[test]
fn an_hs256_token_signed_with_another_secret_is_refused() {
    let token = hs256(b"another-secret-of-at-least-32-bytes!!", &valid());
    assert_eq!(
        refused(&verifier(), &token),
        "the identity token's signature does not verify"
    );
}

#[test]
fn a_tampered_payload_is_refused() {
    let token = hs256(SECRET, &valid());
    let forged_payload = b64(
        claims(json!({ "sub": "00000000-0000-4000-8000-000000000000" }))
            .to_string()
            .as_bytes(),
    );
    let mut parts: Vec<&str> = token.split('.').collect();
    parts[1] = &forged_payload;
    assert_eq!(
        refused(&verifier(), &parts.join(".")),
        "the identity token's signature does not verify"
    );
}

#[test]
fn an_unsigned_token_is_refused() {
    let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = b64(valid().to_string().as_bytes());
    let verifier = verifier();
    for token in [
        format!("{header}.{payload}."),
        format!("{header}.{payload}"),
    ] {
        assert_eq!(
            refused(&verifier, &token),
            "the identity token is malformed"
        );
    }
}

#[test]
fn an_hs256_token_keyed_with_the_rsa_public_key_is_refused() {
    let verifier = verifier();
    let header = json!({ "alg": "HS256", "typ": "JWT", "kid": "rsa-1" });
    for secret in [
        read_fixture("rsa-1-public.pem"),
        rsa_1_modulus().into_bytes(),
    ] {
        let token = hmac_signed(&header, &valid(), &secret);
        assert_eq!(
            refused(&verifier, &token),
            "the identity token's signature does not verify"
        );
    }
}

#[test]
fn an_hs256_token_is_refused_when_only_a_jwks_is_configured() {
    let verifier = JwtIdentity::new(JwtSettings {
        hs256_secret: None,
        ..settings()
    })
    .expect("a valid configuration");
    let header = json!({ "alg": "HS256", "typ": "JWT", "kid": "rsa-1" });
    for secret in [
        read_fixture("rsa-1-public.pem"),
        rsa_1_modulus().into_bytes(),
    ] {
        let token = hmac_signed(&header, &valid(), &secret);
        assert_eq!(
            refused(&verifier, &token),
            "the identity token's algorithm is not accepted"
        );
    }
    assert_eq!(
        refused(&verifier, &hs256(SECRET, &valid())),
        "the identity token's algorithm is not accepted"
    );
}

#[test]
fn an_rs256_token_with_an_hmac_signature_is_refused() {
    let header = json!({ "alg": "RS256", "typ": "JWT", "kid": "rsa-1" });
    let token = hmac_signed(&header, &valid(), &read_fixture("rsa-1-public.pem"));
    assert_eq!(
        refused(&verifier(), &token),
        "the identity token's signature does not verify"
    );
}

#[test]
fn a_token_naming_a_key_of_another_algorithm_is_refused() {
    let token = es256(Some("rsa-1"), &valid());
    assert_eq!(
        refused(&verifier(), &token),
        "the identity token's algorithm does not match its key"
    );
}

#[test]
fn a_token_of_an_algorithm_outside_the_three_accepted_is_refused() {
    let key = EncodingKey::from_secret(SECRET).expect("a secret");
    let token = sign(Algorithm::HS512, None, &key, &valid());
    assert_eq!(
        refused(&verifier(), &token),
        "the identity token's algorithm is not accepted"
    );
}

#[test]
fn a_token_of_a_kid_not_in_the_set_is_refused() {
    let token = rs256("rsa-1-private.pem", Some("rsa-9"), &valid());
    assert_eq!(
        refused(&verifier(), &token),
        "no key for the identity token's kid"
    );
}

#[test]
fn a_token_whose_sub_is_not_a_uuid_is_refused() {
    let token = hs256(SECRET, &claims(json!({ "sub": "alice" })));
    assert_eq!(
        refused(&verifier(), &token),
        "the identity token's sub is not a user id (a UUID)"
    );
}

#[test]
fn a_token_without_exp_is_refused() {
    let token = hs256(SECRET, &claims(json!({ "exp": null })));
    assert_eq!(
        refused(&verifier(), &token),
        "the identity token has no exp claim"
    );
}

#[test]
fn a_token_without_sub_iss_or_aud_is_refused() {
    let verifier = verifier();
    for claim in ["sub", "iss", "aud"] {
        let token = hs256(SECRET, &claims(json!({ claim: null })));
        assert_eq!(
            refused(&verifier, &token),
            format!("the identity token has no {claim} claim")
        );
    }
}

#[test]
fn garbage_is_refused_as_malformed() {
    let verifier = verifier();
    let too_long = "a".repeat(10_000);
    for token in ["", "Bearer", "a.b.c", "not.a.jwt.at.all", too_long.as_str()] {
        assert_eq!(refused(&verifier, token), "the identity token is malformed");
    }
}

#[test]
fn reload_picks_up_a_changed_jwks_file() {
    let file = TempFile::with(&read_fixture("jwks.json"));
    let verifier = JwtIdentity::new(JwtSettings {
        jwks_file: Some(file.0.clone()),
        ..settings()
    })
    .expect("a valid configuration");
    assert_eq!(verifier.jwks_file(), Some(file.0.as_path()));
    let rsa_1 = rs256("rsa-1-private.pem", Some("rsa-1"), &valid());
    let rsa_2 = rs256("rsa-2-private.pem", Some("rsa-2"), &valid());
    assert_eq!(verifier.verify(&rsa_1), Ok(user()));
    assert_eq!(
        refused(&verifier, &rsa_2),
        "no key for the identity token's kid"
    );

    file.write(&read_fixture("jwks-rsa-2.json"));
    assert_eq!(verifier.reload().expect("reloaded"), 1);

    assert_eq!(
        refused(&verifier, &rsa_1),
        "no key for the identity token's kid"
    );
    assert_eq!(verifier.verify(&rsa_2), Ok(user()));
}

#[test]
fn a_broken_jwks_on_reload_keeps_the_old_keys() {
    let file = TempFile::with(&read_fixture("jwks.json"));
    let verifier = JwtIdentity::new(JwtSettings {
        jwks_file: Some(file.0.clone()),
        ..settings()
    })
    .expect("a valid configuration");
    let rsa_1 = rs256("rsa-1-private.pem", Some("rsa-1"), &valid());

    file.write(b"{ \"keys\": [ truncated");
    assert!(matches!(
        verifier.reload(),
        Err(IdentityConfigError::JwksNotJson { .. })
    ));
    assert_eq!(verifier.verify(&rsa_1), Ok(user()));

    file.write(br#"{"keys": []}"#);
    assert!(matches!(
        verifier.reload(),
        Err(IdentityConfigError::NoUsableKey { .. })
    ));
    assert_eq!(verifier.verify(&rsa_1), Ok(user()));
}

#[test]
fn reload_without_a_jwks_file_has_nothing_to_do() {
    let verifier = JwtIdentity::new(JwtSettings {
        jwks_file: None,
        ..settings()
    })
    .expect("a valid configuration");
    assert_eq!(verifier.jwks_file(), None);
    assert_eq!(verifier.reload().expect("nothing to reload"), 0);
    assert_eq!(verifier.verify(&hs256(SECRET, &valid())), Ok(user()));
}

#[test]
fn no_key_is_a_configuration_error() {
    let error = config_error(JwtSettings {
        hs256_secret: None,
        jwks_file: None,
        ..settings()
    });
    assert!(matches!(error, IdentityConfigError::NoKey));
}

#[test]
fn a_secret_shorter_than_32_bytes_is_a_configuration_error() {
    let error = config_error(JwtSettings {
        hs256_secret: Some(b"thirty-one-bytes-of-a-secret-!!".to_vec()),
        ..settings()
    });
    assert!(matches!(
        error,
        IdentityConfigError::ShortSecret { len: 31 }
    ));
    assert!(!error.to_string().contains("thirty-one"));
}

#[test]
fn a_jwks_without_usable_keys_is_a_configuration_error() {
    let file = TempFile::with(
        br#"{"keys": [{"kty": "oct", "kid": "k", "alg": "HS256", "k": "c2VjcmV0"}]}"#,
    );
    let error = config_error(JwtSettings {
        jwks_file: Some(file.0.clone()),
        ..settings()
    });
    assert!(matches!(error, IdentityConfigError::UnusableKey { .. }));
    assert!(
        error.to_string().contains("is not RS256 or ES256"),
        "{error}"
    );

    file.write(br#"{"keys": []}"#);
    let error = config_error(JwtSettings {
        jwks_file: Some(file.0.clone()),
        ..settings()
    });
    assert!(matches!(error, IdentityConfigError::NoUsableKey { .. }));
}

#[test]
fn an_unreadable_or_non_json_jwks_is_a_configuration_error() {
    let error = config_error(JwtSettings {
        jwks_file: Some(PathBuf::from("/nonexistent/jwks.json")),
        ..settings()
    });
    assert!(matches!(error, IdentityConfigError::JwksUnreadable { .. }));
    assert!(error.to_string().contains("/nonexistent/jwks.json"));

    let file = TempFile::with(b"-----BEGIN PUBLIC KEY-----");
    let error = config_error(JwtSettings {
        jwks_file: Some(file.0.clone()),
        ..settings()
    });
    assert!(matches!(error, IdentityConfigError::JwksNotJson { .. }));
}

#[test]
fn an_empty_issuer_or_audience_is_a_configuration_error() {
    let error = config_error(JwtSettings {
        issuer: String::new(),
        ..settings()
    });
    assert!(matches!(error, IdentityConfigError::NoIssuer));
    let error = config_error(JwtSettings {
        audience: String::new(),
        ..settings()
    });
    assert!(matches!(error, IdentityConfigError::NoAudience));
}

#[test]
fn a_leeway_over_an_hour_is_a_configuration_error() {
    let error = config_error(JwtSettings {
        leeway: Duration::from_secs(3601),
        ..settings()
    });
    assert!(matches!(
        error,
        IdentityConfigError::LeewayTooLong { seconds: 3601 }
    ));
}

#[test]
fn debug_output_never_shows_the_secret() {
    let secret = std::str::from_utf8(SECRET).expect("ASCII");
    let settings = format!("{:?}", settings());
    let verifier = format!("{:?}", verifier());
    for debug in [settings, verifier] {
        assert!(!debug.contains(secret), "{debug}");
        assert!(!debug.contains(&format!("{:?}", SECRET)), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
    }
}
