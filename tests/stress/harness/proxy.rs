//! A TCP proxy between the servers and PostgreSQL that a test can cut (every connection closed,
//! new ones refused) and restore: a database outage without touching the shared cluster.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

struct State {
    open: bool,
    links: Vec<AbortHandle>,
}

struct Shared {
    upstream: String,
    state: Mutex<State>,
    accepted: AtomicU64,
    refused: AtomicU64,
    severed: AtomicU64,
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Listens on a loopback port and forwards every connection to `upstream`.
pub struct DbProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: JoinHandle<()>,
}

impl DbProxy {
    pub async fn start(upstream: String) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            state: Mutex::new(State {
                open: true,
                links: Vec::new(),
            }),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            severed: AtomicU64::new(0),
        });
        let acceptor = tokio::spawn(accept(listener, shared.clone()));
        Ok(Self {
            addr,
            shared,
            acceptor,
        })
    }

    /// `url` (a `postgres://user@host:port/db?...` URL) with its host and port replaced by the
    /// proxy's.
    pub fn url_for(&self, url: &str) -> anyhow::Result<String> {
        let (scheme, rest) = url.split_once("://").context("a postgres:// URL")?;
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let user = authority
            .rsplit_once('@')
            .map(|(user, _)| format!("{user}@"))
            .unwrap_or_default();
        Ok(format!("{scheme}://{user}{}{tail}", self.addr))
    }

    /// Closes every connection and refuses new ones until [`DbProxy::restore`].
    pub fn cut(&self) {
        let mut state = self.shared.state();
        state.open = false;
        for link in state.links.drain(..) {
            if !link.is_finished() {
                self.shared.severed.fetch_add(1, Ordering::Relaxed);
            }
            link.abort();
        }
    }

    pub fn restore(&self) {
        self.shared.state().open = true;
    }

    /// Connections forwarded, refused while cut, and severed by a cut.
    pub fn figures(&self) -> (u64, u64, u64) {
        (
            self.shared.accepted.load(Ordering::Relaxed),
            self.shared.refused.load(Ordering::Relaxed),
            self.shared.severed.load(Ordering::Relaxed),
        )
    }
}

impl Drop for DbProxy {
    fn drop(&mut self) {
        self.acceptor.abort();
        for link in self.shared.state().links.drain(..) {
            link.abort();
        }
    }
}

/// The `host:port` of a `postgres://` URL (port 5432 when none is given).
pub fn upstream_of(url: &str) -> anyhow::Result<String> {
    let (_, rest) = url.split_once("://").context("a postgres:// URL")?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let host_port = if host_port.is_empty() {
        "127.0.0.1"
    } else {
        host_port
    };
    Ok(if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5432")
    })
}

async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            continue;
        };
        let mut state = shared.state();
        if !state.open {
            // Refused: closed at once, before the PostgreSQL handshake can start.
            shared.refused.fetch_add(1, Ordering::Relaxed);
            drop(inbound);
            continue;
        }
        shared.accepted.fetch_add(1, Ordering::Relaxed);
        state.links.retain(|link| !link.is_finished());
        let upstream = shared.upstream.clone();
        let link = tokio::spawn(async move {
            let Ok(mut outbound) = TcpStream::connect(&upstream).await else {
                return;
            };
            let mut inbound = inbound;
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
        });
        state.links.push(link.abort_handle());
    }
}
