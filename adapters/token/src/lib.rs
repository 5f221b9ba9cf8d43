//! Queue tokens as `base64url(payload).base64url(mac)`: the payload is
//! `v2.<key id>.<user uuid>.<ticket>.<issued unix seconds>`, the MAC is HMAC-SHA256 over the
//! payload with the key the id names. Any instance verifies a token without a database read.
//!
//! Keys rotate without throwing anyone out of line: an instance signs with one key and verifies
//! with a set, so a token signed with the previous key (or, during a rolling change, the next
//! one) still verifies. A key's id is derived from the key itself, so instances agree on ids
//! without configuring them. Tokens of the first format (`v1`, no key id) are still verified,
//! against every key of the set.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use concert_application::ports::{InvalidToken, TokenClaims, TokenSigner};
use concert_domain::{TicketNo, UserId};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

type HmacSha256 = Hmac<Sha256>;

const VERSION: &str = "v2";
const LEGACY_VERSION: &str = "v1";
/// Far longer than any token this service issues; refuses garbage before decoding it.
const MAX_TOKEN_LEN: usize = 512;

/// One HMAC key and its id.
#[derive(Clone)]
struct Key {
    id: String,
    /// The MAC already keyed: cloning it per token skips hashing the key again on the hot path.
    keyed: HmacSha256,
}

impl Key {
    fn new(secret: &[u8]) -> Self {
        // HMAC accepts keys of any length, so this cannot fail.
        let keyed = <HmacSha256 as Mac>::new_from_slice(secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        Self {
            id: key_id(secret),
            keyed,
        }
    }

    fn verifies(&self, payload: &[u8], tag: &[u8]) -> bool {
        let mut mac = self.keyed.clone();
        mac.update(payload);
        mac.verify_slice(tag).is_ok()
    }
}

/// The id of a key: 8 hex digits of a hash of it (reveals nothing usable about the key, and
/// every instance derives the same one).
pub fn key_id(secret: &[u8]) -> String {
    let digest = Sha256::new()
        .chain_update(b"concert-queue token key id\0")
        .chain_update(secret)
        .finalize();
    digest[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// Signs with one key, verifies with that key and any others given. Keys stay out of `Debug`.
#[derive(Clone)]
pub struct HmacTokenSigner {
    signing: Key,
    /// Every key a token may be signed with, the signing key included.
    verifying: Vec<Key>,
}

impl std::fmt::Debug for HmacTokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HmacTokenSigner")
            .field("signing_key_id", &self.signing.id)
            .field(
                "verifying_key_ids",
                &self.verifying.iter().map(|k| &k.id).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl HmacTokenSigner {
    /// One key, signing and verifying.
    pub fn new(secret: &[u8]) -> Self {
        Self::with_keys::<&[u8]>(secret, &[])
    }

    /// Signs with `signing`; verifies with it and with `also_verifying` (previous or next keys).
    pub fn with_keys<S: AsRef<[u8]>>(signing: &[u8], also_verifying: &[S]) -> Self {
        let signing = Key::new(signing);
        let mut verifying = vec![signing.clone()];
        for secret in also_verifying {
            let key = Key::new(secret.as_ref());
            if verifying.iter().all(|known| known.id != key.id) {
                verifying.push(key);
            }
        }
        Self { signing, verifying }
    }

    /// The id of the signing key.
    pub fn signing_key_id(&self) -> &str {
        &self.signing.id
    }
}

impl TokenSigner for HmacTokenSigner {
    fn sign(&self, claims: &TokenClaims) -> String {
        let payload = format!(
            "{VERSION}.{}.{}.{}.{}",
            self.signing.id,
            claims.user.get().simple(),
            claims.ticket.get(),
            claims.issued_at.unix_timestamp()
        );
        let mut mac = self.signing.keyed.clone();
        mac.update(payload.as_bytes());
        let tag = mac.finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    fn verify(&self, token: &str) -> Result<TokenClaims, InvalidToken> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(InvalidToken);
        }
        let (payload, tag) = token.split_once('.').ok_or(InvalidToken)?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| InvalidToken)?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| InvalidToken)?;
        let text = std::str::from_utf8(&payload).map_err(|_| InvalidToken)?;
        let (version, rest) = text.split_once('.').ok_or(InvalidToken)?;
        let verified = match version {
            VERSION => {
                let (id, _) = rest.split_once('.').ok_or(InvalidToken)?;
                self.verifying
                    .iter()
                    .find(|key| key.id == id)
                    .is_some_and(|key| key.verifies(&payload, &tag))
            }
            LEGACY_VERSION => self
                .verifying
                .iter()
                .any(|key| key.verifies(&payload, &tag)),
            _ => false,
        };
        if !verified {
            return Err(InvalidToken);
        }
        parse_claims(version, rest).ok_or(InvalidToken)
    }
}

/// The claims after the version (and, in `v2`, after the key id).
fn parse_claims(version: &str, rest: &str) -> Option<TokenClaims> {
    let mut parts = rest.split('.');
    if version == VERSION {
        parts.next()?;
    }
    let (user, ticket, issued) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    Some(TokenClaims {
        user: UserId::from_uuid(Uuid::try_parse(user).ok()?),
        ticket: TicketNo::new(ticket.parse().ok()?).ok()?,
        issued_at: OffsetDateTime::from_unix_timestamp(issued.parse().ok()?).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn claims() -> TokenClaims {
        TokenClaims {
            user: UserId::from_uuid(Uuid::from_u128(0x3f1c_9a52)),
            ticket: TicketNo::new(598).expect("ticket"),
            issued_at: datetime!(2026-12-01 12:00 UTC),
        }
    }

    #[test]
    fn a_signed_token_verifies_to_its_claims() {
        let signer = HmacTokenSigner::new(b"secret");
        let token = signer.sign(&claims());
        assert_eq!(signer.verify(&token), Ok(claims()));
    }

    #[test]
    fn a_token_signed_with_another_key_is_refused() {
        let token = HmacTokenSigner::new(b"one key").sign(&claims());
        assert_eq!(
            HmacTokenSigner::new(b"another key").verify(&token),
            Err(InvalidToken)
        );
    }

    #[test]
    fn an_altered_token_is_refused() {
        let signer = HmacTokenSigner::new(b"secret");
        let token = signer.sign(&claims());
        let (payload, tag) = token.split_once('.').expect("two parts");
        let forged_payload = URL_SAFE_NO_PAD.encode(format!(
            "v2.{}.{}.1.{}",
            signer.signing_key_id(),
            claims().user.get().simple(),
            claims().issued_at.unix_timestamp()
        ));
        assert_eq!(
            signer.verify(&format!("{forged_payload}.{tag}")),
            Err(InvalidToken)
        );
        let mut flipped = tag.to_owned().into_bytes();
        flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).expect("ascii");
        assert_eq!(
            signer.verify(&format!("{payload}.{flipped}")),
            Err(InvalidToken)
        );
    }

    #[test]
    fn garbage_is_not_a_token() {
        let signer = HmacTokenSigner::new(b"secret");
        for garbage in ["", ".", "abc", "a.b", "a.b.c", &"x".repeat(600), "ü.ü"] {
            assert_eq!(signer.verify(garbage), Err(InvalidToken), "{garbage:?}");
        }
    }

    #[test]
    fn debug_output_hides_the_key() {
        let shown = format!("{:?}", HmacTokenSigner::new(b"very secret"));
        assert!(!shown.contains("very secret"));
    }

    /// A token of the first format (no key id), as instances before key rotation issued.
    fn legacy_token(secret: &[u8]) -> String {
        let payload = format!(
            "v1.{}.{}.{}",
            claims().user.get().simple(),
            claims().ticket.get(),
            claims().issued_at.unix_timestamp()
        );
        let mut mac = <HmacSha256 as Mac>::new_from_slice(secret).expect("a key");
        mac.update(payload.as_bytes());
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    }

    #[test]
    fn a_token_names_the_key_that_signed_it() {
        let signer = HmacTokenSigner::new(b"secret");
        let token = signer.sign(&claims());
        let payload = URL_SAFE_NO_PAD
            .decode(token.split_once('.').expect("two parts").0)
            .expect("base64");
        let payload = String::from_utf8(payload).expect("text");
        assert!(
            payload.starts_with(&format!("v2.{}.", key_id(b"secret"))),
            "{payload}"
        );
        assert_eq!(key_id(b"secret").len(), 8);
        assert_ne!(key_id(b"secret"), key_id(b"secret2"));
    }

    #[test]
    fn during_a_rotation_tokens_of_either_key_verify_on_both_sides() {
        let (old, new) = (b"the previous key".as_slice(), b"the next key".as_slice());
        let still_old = HmacTokenSigner::with_keys(old, &[new]);
        let already_new = HmacTokenSigner::with_keys(new, &[old]);
        let finished = HmacTokenSigner::with_keys(new, &[old]);

        for token in [still_old.sign(&claims()), already_new.sign(&claims())] {
            assert_eq!(still_old.verify(&token), Ok(claims()));
            assert_eq!(already_new.verify(&token), Ok(claims()));
            assert_eq!(finished.verify(&token), Ok(claims()));
        }
        // Once the old key is dropped from the set, its tokens are refused.
        let old_token = still_old.sign(&claims());
        assert_eq!(
            HmacTokenSigner::new(new).verify(&old_token),
            Err(InvalidToken)
        );
    }

    #[test]
    fn a_token_naming_one_key_but_signed_with_another_is_refused() {
        let (one, other) = (b"key one".as_slice(), b"key two".as_slice());
        let signer = HmacTokenSigner::with_keys(one, &[other]);
        let token = HmacTokenSigner::new(other).sign(&claims());
        let (payload, tag) = token.split_once('.').expect("two parts");
        let text = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("text");
        let renamed = text.replacen(&key_id(other), &key_id(one), 1);
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(renamed));
        assert_eq!(signer.verify(&forged), Err(InvalidToken));
        assert_eq!(
            signer.verify(&token),
            Ok(claims()),
            "the genuine one verifies"
        );
    }

    #[test]
    fn tokens_of_the_first_format_verify_against_any_key_of_the_set() {
        let signer = HmacTokenSigner::with_keys(b"new key", &[b"old key"]);
        assert_eq!(signer.verify(&legacy_token(b"old key")), Ok(claims()));
        assert_eq!(signer.verify(&legacy_token(b"new key")), Ok(claims()));
        assert_eq!(signer.verify(&legacy_token(b"unknown")), Err(InvalidToken));
    }
}
