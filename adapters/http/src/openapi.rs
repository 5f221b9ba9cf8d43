//! The parts of the OpenAPI document that no handler carries: info, tags, security schemes and
//! the shared problem schema.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::problem::{ErrorCode, ProblemBody};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Concert booking service",
        description = "A virtual waiting queue in front of seat holds, prepaid points and payment.\n\n\
            Every error is `application/problem+json` (RFC 9457) with a stable machine-readable `code`. \
            Requests the router itself refuses are problem+json too: unknown path `404 NOT_FOUND`, \
            wrong method `405 METHOD_NOT_ALLOWED`, a body over 64 KiB `413 PAYLOAD_TOO_LARGE` (with \
            `connection: close`), a request target over 8 KiB `414 URI_TOO_LONG`, more than 100 \
            header lines or a header section over 32 KiB `431 HEADERS_TOO_LARGE`, a JSON \
            body without `Content-Type: application/json` `415 UNSUPPORTED_MEDIA_TYPE`, a bug \
            `500 INTERNAL_ERROR`, an unreachable database `503 SERVICE_UNAVAILABLE` (with `Retry-After`). \
            Every response carries an `x-request-id` header (the client's own when it is 1 to 128 \
            visible ASCII characters).",
        license(name = "MIT OR Apache-2.0"),
    ),
    modifiers(&SecuritySchemes),
    components(schemas(ProblemBody, ErrorCode)),
    tags(
        (name = "queue", description = "The waiting queue: tokens and their status"),
        (name = "catalog", description = "Concerts, dates and seats (ACTIVE queue token)"),
        (name = "reservations", description = "Seat holds (ACTIVE queue token)"),
        (name = "points", description = "Prepaid points (no queue token; the caller's identity token in `jwt` identity mode)"),
        (name = "payments", description = "Payment of a held seat (ACTIVE queue token)"),
        (name = "admin", description = "Catalog administration (admin API key)"),
        (name = "operations", description = "Health, metrics and this document"),
    )
)]
pub struct ApiDoc;

/// `queueToken` (the signed queue token), `identityJwt` (the operator's identity token, in
/// `jwt` identity mode) and `adminKey` (`ADMIN_API_KEY`), all as `Authorization: Bearer`.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "queueToken",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("queue token")
                    .description(Some(
                        "The token from `POST /v1/queue/tokens`. Missing, forged or unparseable: \
                         401 TOKEN_INVALID; ended: 401 TOKEN_EXPIRED; still waiting: 403 QUEUE_NOT_ACTIVE.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "identityJwt",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "With IDENTITY_MODE=jwt: a JWT of the operator's identity system (HS256, or \
                         RS256/ES256 from its JWKS) with the configured `iss` and `aud`, valid \
                         `exp`/`nbf`, and the user's id as `sub`. Missing or not valid: 401 \
                         IDENTITY_INVALID; a request naming another user: 403 IDENTITY_MISMATCH. \
                         With IDENTITY_MODE=trusted (the default) no credentials are needed.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "adminKey",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The deployment's ADMIN_API_KEY. Missing or wrong: 401 ADMIN_KEY_INVALID.",
                    ))
                    .build(),
            ),
        );
    }
}

/// What every operation shares, added once the route table has contributed its paths: the
/// `x-request-id` header on every answer, `500 INTERNAL_ERROR` on every operation, and
/// `Retry-After` on every `503`.
pub fn complete(mut openapi: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    use utoipa::openapi::header::HeaderBuilder;
    use utoipa::openapi::response::ResponseBuilder;
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, Type};

    let integer = || utoipa::openapi::ObjectBuilder::new().schema_type(Type::Integer);
    let request_id = HeaderBuilder::new()
        .schema(Some(
            utoipa::openapi::ObjectBuilder::new().schema_type(Type::String),
        ))
        .description(Some(
            "The request's id: the client's own when it is 1 to 128 visible ASCII characters, \
             else a new UUID. Quote it when reporting a problem.",
        ))
        .build();
    let retry_after = HeaderBuilder::new()
        .schema(Some(integer()))
        .description(Some("Seconds to wait before trying again."))
        .build();
    let internal_error = ResponseBuilder::new()
        .description("INTERNAL_ERROR: a bug, logged with the request id")
        .content(
            crate::problem::PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build();

    for item in openapi.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ];
        for operation in operations.into_iter().flatten() {
            let responses = &mut operation.responses.responses;
            responses
                .entry("500".to_owned())
                .or_insert_with(|| RefOr::T(internal_error.clone()));
            for (status, response) in responses.iter_mut() {
                let RefOr::T(response) = response else {
                    continue;
                };
                response
                    .headers
                    .insert("x-request-id".to_owned(), RefOr::T(request_id.clone()));
                if status == "503" {
                    response
                        .headers
                        .insert("Retry-After".to_owned(), RefOr::T(retry_after.clone()));
                }
            }
        }
    }
    openapi
}
