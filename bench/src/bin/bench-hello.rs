//! The raw HTTP baseline: a bare axum server answering `GET /hello` with a small JSON body, no
//! middleware, on the same runtime settings as the service (tokio multi-thread, all cores).

use std::net::SocketAddr;

use anyhow::Context;
use axum::Json;
use axum::routing::get;
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "bench-hello",
    about = "Bare axum JSON hello, the HTTP baseline"
)]
struct Args {
    /// Address to listen on (loopback).
    #[arg(long, env = "BIND_ADDR", default_value = "127.0.0.1:28481")]
    bind_addr: SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.bind_addr.ip().is_loopback(), "loopback addresses only");
    let app = axum::Router::new().route(
        "/hello",
        get(|| async { Json(serde_json::json!({"message": "hello"})) }),
    );
    let listener = tokio::net::TcpListener::bind(args.bind_addr)
        .await
        .with_context(|| format!("binding {}", args.bind_addr))?;
    axum::serve(listener, app).await.context("serving")
}
