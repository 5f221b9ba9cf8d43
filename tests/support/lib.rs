//! Test support for the end-to-end tests: start the real server in process on a random port over a
//! fresh store, and talk to it over HTTP like any client.
//!
//! The store is a fresh PostgreSQL database, or with `E2E_STORE=sqlite` a fresh embedded SQLite
//! file (the README's test command runs the end-to-end suite both ways). Tests that need several
//! instances over one store call [`TestApp::skip_unless_postgres`] first: they run on
//! PostgreSQL only. With `E2E_QUEUE=redis` the waiting line is on Redis ([`TestLine`]): a
//! `redis-server` of the test process's own, a key prefix per test.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use concert_bootstrap::{Application, Config};
use concert_postgres::testing::TestDatabase;
use concert_redis::testing::{RedisServer, TestKeys};
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

pub const ADMIN_KEY: &str = "end-to-end-test-admin-key";
pub const TOKEN_SECRET: &str = "end-to-end-test-token-secret";

/// A server running in this process, and the handle that stops it.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The operations listener, when `ops_bind_addr` is set.
    pub ops_addr: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    /// Starts a server over `database_url` with test settings, changed by `adjust`.
    pub async fn start(
        database_url: &str,
        adjust: impl FnOnce(&mut Config),
    ) -> anyhow::Result<Self> {
        let mut config = Config::defaults();
        config.database_url = Some(database_url.to_owned());
        config.bind_addr = "127.0.0.1:0".parse()?;
        config.token_secret = Some(TOKEN_SECRET.into());
        config.admin_api_key = Some(ADMIN_KEY.into());
        config.database_pool_size = 8;
        config.admission_interval_ms = 50;
        config.shutdown_grace_seconds = 2;
        adjust(&mut config);
        let application = Application::build(config)
            .await
            .context("building the server")?;
        let addr = application.local_addr()?;
        let ops_addr = application.ops_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(application.run_until(async move {
            drop(stopped.await);
        }));
        Ok(Self {
            addr,
            ops_addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Stops accepting, finishes in-flight requests and waits for the server to end.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await?,
            None => Ok(()),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The store under a test server.
pub enum TestStore {
    /// A fresh PostgreSQL database, dropped at the end.
    Postgres(Box<TestDatabase>),
    /// A fresh SQLite file in a directory of its own, removed at the end.
    Sqlite { directory: PathBuf, url: String },
}

impl TestStore {
    /// A fresh store of the kind `E2E_STORE` names (`postgres`, the default, or `sqlite`).
    pub async fn create() -> anyhow::Result<Self> {
        match std::env::var("E2E_STORE").as_deref() {
            Ok("sqlite") => {
                let directory =
                    std::env::temp_dir().join(format!("concert-e2e-{}", Uuid::new_v4()));
                std::fs::create_dir_all(&directory)?;
                let url = format!("sqlite://{}", directory.join("concert.db").display());
                Ok(Self::Sqlite { directory, url })
            }
            Ok("postgres") | Err(_) => Ok(Self::Postgres(Box::new(TestDatabase::create().await?))),
            Ok(other) => anyhow::bail!("E2E_STORE={other:?}: expected postgres or sqlite"),
        }
    }

    pub fn url(&self) -> &str {
        match self {
            Self::Postgres(database) => database.url(),
            Self::Sqlite { url, .. } => url,
        }
    }

    /// Whether several instances may run over this store.
    pub fn is_shared(&self) -> bool {
        matches!(self, Self::Postgres(_))
    }

    /// The PostgreSQL database, for a test that works on it directly.
    pub fn postgres(&self) -> anyhow::Result<&TestDatabase> {
        match self {
            Self::Postgres(database) => Ok(database),
            Self::Sqlite { .. } => anyhow::bail!("this test needs PostgreSQL"),
        }
    }

    pub async fn remove(self) -> anyhow::Result<()> {
        match self {
            Self::Postgres(database) => Ok(database.drop_database().await?),
            Self::Sqlite { directory, .. } => Ok(std::fs::remove_dir_all(directory)?),
        }
    }
}

/// Where a test's servers keep the waiting line: in the main store, or with `E2E_QUEUE=redis`
/// on a `redis-server` this test process started (its own port, nothing on disk), under a key
/// prefix of the test's own whose keys are deleted at the end.
pub enum TestLine {
    InStore,
    Redis {
        server: &'static RedisServer,
        keys: TestKeys,
    },
}

impl TestLine {
    /// The line `E2E_QUEUE` names (`store`, the default, or `redis`).
    pub fn create() -> anyhow::Result<Self> {
        match std::env::var("E2E_QUEUE").as_deref() {
            Ok("redis") => {
                let server = RedisServer::shared();
                let keys = TestKeys::new(server.url());
                Ok(Self::Redis { server, keys })
            }
            Ok("store" | "") | Err(_) => Ok(Self::InStore),
            Ok(other) => anyhow::bail!("E2E_QUEUE={other:?}: expected store or redis"),
        }
    }

    pub fn is_redis(&self) -> bool {
        matches!(self, Self::Redis { .. })
    }

    /// The server's settings for this line.
    pub fn environment(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::InStore => Vec::new(),
            Self::Redis { server, keys } => vec![
                ("QUEUE_URL", server.url()),
                ("QUEUE_KEY_PREFIX", keys.prefix().to_owned()),
            ],
        }
    }

    /// Puts the line in `config`.
    pub fn configure(&self, config: &mut Config) {
        if let Self::Redis { server, keys } = self {
            config.queue_url = Some(SecretString::from(server.url()));
            config.queue_key_prefix = keys.prefix().to_owned();
        }
    }

    pub async fn remove(self) {
        if let Self::Redis { keys, .. } = self {
            keys.delete().await;
        }
    }
}

/// One server over its own fresh store, and a client for it.
pub struct TestApp {
    pub server: TestServer,
    pub client: Client,
    pub store: TestStore,
    pub line: TestLine,
}

impl TestApp {
    pub async fn spawn() -> anyhow::Result<Self> {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> anyhow::Result<Self> {
        let store = TestStore::create().await?;
        let line = TestLine::create()?;
        let server = TestServer::start(store.url(), |config| {
            line.configure(config);
            adjust(config);
        })
        .await?;
        let client = Client::new(server.addr);
        Ok(Self {
            server,
            client,
            store,
            line,
        })
    }

    /// True when the test must stop here because it reads the line's rows in the main
    /// database (`why`), which hold no line with `E2E_QUEUE=redis`: it says so and the caller
    /// returns.
    pub fn skip_unless_line_in_store(&self, why: &str) -> bool {
        if !self.line.is_redis() {
            return false;
        }
        eprintln!("skipped with the line on Redis: {why}");
        true
    }

    /// True when the test must stop here because it needs PostgreSQL (`why`: several instances
    /// over one store, or a session of its own on the database): it says so on stderr and the
    /// caller returns.
    pub fn skip_unless_postgres(&self, why: &str) -> bool {
        if self.store.is_shared() {
            return false;
        }
        eprintln!("skipped on the embedded store: {why}");
        true
    }

    /// A second instance over the same database, as another process of the deployment would be.
    pub async fn another_instance(
        &self,
        adjust: impl FnOnce(&mut Config),
    ) -> anyhow::Result<(TestServer, Client)> {
        anyhow::ensure!(
            self.store.is_shared(),
            "several instances need PostgreSQL (E2E_STORE=postgres)"
        );
        let server = TestServer::start(self.store.url(), |config| {
            self.line.configure(config);
            adjust(config);
        })
        .await?;
        let client = Client::new(server.addr);
        Ok((server, client))
    }

    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.server.stop().await?;
        self.store.remove().await?;
        self.line.remove().await;
        Ok(())
    }
}

/// An HTTP answer with its body parsed as JSON (`Value::Null` when empty or not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Answer {
    pub fn content_type(&self) -> &str {
        self.headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The problem's `code`, when the answer is a problem.
    pub fn code(&self) -> &str {
        self.body.get("code").and_then(Value::as_str).unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A client with one helper per endpoint of docs/API.md.
#[derive(Clone, Debug)]
pub struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    pub fn new(addr: SocketAddr) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self {
            base: format!("http://{addr}"),
            http,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn raw(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(path))
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Answer> {
        let response = request.send().await?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Answer {
            status,
            headers,
            body,
            text,
        })
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> anyhow::Result<Answer> {
        let mut request = self.raw(Method::GET, path);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        self.send(request).await
    }

    pub async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> anyhow::Result<Answer> {
        let mut request = self.raw(Method::POST, path).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        self.send(request).await
    }

    pub async fn issue_token(&self, user: Uuid) -> anyhow::Result<Answer> {
        self.post(
            "/v1/queue/tokens",
            None,
            &json!({ "userId": user.to_string() }),
        )
        .await
    }

    pub async fn queue_status(&self, token: &str) -> anyhow::Result<Answer> {
        self.get("/v1/queue/status", Some(token)).await
    }

    /// A token for a new user, whatever its status.
    pub async fn new_token(&self) -> anyhow::Result<String> {
        self.token_for(Uuid::new_v4()).await
    }

    /// `user`'s token, whatever its status.
    pub async fn token_for(&self, user: Uuid) -> anyhow::Result<String> {
        let issued = self.issue_token(user).await?;
        anyhow::ensure!(issued.status.is_success(), "token refused: {}", issued.text);
        Ok(issued.body["token"]
            .as_str()
            .context("token in answer")?
            .to_owned())
    }

    /// `DELETE /v1/queue/tokens/current`: the token's holder leaves the line.
    pub async fn leave_line(&self, token: &str) -> anyhow::Result<Answer> {
        self.send(
            self.raw(Method::DELETE, "/v1/queue/tokens/current")
                .bearer_auth(token),
        )
        .await
    }

    /// Opens `token`'s event stream (`GET /v1/queue/events`): the stream when answered `200`,
    /// else the answer (a problem).
    pub async fn events(&self, token: &str) -> anyhow::Result<Result<EventStream, Answer>> {
        let response = self
            .raw(Method::GET, "/v1/queue/events")
            .bearer_auth(token)
            .send()
            .await?;
        if response.status() == StatusCode::OK {
            return Ok(Ok(EventStream::of(response)));
        }
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Err(Answer {
            status,
            headers,
            body,
            text,
        }))
    }

    /// Polls the status until it reads `wanted`, for at most `within`.
    pub async fn wait_for_status(
        &self,
        token: &str,
        wanted: &str,
        within: Duration,
    ) -> anyhow::Result<Answer> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let answer = self.queue_status(token).await?;
            if answer.body["status"] == wanted {
                return Ok(answer);
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "token still {} after {within:?}, wanted {wanted}",
                answer.body["status"]
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A token for a new user that is already active (the line is empty in most tests).
    pub async fn active_token(&self, user: Uuid) -> anyhow::Result<String> {
        let token = self.token_for(user).await?;
        self.wait_for_status(&token, "ACTIVE", Duration::from_secs(10))
            .await?;
        Ok(token)
    }

    pub async fn create_concert(&self, body: &Value) -> anyhow::Result<Answer> {
        self.post("/v1/admin/concerts", Some(ADMIN_KEY), body).await
    }

    /// Creates a concert with one date `days_ahead` from today; returns its id and the date.
    pub async fn concert_with_date(
        &self,
        seat_count: u32,
        price: i64,
        days_ahead: i64,
    ) -> anyhow::Result<(i64, String)> {
        let date =
            (time::OffsetDateTime::now_utc().date() + time::Duration::days(days_ahead)).to_string();
        let answer = self
            .create_concert(&json!({
                "title": "Test Concert",
                "dates": [{ "date": date, "price": price, "seatCount": seat_count }]
            }))
            .await?;
        anyhow::ensure!(
            answer.status == StatusCode::CREATED,
            "concert refused: {}",
            answer.text
        );
        let id = answer.body["concertId"].as_i64().context("concertId")?;
        Ok((id, date))
    }

    pub async fn hold(
        &self,
        token: &str,
        concert: i64,
        date: &str,
        seat_no: i64,
    ) -> anyhow::Result<Answer> {
        self.post(
            "/v1/reservations",
            Some(token),
            &json!({ "concertId": concert, "date": date, "seatNo": seat_no }),
        )
        .await
    }

    pub async fn charge(
        &self,
        user: Uuid,
        amount: i64,
        key: Option<&str>,
    ) -> anyhow::Result<Answer> {
        let mut request = self
            .raw(Method::POST, &format!("/v1/users/{user}/points/charge"))
            .json(&json!({ "amount": amount }));
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        self.send(request).await
    }

    pub async fn balance(&self, user: Uuid) -> anyhow::Result<i64> {
        let answer = self.get(&format!("/v1/users/{user}/points"), None).await?;
        answer.body["balance"].as_i64().context("balance in answer")
    }

    pub async fn pay(
        &self,
        token: &str,
        reservation: i64,
        key: Option<&str>,
    ) -> anyhow::Result<Answer> {
        let mut request = self
            .raw(Method::POST, "/v1/payments")
            .bearer_auth(token)
            .json(&json!({ "reservationId": reservation }));
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        self.send(request).await
    }
}

/// An open event stream (`text/event-stream`), read one `status` event at a time.
pub struct EventStream {
    response: reqwest::Response,
    buffered: String,
}

impl EventStream {
    /// Reads the events of an answered `GET /v1/queue/events`.
    pub fn of(response: reqwest::Response) -> Self {
        Self {
            response,
            buffered: String::new(),
        }
    }

    /// The next `status` event's data, or `None` once the stream ended; an error when nothing
    /// came within `within`.
    pub async fn next(&mut self, within: Duration) -> anyhow::Result<Option<Value>> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = self.buffered.find("\n\n") {
                let event: String = self.buffered.drain(..end + 2).collect();
                if let Some(data) = event
                    .lines()
                    .find_map(|line| line.strip_prefix("data: "))
                    .filter(|_| event.contains("event: status"))
                {
                    return Ok(Some(serde_json::from_str(data)?));
                }
                continue;
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .map_err(|_| anyhow::anyhow!("no event within {within:?}"))??;
            match chunk {
                Some(bytes) => self.buffered.push_str(std::str::from_utf8(&bytes)?),
                None => return Ok(None),
            }
        }
    }
}
