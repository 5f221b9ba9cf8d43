//! The OpenAPI document: every endpoint of docs/API.md, with its schemas, problem+json errors and
//! security schemes.

use super::*;

/// Every operation of docs/API.md sections 1–7 (and the document itself).
const CONTRACT: &[(&str, &str)] = &[
    ("post", "/v1/queue/tokens"),
    ("get", "/v1/queue/status"),
    ("get", "/v1/queue/events"),
    ("delete", "/v1/queue/tokens/current"),
    ("post", "/v1/admin/rooms/{roomId}/revocations"),
    ("post", "/v1/admin/rooms"),
    ("get", "/v1/admin/rooms"),
    ("get", "/v1/admin/rooms/{roomId}"),
    ("patch", "/v1/admin/rooms/{roomId}"),
    ("get", "/v1/concerts"),
    ("get", "/v1/concerts/{concertId}/dates"),
    ("get", "/v1/concerts/{concertId}/dates/{date}/seats"),
    ("get", "/v1/concerts/{concertId}/dates/{date}/seat-map"),
    ("post", "/v1/reservations"),
    ("get", "/v1/reservations/{reservationId}"),
    ("delete", "/v1/reservations/{reservationId}"),
    ("post", "/v1/users/{userId}/points/charge"),
    ("get", "/v1/users/{userId}/points"),
    ("get", "/v1/users/{userId}/points/history"),
    ("post", "/v1/payments"),
    ("post", "/v1/admin/concerts"),
    ("get", "/health/live"),
    ("get", "/health/ready"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
];

fn document() -> Value {
    serde_json::to_value(crate::openapi()).expect("json")
}

/// Every `(method, path, operation)` of the document.
pub fn operations(document: &Value) -> Vec<(String, String, Value)> {
    let mut found = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            found.push((method.clone(), path.clone(), operation.clone()));
        }
    }
    found
}

#[test]
fn the_document_is_openapi_3_1_with_every_operation_of_the_contract() {
    let document = document();
    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1"))
    );
    let mut found: Vec<(String, String)> = operations(&document)
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect();
    found.sort();
    let mut expected: Vec<(String, String)> = CONTRACT
        .iter()
        .map(|(method, path)| ((*method).to_owned(), (*path).to_owned()))
        .collect();
    expected.sort();
    assert_eq!(found, expected);
}

#[test]
fn path_parameters_are_named_as_in_the_contract() {
    for (method, path, operation) in operations(&document()) {
        let declared: Vec<&str> = operation["parameters"]
            .as_array()
            .map(|params| {
                params
                    .iter()
                    .filter(|p| p["in"] == "path")
                    .filter_map(|p| p["name"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        let in_template: Vec<&str> = path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        assert_eq!(declared, in_template, "{method} {path}");
    }
}

#[test]
fn every_error_answer_is_documented_as_problem_json() {
    for (method, path, operation) in operations(&document()) {
        let responses = operation["responses"].as_object().expect("responses");
        assert!(responses.contains_key("500"), "{method} {path}");
        for (status, response) in responses {
            assert!(
                response["headers"]["x-request-id"].is_object(),
                "{method} {path} {status}: no x-request-id header"
            );
            let content = response["content"].as_object();
            if status.starts_with('4') || status.starts_with('5') {
                let problem = &content.expect("content")[PROBLEM_JSON]["schema"]["$ref"];
                assert_eq!(
                    problem, "#/components/schemas/Problem",
                    "{method} {path} {status}"
                );
            } else if status == "204" {
                assert!(content.is_none(), "{method} {path} {status} has a body");
            } else {
                assert!(
                    content.is_some_and(|c| !c.is_empty()),
                    "{method} {path} {status}"
                );
            }
        }
    }
}

#[test]
fn protected_operations_declare_their_bearer_scheme() {
    let document = document();
    let schemes = &document["components"]["securitySchemes"];
    for name in ["queueToken", "adminKey", "identityJwt"] {
        assert_eq!(schemes[name]["type"], "http", "{name}");
        assert_eq!(schemes[name]["scheme"], "bearer", "{name}");
    }
    for (method, path, operation) in operations(&document) {
        let security = operation["security"].to_string();
        let expected = if path.starts_with("/v1/admin") {
            Some("adminKey")
        } else if path.starts_with("/v1/users") || path == "/v1/queue/tokens" {
            // Optional: none in trusted identity mode, the identity JWT in jwt mode.
            assert_eq!(
                operation["security"],
                serde_json::json!([{}, { "identityJwt": [] }]),
                "{method} {path}"
            );
            continue;
        } else if !path.starts_with("/v1") {
            None
        } else {
            Some("queueToken")
        };
        match expected {
            Some(scheme) => assert!(security.contains(scheme), "{method} {path}: {security}"),
            None => assert_eq!(operation["security"], Value::Null, "{method} {path}"),
        }
    }
}

#[test]
fn schemas_use_the_contract_field_names() {
    let document = document();
    let schemas = &document["components"]["schemas"];
    let fields = |name: &str| -> Vec<String> {
        let mut names: Vec<String> = schemas[name]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("schema {name}"))
            .keys()
            .cloned()
            .collect();
        names.sort();
        names
    };
    assert_eq!(
        fields("Problem"),
        ["code", "detail", "status", "title", "type"]
    );
    assert_eq!(
        fields("ReservationResponse"),
        [
            "concertId",
            "date",
            "expiresAt",
            "price",
            "reservationId",
            "seatNo",
            "status"
        ]
    );
    assert_eq!(
        fields("PaymentResponse"),
        ["amount", "balance", "paidAt", "paymentId", "reservationId"]
    );
    assert_eq!(
        fields("LedgerEntryResponse"),
        ["amount", "at", "balanceAfter", "entryId", "kind"]
    );
    assert_eq!(fields("HoldSeatRequest"), ["concertId", "date", "seatNo"]);
    assert_eq!(
        fields("SeatListResponse"),
        ["concertId", "date", "seats", "totalSeats"]
    );
    let codes = schemas["ErrorCode"]["enum"].as_array().expect("codes");
    assert_eq!(codes.len(), crate::problem::ErrorCode::ALL.len());
}

/// The checked-in copy of the served document, relative to this crate.
const CHECKED_IN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");

/// `docs/openapi.json` is the document `/openapi.json` serves, so a change of the API shows up in
/// review as a diff of that file. `UPDATE_OPENAPI=1` rewrites the file instead of comparing.
#[tokio::test]
async fn the_served_document_matches_docs_openapi_json() {
    let served = get("/openapi.json").send(&app().await).await.ok(200);
    let mut pretty = serde_json::to_string_pretty(&served).expect("json");
    pretty.push('\n');

    if std::env::var_os("UPDATE_OPENAPI").is_some_and(|value| value == "1") {
        std::fs::write(CHECKED_IN, &pretty)
            .unwrap_or_else(|error| panic!("cannot write {CHECKED_IN}: {error}"));
        return;
    }
    let refresh = "If the API change is intended, refresh the file and commit it:\n\n    \
        UPDATE_OPENAPI=1 cargo test -p concert-http the_served_document_matches_docs_openapi_json\n";
    let checked_in = std::fs::read_to_string(CHECKED_IN)
        .unwrap_or_else(|error| panic!("cannot read {CHECKED_IN}: {error}\n{refresh}"));
    if checked_in != pretty {
        let first_difference = checked_in
            .lines()
            .zip(pretty.lines())
            .position(|(old, new)| old != new)
            .unwrap_or_else(|| checked_in.lines().count().min(pretty.lines().count()));
        panic!(
            "docs/openapi.json differs from the document the server serves at /openapi.json \
             (first at line {}).\n{refresh}",
            first_difference + 1
        );
    }
}
