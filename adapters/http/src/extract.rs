//! Extractors whose every refusal is a problem+json answer: bad input is `400 VALIDATION_FAILED`
//! naming the field, never a 500 nor axum's plain-text rejection.

use std::error::Error as StdError;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use concert_application::authorize_request::ActiveUser;
use concert_application::ports::TokenClaims;
use concert_domain::{ConcertId, IdempotencyKey, ParseError, ReservationId, UserId};
use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer, Error as _};
use time::Date;

use crate::AppState;
use crate::format::parse_calendar_date;
use crate::problem::{ErrorCode, Problem, admin_key_invalid};

/// The message of the error beneath a rejection (axum prefixes it with a fixed sentence).
fn cause_of(rejection: &dyn StdError) -> String {
    rejection
        .source()
        .map_or_else(|| rejection.to_string(), ToString::to_string)
}

/// A JSON request body, which must be a JSON object. Missing or wrong `Content-Type` → 415, over
/// the body limit → 413, malformed JSON, another JSON value than an object, or a missing or
/// mistyped field → 400 naming the field.
#[derive(Debug, Clone, Copy, Default)]
pub struct ValidJson<T>(pub T);

impl<S, T> FromRequest<S> for ValidJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Problem> {
        if !has_json_content_type(request.headers()) {
            return Err(Problem::new(
                ErrorCode::UnsupportedMediaType,
                "the request body must be sent with `Content-Type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    Problem::new(
                        ErrorCode::PayloadTooLarge,
                        format!(
                            "the request body is larger than {} bytes",
                            crate::MAX_BODY_BYTES
                        ),
                    )
                } else if body_timed_out(&rejection) {
                    Problem::new(
                        ErrorCode::RequestTimeout,
                        "the request body did not arrive in time",
                    )
                } else {
                    Problem::validation(format!(
                        "the request body could not be read: {}",
                        cause_of(&rejection)
                    ))
                }
            })?;
        // A struct would also deserialise from a JSON array; the API takes objects only.
        let first = bytes
            .iter()
            .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
        if first != Some(&b'{') {
            return Err(Problem::validation("request body: must be a JSON object"));
        }
        Json::<T>::from_bytes(&bytes)
            .map(|Json(value)| Self(value))
            .map_err(json_problem)
    }
}

/// Whether reading the body failed because it missed its deadline (`HTTP_BODY_TIMEOUT_SECONDS`).
fn body_timed_out(rejection: &(dyn StdError + 'static)) -> bool {
    let mut cause: Option<&(dyn StdError + 'static)> = Some(rejection);
    while let Some(error) = cause {
        if error.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = error.source();
    }
    false
}

/// `application/json`, or any `application/*+json`, with any parameters.
fn has_json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|subtype| subtype.ends_with("+json"))
}

fn json_problem(rejection: JsonRejection) -> Problem {
    match rejection {
        JsonRejection::JsonDataError(error) => {
            Problem::validation(format!("request body: {}", cause_of(&error)))
        }
        JsonRejection::JsonSyntaxError(error) => Problem::validation(format!(
            "request body is not valid JSON: {}",
            cause_of(&error)
        )),
        other => Problem::validation(format!("request body: {}", cause_of(&other))),
    }
}

/// A value of one path segment, parsed into its domain type. The error names the parameter.
pub trait PathValue: Sized {
    fn parse_path(raw: &str) -> Result<Self, ParseError>;
}

impl PathValue for ConcertId {
    fn parse_path(raw: &str) -> Result<Self, ParseError> {
        raw.parse()
    }
}

impl PathValue for ReservationId {
    fn parse_path(raw: &str) -> Result<Self, ParseError> {
        raw.parse()
    }
}

impl PathValue for UserId {
    fn parse_path(raw: &str) -> Result<Self, ParseError> {
        UserId::parse(raw)
    }
}

impl PathValue for Date {
    fn parse_path(raw: &str) -> Result<Self, ParseError> {
        parse_calendar_date(raw).map_err(|reason| ParseError::new("date", reason))
    }
}

/// One path parameter, deserialised through its [`PathValue`] parser.
#[derive(Debug, Clone, Copy)]
pub struct Param<T>(pub T);

impl<'de, T: PathValue> Deserialize<'de> for Param<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        T::parse_path(&raw).map(Param).map_err(D::Error::custom)
    }
}

/// Path parameters: a [`Param`] or a tuple of them. Any refusal → 400 naming the parameter.
#[derive(Debug, Clone, Copy)]
pub struct ValidPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ValidPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(Self(value)),
            Err(PathRejection::FailedToDeserializePathParams(error)) => {
                Err(Problem::validation(error.kind().to_string()))
            }
            Err(other) => {
                // Only a route registered without its parameters gets here: a bug.
                tracing::error!(rejection = %other, "path parameters missing");
                Err(Problem::internal())
            }
        }
    }
}

/// A query string. Any refusal → 400 naming the parameter.
#[derive(Debug, Clone, Copy, Default)]
pub struct ValidQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ValidQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| Self(value))
            .map_err(|rejection: QueryRejection| {
                Problem::validation(format!("query string: {}", cause_of(&rejection)))
            })
    }
}

/// The credentials of `Authorization: Bearer <credentials>`, if the header has that form.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credentials) = value.trim().split_once(' ')?;
    let credentials = credentials.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !credentials.is_empty()).then_some(credentials)
}

fn token_missing() -> Problem {
    Problem::new(
        ErrorCode::TokenInvalid,
        "send the queue token as `Authorization: Bearer <token>`",
    )
}

/// The raw queue token of `Authorization: Bearer`; missing or not Bearer → 401 TOKEN_INVALID.
#[derive(Debug, Clone)]
pub struct QueueToken(pub String);

impl<S: Send + Sync> FromRequestParts<S> for QueueToken {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Problem> {
        bearer(&parts.headers)
            .map(|token| Self(token.to_owned()))
            .ok_or_else(token_missing)
    }
}

/// The caller of a protected endpoint: a user whose queue token is `ACTIVE` now.
#[derive(Debug, Clone, Copy)]
pub struct Caller(pub ActiveUser);

impl FromRequestParts<AppState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let token = bearer(&parts.headers).ok_or_else(token_missing)?;
        Ok(Self(state.services().authorize.execute(token).await?))
    }
}

/// The claims of a validly signed queue token, whatever its status (the payment endpoint decides
/// itself when a token must be active).
#[derive(Debug, Clone, Copy)]
pub struct VerifiedToken(pub TokenClaims);

impl FromRequestParts<AppState> for VerifiedToken {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let token = bearer(&parts.headers).ok_or_else(token_missing)?;
        Ok(Self(state.services().authorize.verify(token)?))
    }
}

/// The identity token of `Authorization: Bearer`, if any. Whether one is needed, and whether it
/// is valid, is [`IdentifyCaller`](concert_application::identify_caller::IdentifyCaller)'s call.
#[derive(Debug, Clone, Default)]
pub struct IdentityCredentials(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdentityCredentials {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Problem> {
        Ok(Self(bearer(&parts.headers).map(str::to_owned)))
    }
}

/// The user of a points path (`/v1/users/{userId}/...`) whom the caller may act for: checked
/// before the body is read, so a caller without the right identity learns nothing more.
#[derive(Debug, Clone, Copy)]
pub struct PathUser(pub UserId);

impl FromRequestParts<AppState> for PathUser {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let ValidPath(Param(named)) =
            ValidPath::<Param<UserId>>::from_request_parts(parts, state).await?;
        let credentials = bearer(&parts.headers);
        Ok(Self(
            state
                .services()
                .identify_caller
                .acting_user(credentials, Some(named))?,
        ))
    }
}

/// The client's address (see [`crate::limits::JoinLimits::client_address`]); `None` when the
/// connection's peer is not known (a router called in-process).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddress(pub Option<std::net::IpAddr>);

impl FromRequestParts<AppState> for ClientAddress {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>();
        Ok(Self(state.join_limits.client_address(peer, &parts.headers)))
    }
}

/// The key presented to the admin endpoint; missing or not Bearer → 401 ADMIN_KEY_INVALID.
/// Whether it is the right key is the use case's decision.
#[derive(Debug, Clone)]
pub struct AdminBearer(pub String);

impl<S: Send + Sync> FromRequestParts<S> for AdminBearer {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Problem> {
        bearer(&parts.headers)
            .map(|key| Self(key.to_owned()))
            .ok_or_else(admin_key_invalid)
    }
}

/// The optional `Idempotency-Key` header: 1 to 64 visible ASCII characters, sent at most once.
#[derive(Debug, Clone, Default)]
pub struct IdempotencyKeyHeader(pub Option<IdempotencyKey>);

/// The header's name as the API documents it.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKeyHeader {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Problem> {
        let mut values = parts.headers.get_all(IDEMPOTENCY_KEY).iter();
        let Some(value) = values.next() else {
            return Ok(Self(None));
        };
        if values.next().is_some() {
            return Err(Problem::validation(format!(
                "{IDEMPOTENCY_KEY}: must be sent at most once"
            )));
        }
        let raw = value.to_str().map_err(|_| {
            Problem::validation(format!(
                "{IDEMPOTENCY_KEY}: must be visible ASCII characters only"
            ))
        })?;
        Ok(Self(Some(IdempotencyKey::parse(raw)?)))
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(authorization: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(authorization).expect("header"),
        );
        headers
    }

    #[test]
    fn json_content_types_are_recognised_with_their_parameters() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_str(value).expect("v"),
            );
            has_json_content_type(&headers)
        };
        assert!(with("application/json"));
        assert!(with("Application/JSON; charset=utf-8"));
        assert!(with("application/merge-patch+json"));
        assert!(!with("text/plain"));
        assert!(!with("application/jsonx"));
        assert!(!with("text/json"));
        assert!(!has_json_content_type(&HeaderMap::new()));
    }

    #[test]
    fn bearer_credentials_are_read_case_insensitively_and_trimmed() {
        assert_eq!(bearer(&headers("Bearer abc")), Some("abc"));
        assert_eq!(bearer(&headers("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(&headers("Basic abc")), None);
        assert_eq!(bearer(&headers("Bearer")), None);
        assert_eq!(bearer(&headers("Bearer   ")), None);
        assert_eq!(bearer(&HeaderMap::new()), None);
    }
}
