//! Queue tokens as `base64url(payload).base64url(mac)`: the payload is
//! `v1.<user uuid>.<ticket>.<issued unix seconds>`, the MAC is HMAC-SHA256 over the payload with
//! the deployment's shared `TOKEN_SECRET`. Any instance verifies a token without a database read.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use concert_application::ports::{InvalidToken, TokenClaims, TokenSigner};
use concert_domain::{TicketNo, UserId};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use time::OffsetDateTime;
use uuid::Uuid;

type HmacSha256 = Hmac<Sha256>;

const VERSION: &str = "v1";
/// Far longer than any token this service issues; refuses garbage before decoding it.
const MAX_TOKEN_LEN: usize = 512;

/// Signs with one secret key. The key is kept out of `Debug` output.
#[derive(Clone)]
pub struct HmacTokenSigner {
    /// The MAC already keyed: cloning it per token skips hashing the key again on the hot path.
    keyed: HmacSha256,
}

impl std::fmt::Debug for HmacTokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HmacTokenSigner { key: <redacted> }")
    }
}

impl HmacTokenSigner {
    pub fn new(secret: &[u8]) -> Self {
        // HMAC accepts keys of any length, so this cannot fail.
        let keyed = <HmacSha256 as Mac>::new_from_slice(secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        Self { keyed }
    }

    fn mac(&self) -> HmacSha256 {
        self.keyed.clone()
    }
}

impl TokenSigner for HmacTokenSigner {
    fn sign(&self, claims: &TokenClaims) -> String {
        let payload = format!(
            "{VERSION}.{}.{}.{}",
            claims.user.get().simple(),
            claims.ticket.get(),
            claims.issued_at.unix_timestamp()
        );
        let mut mac = self.mac();
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
        let mut mac = self.mac();
        mac.update(&payload);
        mac.verify_slice(&tag).map_err(|_| InvalidToken)?;
        parse_payload(&payload).ok_or(InvalidToken)
    }
}

fn parse_payload(payload: &[u8]) -> Option<TokenClaims> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut parts = text.split('.');
    let (version, user, ticket, issued) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version != VERSION || parts.next().is_some() {
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
            "v1.{}.1.{}",
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
}
