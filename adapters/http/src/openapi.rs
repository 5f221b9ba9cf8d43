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
            wrong method `405 METHOD_NOT_ALLOWED`, a body over 64 KiB `413 PAYLOAD_TOO_LARGE`, a JSON \
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
        (name = "points", description = "Prepaid points (no token)"),
        (name = "payments", description = "Payment of a held seat (ACTIVE queue token)"),
        (name = "admin", description = "Catalog administration (admin API key)"),
        (name = "operations", description = "Health, metrics and this document"),
    )
)]
pub struct ApiDoc;

/// `queueToken` (the signed queue token) and `adminKey` (`ADMIN_API_KEY`), both as
/// `Authorization: Bearer`.
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
