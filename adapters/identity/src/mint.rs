//! Minting HS256 identity tokens, for the token tool and tests: a deployment gets its tokens from
//! its identity system, but trying `jwt` mode needs a token the server accepts.

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde::Serialize;

/// The claims of a minted token; times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MintClaims {
    pub sub: String,
    pub iss: String,
    pub aud: String,
    pub exp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    pub iat: i64,
}

/// A token signed with the HS256 `secret`, as the identity system would issue it.
pub fn mint_hs256(
    secret: &[u8],
    claims: &MintClaims,
) -> Result<String, jsonwebtoken::errors::Error> {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret)?,
    )
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::dangerous::insecure_decode;

    use super::*;

    fn claims(nbf: Option<i64>) -> MintClaims {
        MintClaims {
            sub: "3f1c9a52-0000-4000-8000-000000000001".into(),
            iss: "issuer".into(),
            aud: "audience".into(),
            exp: 2_000_000_000,
            nbf,
            iat: 1_900_000_000,
        }
    }

    #[test]
    fn a_minted_token_carries_its_claims_and_no_nbf_unless_given() {
        let token = mint_hs256(b"secret", &claims(None)).expect("minted");
        let decoded = insecure_decode::<serde_json::Value>(&token).expect("decoded");
        assert_eq!(decoded.header.alg, Algorithm::HS256);
        assert_eq!(
            decoded.claims,
            serde_json::json!({
                "sub": "3f1c9a52-0000-4000-8000-000000000001",
                "iss": "issuer",
                "aud": "audience",
                "exp": 2_000_000_000,
                "iat": 1_900_000_000,
            })
        );

        let token = mint_hs256(b"secret", &claims(Some(1_950_000_000))).expect("minted");
        let decoded = insecure_decode::<serde_json::Value>(&token).expect("decoded");
        assert_eq!(decoded.claims["nbf"], 1_950_000_000);
    }

    #[test]
    fn an_empty_secret_mints_nothing() {
        assert!(mint_hs256(b"", &claims(None)).is_err());
    }
}
