//! A bare HTTP/1.1 client: one keep-alive connection per worker, no pool, no TLS, so that the
//! load generator spends as little of the shared CPU as possible.

use std::net::SocketAddr;

use anyhow::Context;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// One request to send: what the scenarios build.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: Method,
    pub path: String,
    pub bearer: Option<String>,
    pub idempotency_key: Option<String>,
    pub json: Option<String>,
}

impl Call {
    pub fn get(path: impl Into<String>) -> Self {
        Self {
            method: Method::GET,
            path: path.into(),
            bearer: None,
            idempotency_key: None,
            json: None,
        }
    }

    pub fn post(path: impl Into<String>, json: impl Into<String>) -> Self {
        Self {
            method: Method::POST,
            path: path.into(),
            bearer: None,
            idempotency_key: None,
            json: Some(json.into()),
        }
    }

    #[must_use]
    pub fn bearer(mut self, token: impl Into<String>) -> Self {
        self.bearer = Some(token.into());
        self
    }

    #[must_use]
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
}

/// A response: status and the whole body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "status {} with a body that is not JSON: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The JSON body when the status is one of `expected`, else an error naming both.
    pub fn expect(&self, expected: &[u16]) -> anyhow::Result<serde_json::Value> {
        if !expected.contains(&self.status.as_u16()) {
            anyhow::bail!(
                "expected {expected:?}, got {}: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            );
        }
        self.json()
    }
}

/// One keep-alive HTTP/1.1 connection.
pub struct Conn {
    addr: SocketAddr,
    sender: SendRequest<Full<Bytes>>,
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP/1 handshake")?;
        tokio::spawn(async move {
            // The connection ends when the sender is dropped or the server closes it.
            let _ = connection.await;
        });
        Ok(Self { addr, sender })
    }

    /// Sends one request and reads the whole answer. Reconnects once if the server closed the
    /// connection since the previous request.
    pub async fn send(&mut self, call: &Call) -> anyhow::Result<Answer> {
        if self.sender.is_closed() || self.sender.ready().await.is_err() {
            *self = Self::open(self.addr).await?;
        }
        let mut builder = Request::builder()
            .method(call.method.clone())
            .uri(&call.path)
            .header("host", self.addr.to_string());
        if let Some(token) = &call.bearer {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        if let Some(key) = &call.idempotency_key {
            builder = builder.header("idempotency-key", key);
        }
        let body = match &call.json {
            Some(json) => {
                builder = builder.header("content-type", "application/json");
                Full::new(Bytes::from(json.clone()))
            }
            None => Full::new(Bytes::new()),
        };
        let response = self
            .sender
            .send_request(builder.body(body)?)
            .await
            .with_context(|| format!("{} {}", call.method, call.path))?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Answer { status, body })
    }
}
