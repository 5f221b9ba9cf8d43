//! With `OPS_BIND_ADDR`, the public listener and the operations listener each serve their half:
//! what the other half serves is `404 NOT_FOUND` there, as if it did not exist.

use super::{Scenario, TOKEN_ACTIVE, get, use_cases};
use crate::{Endpoints, router_for};

#[tokio::test]
async fn the_public_half_hides_health_and_metrics() {
    let public = router_for(use_cases(Scenario::default()).await, Endpoints::Public);

    for path in ["/metrics", "/health/live", "/health/ready"] {
        get(path).send(&public).await.problem(404, "NOT_FOUND");
    }
    get("/v1/concerts")
        .bearer(TOKEN_ACTIVE)
        .send(&public)
        .await
        .ok(200);
    get("/openapi.json").send(&public).await.ok(200);
}

#[tokio::test]
async fn the_operations_half_serves_health_and_metrics_only() {
    let operations = router_for(use_cases(Scenario::default()).await, Endpoints::Operations);

    get("/health/live").send(&operations).await.ok(200);
    get("/health/ready").send(&operations).await.ok(200);
    let metrics = get("/metrics").send(&operations).await;
    assert_eq!(metrics.status.as_u16(), 200);
    for path in ["/v1/concerts", "/openapi.json", "/docs/", "/", "/app.js"] {
        get(path).send(&operations).await.problem(404, "NOT_FOUND");
    }
}
