//! Request metrics labelled by route template, the business counters, and a request span whose
//! fields reach every log line of the request.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex, Once};

use metrics::{
    Counter, CounterFn, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use serde_json::json;

use super::*;

/// Records every counter increment and histogram sample under `name{label=value,...}`.
#[derive(Default, Clone)]
struct TestRecorder {
    values: Arc<Mutex<BTreeMap<String, f64>>>,
}

struct Handle {
    key: String,
    values: Arc<Mutex<BTreeMap<String, f64>>>,
}

impl Handle {
    fn add(&self, value: f64) {
        let mut values = self.values.lock().expect("lock");
        *values.entry(self.key.clone()).or_default() += value;
    }
}

impl CounterFn for Handle {
    #[allow(clippy::cast_precision_loss)]
    fn increment(&self, value: u64) {
        self.add(value as f64);
    }

    fn absolute(&self, _value: u64) {}
}

impl HistogramFn for Handle {
    /// Counts samples (each one must be a non-negative duration).
    fn record(&self, value: f64) {
        assert!(value >= 0.0);
        self.add(1.0);
    }
}

impl TestRecorder {
    fn handle(&self, key: &Key) -> Arc<Handle> {
        let mut labels: Vec<String> = key
            .labels()
            .map(|label| format!("{}={}", label.key(), label.value()))
            .collect();
        labels.sort();
        Arc::new(Handle {
            key: format!("{}{{{}}}", key.name(), labels.join(",")),
            values: self.values.clone(),
        })
    }

    fn get(&self, key: &str) -> f64 {
        self.values
            .lock()
            .expect("lock")
            .get(key)
            .copied()
            .unwrap_or_default()
    }
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.handle(key))
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.handle(key))
    }
}

#[tokio::test]
async fn requests_are_counted_and_timed_by_route_template() {
    let recorder = TestRecorder::default();
    let _local = metrics::set_default_local_recorder(&recorder);
    let app = app().await;

    get("/v1/reservations/41")
        .bearer(TOKEN_ACTIVE)
        .send(&app)
        .await
        .ok(200);
    get("/v1/reservations/42")
        .bearer(TOKEN_ACTIVE)
        .send(&app)
        .await;
    get("/v1/reservations/43")
        .bearer(TOKEN_ACTIVE)
        .send(&app)
        .await
        .ok(200);
    get("/no/such/path/1").send(&app).await;
    get("/no/such/path/2").send(&app).await;
    call(Method::PUT, "/v1/payments").send(&app).await;

    let route = "/v1/reservations/{reservationId}";
    assert_eq!(
        recorder.get(&format!(
            "http_requests_total{{method=GET,route={route},status=200}}"
        )),
        2.0
    );
    assert_eq!(
        recorder.get(&format!(
            "http_requests_total{{method=GET,route={route},status=404}}"
        )),
        1.0
    );
    assert_eq!(
        recorder.get(&format!(
            "http_request_duration_seconds{{method=GET,route={route}}}"
        )),
        3.0
    );
    assert_eq!(
        recorder.get("http_requests_total{method=GET,route=unmatched,status=404}"),
        2.0
    );
    assert_eq!(
        recorder.get("http_requests_total{method=PUT,route=/v1/payments,status=405}"),
        1.0
    );
}

#[tokio::test]
async fn successful_holds_and_payments_are_counted() {
    let recorder = TestRecorder::default();
    let _local = metrics::set_default_local_recorder(&recorder);
    let app = app().await;
    let hold = |seat: i64| {
        post("/v1/reservations")
            .bearer(TOKEN_ACTIVE)
            .json(&json!({ "concertId": 1, "date": "2026-12-24", "seatNo": seat }))
    };
    hold(1).send(&app).await.ok(201);
    hold(SEAT_TAKEN).send(&app).await;
    hold(2).send(&app).await.ok(201);
    let pay = |reservation: i64| {
        post("/v1/payments")
            .bearer(TOKEN_ACTIVE)
            .json(&json!({ "reservationId": reservation }))
    };
    pay(HELD_A).send(&app).await.ok(201);
    pay(CONFIRMED_A).send(&app).await;

    assert_eq!(recorder.get("seat_holds_total{}"), 2.0);
    assert_eq!(recorder.get("payments_total{}"), 1.0);
}

thread_local! {
    /// Log output of this thread, while a test captures it.
    static CAPTURED: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
}

/// Writes into this thread's capture buffer, if any.
struct ThreadWriter;

impl Write for ThreadWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        CAPTURED.with(|captured| {
            if let Some(buffer) = captured.borrow_mut().as_mut() {
                buffer.extend_from_slice(bytes);
            }
        });
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures the log lines written on this thread (a `#[tokio::test]` runs the app on its own
/// thread) until [`take_logs`]. The subscriber is global and installed once: a scoped one would
/// race with the callsite interest cached by the tests running in parallel.
fn capture_logs() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_writer(|| ThreadWriter)
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");
    });
    CAPTURED.with(|captured| *captured.borrow_mut() = Some(Vec::new()));
}

fn take_logs() -> String {
    let bytes = CAPTURED.with(|captured| captured.borrow_mut().take().unwrap_or_default());
    String::from_utf8(bytes).expect("utf-8")
}

#[tokio::test]
async fn log_lines_of_a_request_carry_its_id_method_and_route() {
    capture_logs();
    let app = app_with(Scenario {
        catalog_failure: Some(Failure::Unexpected),
        ..Scenario::default()
    })
    .await;

    get("/v1/concerts")
        .bearer(TOKEN_ACTIVE)
        .header("x-request-id", "trace-me-1")
        .send(&app)
        .await
        .problem(500, "INTERNAL_ERROR");

    let logs = take_logs();
    let error_line = logs
        .lines()
        .find(|line| line.contains("unexpected repository error"))
        .unwrap_or_else(|| panic!("no error line in:\n{logs}"));
    assert!(
        error_line.contains("request_id=\"trace-me-1\""),
        "{error_line}"
    );
    assert!(error_line.contains("method=\"GET\""), "{error_line}");
    assert!(
        error_line.contains("route=\"/v1/concerts\""),
        "{error_line}"
    );
    assert!(
        error_line.contains("connection reset by peer"),
        "the cause chain: {error_line}"
    );
    assert!(
        logs.lines()
            .filter(|line| line.contains("request finished"))
            .all(|line| line.contains("trace-me-1")),
        "{logs}"
    );
}
