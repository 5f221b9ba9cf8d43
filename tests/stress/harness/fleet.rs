//! A fleet of HTTP clients, one per instance, that records every exchange: how many, which
//! statuses, how long they took, every 5xx and every transport failure, so a test can check them
//! against the faults it injected.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use concert_e2e::{Answer, Client};
use reqwest::Method;
use serde_json::Value;

/// Which endpoint a request went to, for the figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    Issue,
    Status,
    Leave,
    Catalog,
    Seats,
    Hold,
    Read,
    Cancel,
    Charge,
    Balance,
    History,
    Pay,
    Admin,
    Ready,
}

/// A response with a 5xx status.
#[derive(Debug, Clone)]
struct ServerError {
    instance: usize,
    op: Op,
    status: u16,
    problem: bool,
    sent: Instant,
    answered: Instant,
    body: String,
}

/// A request that got no HTTP answer at all (refused, reset, timed out).
#[derive(Debug, Clone)]
struct TransportFailure {
    instance: usize,
    op: Op,
    sent: Instant,
    failed: Instant,
    error: String,
}

/// A span of time during which something was broken on purpose.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub from: Instant,
    pub until: Instant,
}

impl Window {
    fn overlaps(&self, from: Instant, until: Instant) -> bool {
        from <= self.until && until >= self.from
    }
}

#[derive(Default)]
struct Log {
    requests: u64,
    by_status: BTreeMap<u16, u64>,
    by_op: BTreeMap<Op, u64>,
    successes_by_instance: BTreeMap<usize, Vec<Instant>>,
    server_errors: Vec<ServerError>,
    transport_failures: Vec<TransportFailure>,
    slowest: Duration,
    slowest_server_error: Duration,
    /// Database faults: 503 problem+json is allowed for requests overlapping one.
    database_faults: Vec<Window>,
    /// Instances down on purpose: transport failures to them are allowed inside the window.
    instance_down: Vec<(usize, Window)>,
    /// Answers a correct server could not have given.
    violations: Vec<String>,
    /// Races run (groups of requests sent at once for one thing).
    races: u64,
}

/// Shared by every task of a test.
#[derive(Clone, Default)]
pub struct Recorder(Arc<Mutex<Log>>);

impl Recorder {
    pub fn new() -> Self {
        Self::default()
    }

    fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Something a correct server could not have answered.
    pub fn violation(&self, what: impl Into<String>) {
        let what = what.into();
        let mut log = self.log();
        if log.violations.len() < 200 {
            log.violations.push(what);
        }
    }

    pub fn count_races(&self, races: u64) {
        self.log().races += races;
    }

    pub fn database_fault(&self, window: Window) {
        self.log().database_faults.push(window);
    }

    pub fn instance_down(&self, instance: usize, window: Window) {
        self.log().instance_down.push((instance, window));
    }

    /// Successful (2xx) answers of `instance` at or after `since`.
    pub fn successes_since(&self, instance: usize, since: Instant) -> usize {
        self.log()
            .successes_by_instance
            .get(&instance)
            .map_or(0, |times| times.iter().filter(|t| **t >= since).count())
    }

    /// Successful answers of any instance but `except` inside `window`.
    pub fn successes_elsewhere(&self, except: usize, window: Window) -> usize {
        self.log()
            .successes_by_instance
            .iter()
            .filter(|(instance, _)| **instance != except)
            .map(|(_, times)| {
                times
                    .iter()
                    .filter(|t| **t >= window.from && **t <= window.until)
                    .count()
            })
            .sum()
    }

    fn answered(&self, instance: usize, op: Op, sent: Instant, answer: &Answer) {
        let answered = Instant::now();
        let took = answered - sent;
        let mut log = self.log();
        log.requests += 1;
        *log.by_status.entry(answer.status.as_u16()).or_default() += 1;
        *log.by_op.entry(op).or_default() += 1;
        log.slowest = log.slowest.max(took);
        if answer.status.is_success() {
            log.successes_by_instance
                .entry(instance)
                .or_default()
                .push(answered);
        }
        if answer.status.is_server_error() {
            log.slowest_server_error = log.slowest_server_error.max(took);
            let problem = answer
                .content_type()
                .starts_with("application/problem+json")
                && answer.body.get("status").and_then(Value::as_u64)
                    == Some(u64::from(answer.status.as_u16()))
                && answer.body.get("code").and_then(Value::as_str).is_some();
            log.server_errors.push(ServerError {
                instance,
                op,
                status: answer.status.as_u16(),
                problem,
                sent,
                answered,
                body: answer.text.chars().take(300).collect(),
            });
        }
    }

    fn failed(&self, instance: usize, op: Op, sent: Instant, error: &anyhow::Error) {
        let mut log = self.log();
        log.requests += 1;
        *log.by_op.entry(op).or_default() += 1;
        log.transport_failures.push(TransportFailure {
            instance,
            op,
            sent,
            failed: Instant::now(),
            error: format!("{error:#}"),
        });
    }

    /// Checks every recorded exchange against the faults that were injected, and returns the
    /// figures of the run. Errors list every answer that should not have happened.
    pub fn verify(&self) -> Result<Figures, String> {
        let log = self.log();
        let mut problems = log.violations.clone();
        for e in &log.server_errors {
            let allowed = e.status == 503
                && e.problem
                && log
                    .database_faults
                    .iter()
                    .any(|w| w.overlaps(e.sent, e.answered));
            if !allowed {
                problems.push(format!(
                    "instance {} answered {:?} with {} (problem+json: {}) at +{:?} outside any \
                     database fault: {}",
                    e.instance,
                    e.op,
                    e.status,
                    e.problem,
                    e.sent.elapsed(),
                    e.body
                ));
            }
        }
        for f in &log.transport_failures {
            let allowed = log
                .instance_down
                .iter()
                .any(|(i, w)| *i == f.instance && w.overlaps(f.sent, f.failed));
            if !allowed {
                problems.push(format!(
                    "instance {} gave no answer to {:?} after {:?}: {}",
                    f.instance,
                    f.op,
                    f.failed - f.sent,
                    f.error
                ));
            }
        }
        let figures = Figures {
            requests: log.requests,
            by_status: log.by_status.clone(),
            server_errors: log.server_errors.len() as u64,
            transport_failures: log.transport_failures.len() as u64,
            slowest: log.slowest,
            slowest_server_error: log.slowest_server_error,
            races: log.races,
        };
        if problems.is_empty() {
            Ok(figures)
        } else {
            let shown = problems.len().min(30);
            Err(format!(
                "{} problem(s) in the exchanges ({figures}); the first {shown}:\n  {}",
                problems.len(),
                problems[..shown].join("\n  ")
            ))
        }
    }
}

/// What a test sent and got back.
#[derive(Debug, Clone)]
pub struct Figures {
    pub requests: u64,
    pub by_status: BTreeMap<u16, u64>,
    pub server_errors: u64,
    pub transport_failures: u64,
    pub slowest: Duration,
    pub slowest_server_error: Duration,
    pub races: u64,
}

impl fmt::Display for Figures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let statuses: Vec<String> = self
            .by_status
            .iter()
            .map(|(status, n)| format!("{status}×{n}"))
            .collect();
        write!(
            f,
            "{} requests [{}], {} races, {} 5xx (slowest {:?}), {} without answer, slowest {:?}",
            self.requests,
            statuses.join(" "),
            self.races,
            self.server_errors,
            self.slowest_server_error,
            self.transport_failures,
            self.slowest
        )
    }
}

/// One client per instance, and the recorder they all report to.
pub struct Fleet {
    clients: Vec<Client>,
    pub recorder: Recorder,
    next: AtomicUsize,
}

/// An HTTP answer, or no answer at all.
pub type Reply = Result<Answer, anyhow::Error>;

impl Fleet {
    pub fn new(clients: Vec<Client>, recorder: Recorder) -> Self {
        Self {
            clients,
            recorder,
            next: AtomicUsize::new(0),
        }
    }

    pub fn size(&self) -> usize {
        self.clients.len()
    }

    /// The next instance in round-robin order.
    pub fn next_instance(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % self.clients.len()
    }

    /// Takes a token for `user` on `instance` and polls that instance until it is ACTIVE.
    pub async fn active_token(&self, instance: usize, user: uuid::Uuid) -> anyhow::Result<String> {
        let body = serde_json::json!({ "userId": user.to_string() });
        let issued = self
            .send(instance, Op::Issue, Request::post("/v1/queue/tokens", body))
            .await?;
        anyhow::ensure!(
            issued.status == 201 || issued.status == 200,
            "token refused: {} {}",
            issued.status,
            issued.text
        );
        let token = issued.body["token"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("no token in {}", issued.text))?
            .to_owned();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let answer = self
                .send(
                    instance,
                    Op::Status,
                    Request::get("/v1/queue/status").token(token.clone()),
                )
                .await?;
            if answer.body["status"] == "ACTIVE" {
                return Ok(token);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "token of {user} not ACTIVE within 60 s: {}",
                answer.text
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends one request to `instance` and records what came back.
    pub async fn send(&self, instance: usize, op: Op, request: Request) -> Reply {
        let client = &self.clients[instance];
        let mut builder = client.raw(request.method, &request.path);
        if let Some(token) = &request.token {
            builder = builder.bearer_auth(token);
        }
        if let Some(key) = &request.key {
            builder = builder.header("Idempotency-Key", key.as_str());
        }
        if let Some(body) = &request.body {
            builder = builder.json(body);
        }
        let sent = Instant::now();
        match client.send(builder).await {
            Ok(answer) => {
                self.recorder.answered(instance, op, sent, &answer);
                Ok(answer)
            }
            Err(error) => {
                self.recorder.failed(instance, op, sent, &error);
                Err(error)
            }
        }
    }
}

/// What to send.
pub struct Request {
    method: Method,
    path: String,
    token: Option<String>,
    key: Option<String>,
    body: Option<Value>,
}

impl Request {
    fn new(method: Method, path: impl Into<String>, body: Option<Value>) -> Self {
        Self {
            method,
            path: path.into(),
            token: None,
            key: None,
            body,
        }
    }

    pub fn get(path: impl Into<String>) -> Self {
        Self::new(Method::GET, path, None)
    }

    pub fn post(path: impl Into<String>, body: Value) -> Self {
        Self::new(Method::POST, path, Some(body))
    }

    pub fn delete(path: impl Into<String>) -> Self {
        Self::new(Method::DELETE, path, None)
    }

    /// `Authorization: Bearer <token>` (a queue token or the admin key).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// `Idempotency-Key: <key>`.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }
}
