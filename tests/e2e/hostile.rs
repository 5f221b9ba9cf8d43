//! Slow and excess connections, with real sockets: clients trickling their headers are closed
//! at the header deadline while a normal client is served, and connections beyond the cap get a
//! `503` problem+json instead of a silent stall.

use std::time::Duration;

use concert_e2e::TestApp;
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

/// Sends a request's start a byte at a time, every `pace`, until the server closes the
/// connection; returns how long the server let it trickle.
async fn trickle(addr: std::net::SocketAddr, pace: Duration) -> Option<Duration> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    let started = Instant::now();
    let request = b"GET /health/live HTTP/1.1\r\nhost: x\r\nx-slow: ";
    let mut buffer = [0_u8; 256];
    for byte in request.iter().cycle().take(40) {
        if stream.write_all(&[*byte]).await.is_err() {
            return Some(started.elapsed());
        }
        // A closed connection reads as end of file (or an error) right away.
        if let Ok(read) = timeout(pace, stream.read(&mut buffer)).await {
            match read {
                Ok(_) | Err(_) => return Some(started.elapsed()),
            }
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_trickling_headers_are_closed_while_a_normal_client_is_served() -> anyhow::Result<()>
{
    let app = TestApp::spawn_with(|config| config.http_header_timeout_seconds = 1).await?;
    let addr = app.server.addr;
    let slow: Vec<_> = (0..200)
        .map(|_| tokio::spawn(trickle(addr, Duration::from_millis(200))))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    let answer = app.client.get("/health/live", None).await?;
    assert_eq!(answer.status, StatusCode::OK);
    let normal = started.elapsed();

    let mut closed = 0;
    for trickler in slow {
        let held = trickler.await?.expect("the server closed the connection");
        assert!(held < Duration::from_secs(5), "held {held:?}");
        closed += 1;
    }
    assert_eq!(closed, 200);
    assert!(
        normal < Duration::from_secs(2),
        "a normal request took {normal:?}"
    );
    app.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_beyond_the_cap_are_answered_503_and_served_again_once_others_close()
-> anyhow::Result<()> {
    let app = TestApp::spawn_with(|config| config.max_connections = Some(5)).await?;
    let addr = app.server.addr;
    let mut idle = Vec::new();
    for _ in 0..5 {
        idle.push(TcpStream::connect(addr).await?);
    }
    // Let the server take all five in.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut extra = TcpStream::connect(addr).await?;
    extra
        .write_all(b"GET /health/live HTTP/1.1\r\nhost: x\r\n\r\n")
        .await?;
    let mut answer = String::new();
    timeout(Duration::from_secs(5), extra.read_to_string(&mut answer)).await??;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(answer.contains("\"SERVICE_UNAVAILABLE\""), "{answer}");

    drop(idle);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let served = app.client.get("/health/live", None).await?;
    assert_eq!(served.status, StatusCode::OK);
    app.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_past_its_deadline_is_answered_408() -> anyhow::Result<()> {
    use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};

    let app = TestApp::spawn_with(|config| config.http_request_timeout_seconds = 1).await?;
    // Another session holds the wallets: a charge waits on it (for up to the 5 s statement
    // timeout), longer than the request's deadline.
    let mut blocker = AsyncPgConnection::establish(app.database.url()).await?;
    blocker
        .batch_execute("BEGIN; LOCK TABLE wallets IN ACCESS EXCLUSIVE MODE")
        .await?;

    let started = Instant::now();
    let answer = app.client.charge(uuid::Uuid::new_v4(), 1000, None).await?;
    let took = started.elapsed();

    blocker.batch_execute("ROLLBACK").await?;
    assert_eq!(
        answer.status,
        StatusCode::REQUEST_TIMEOUT,
        "{}",
        answer.text
    );
    assert_eq!(answer.code(), "REQUEST_TIMEOUT");
    assert!(answer.header("x-request-id").is_some());
    assert!(took < Duration::from_secs(3), "answered after {took:?}");
    app.shutdown().await
}
