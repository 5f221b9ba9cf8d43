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
    if app.skip_unless_postgres("a second session locks a table") {
        return Ok(());
    }
    // Another session holds the wallets: a charge waits on it (for up to the 5 s statement
    // timeout), longer than the request's deadline.
    let mut blocker = AsyncPgConnection::establish(app.store.postgres()?.url()).await?;
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

/// Sends a join whose body is `body_bytes` long, writing it in the background (16 KiB every
/// 2 ms) while reading the answer; returns the answer and whether the whole body could be sent.
async fn upload(addr: std::net::SocketAddr, body_bytes: usize) -> anyhow::Result<(String, bool)> {
    let stream = TcpStream::connect(addr).await?;
    let (mut reader, mut writer) = stream.into_split();
    let sender = tokio::spawn(async move {
        let head = format!(
            "POST /v1/queue/tokens HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
             content-length: {body_bytes}\r\n\r\n"
        );
        writer.write_all(head.as_bytes()).await?;
        let chunk = vec![b' '; 16 * 1024];
        let mut sent = 0;
        while sent < body_bytes {
            let part = chunk.len().min(body_bytes - sent);
            writer.write_all(&chunk[..part]).await?;
            sent += part;
            // Paced like a real upload, so the client is still sending well after the answer.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        std::io::Result::Ok(())
    });
    let mut answer = Vec::new();
    timeout(Duration::from_secs(10), reader.read_to_end(&mut answer)).await??;
    let sent_all = sender.await?.is_ok();
    Ok((String::from_utf8_lossy(&answer).into_owned(), sent_all))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_still_sending_a_megabyte_reads_its_whole_413_on_every_instance()
-> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    if app.skip_unless_postgres("several instances over one store") {
        return Ok(());
    }
    let (second, _) = app.another_instance(|_| {}).await?;
    for addr in [app.server.addr, second.addr] {
        for round in 0..5 {
            let (answer, sent_all) = upload(addr, 1_000_000 + round * 100_003).await?;
            assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
            assert!(answer.contains("connection: close"), "{answer}");
            assert!(answer.contains("x-request-id: "), "{answer}");
            assert!(answer.ends_with('}'), "the body was cut: {answer}");
            assert!(answer.contains("\"PAYLOAD_TOO_LARGE\""), "{answer}");
            // The server read the rest instead of resetting the connection under the client.
            assert!(sent_all, "the upload was cut off");
        }
    }
    second.stop().await?;
    app.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_of_the_http_layer_are_problem_json_over_a_real_socket() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let long_target = format!("/v1/concerts?q={}", "x".repeat(10_000));
    let big_header = format!("x-big: {}\r\n", "y".repeat(40_000));
    let many_headers: String = (0..150).map(|line| format!("x-h{line}: 1\r\n")).collect();
    for (target, extra, status, code) in [
        (long_target.as_str(), "", "414", "URI_TOO_LONG"),
        (
            "/health/live",
            big_header.as_str(),
            "431",
            "HEADERS_TOO_LARGE",
        ),
        (
            "/health/live",
            many_headers.as_str(),
            "431",
            "HEADERS_TOO_LARGE",
        ),
    ] {
        let mut stream = TcpStream::connect(app.server.addr).await?;
        let request =
            format!("GET {target} HTTP/1.1\r\nhost: x\r\n{extra}connection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut answer = String::new();
        timeout(Duration::from_secs(5), stream.read_to_string(&mut answer)).await??;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{answer}"
        );
        assert!(answer.contains("application/problem+json"), "{answer}");
        assert!(answer.contains("x-request-id: "), "{answer}");
        assert!(answer.contains(&format!("\"{code}\"")), "{answer}");
    }
    app.shutdown().await
}
