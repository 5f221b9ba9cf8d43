//! Lingering close, as nginx does it: when the server closes a connection, it first ends its own
//! side (the client sees the end of the answer), then reads and discards what the client is still
//! sending, up to a bound, before it lets go of the socket.
//!
//! Without it, closing a socket with unread bytes makes the kernel send a reset, which can destroy
//! the answer in flight: a client uploading a 1 MB body would get a reset connection instead of
//! its `413`.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// At most this much is read and discarded after the answer.
pub const LINGER_MAX_BYTES: usize = 4 * 1024 * 1024;
/// At most this long is spent on it.
pub const LINGER_MAX_TIME: Duration = Duration::from_secs(5);

/// A stream whose shutdown lingers: write side closed, then the read side drained.
pub struct LingeringStream<S> {
    inner: S,
    closing: Closing,
}

enum Closing {
    Open,
    Draining {
        discarded: usize,
        deadline: Pin<Box<Sleep>>,
    },
    Done,
}

impl<S> LingeringStream<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            closing: Closing::Open,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for LingeringStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(context, buffer)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for LingeringStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(context, bytes)
    }

    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(context)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            match &mut this.closing {
                Closing::Open => {
                    ready!(Pin::new(&mut this.inner).poll_shutdown(context))?;
                    this.closing = Closing::Draining {
                        discarded: 0,
                        deadline: Box::pin(tokio::time::sleep(LINGER_MAX_TIME)),
                    };
                }
                Closing::Draining {
                    discarded,
                    deadline,
                } => {
                    if deadline.as_mut().poll(context).is_ready() {
                        this.closing = Closing::Done;
                        continue;
                    }
                    let mut scratch = [0_u8; 8 * 1024];
                    let mut buffer = ReadBuf::new(&mut scratch);
                    match ready!(Pin::new(&mut this.inner).poll_read(context, &mut buffer)) {
                        Ok(()) if !buffer.filled().is_empty() => {
                            *discarded += buffer.filled().len();
                            if *discarded >= LINGER_MAX_BYTES {
                                this.closing = Closing::Done;
                            }
                        }
                        // The client closed its side, or the connection broke: nothing to wait for.
                        Ok(()) | Err(_) => this.closing = Closing::Done,
                    }
                }
                Closing::Done => return Poll::Ready(Ok(())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    #[tokio::test]
    async fn shutdown_ends_the_write_side_then_discards_until_the_peer_closes() {
        let (server, mut client) = tokio::io::duplex(64);
        let mut server = LingeringStream::new(server);
        server.write_all(b"answer").await.expect("write");
        let shutdown = tokio::spawn(async move { server.shutdown().await });

        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.expect("read");
        assert_eq!(answer, b"answer");
        // Still sending after the answer: the server keeps reading instead of going away.
        client.write_all(&[7; 10_000]).await.expect("write");
        assert!(!shutdown.is_finished());
        drop(client);
        shutdown.await.expect("join").expect("shutdown");
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_never_closes_is_let_go_after_the_linger_time() {
        let (server, _client) = tokio::io::duplex(64);
        let mut server = LingeringStream::new(server);
        let started = tokio::time::Instant::now();
        server.shutdown().await.expect("shutdown");
        assert_eq!(started.elapsed(), LINGER_MAX_TIME);
    }

    #[tokio::test]
    async fn a_peer_sending_without_end_is_let_go_after_the_byte_bound() {
        let (server, mut client) = tokio::io::duplex(64 * 1024);
        let mut server = LingeringStream::new(server);
        let shutdown = tokio::spawn(async move { server.shutdown().await });
        let chunk = vec![1_u8; 64 * 1024];
        let mut sent = 0;
        while client.write_all(&chunk).await.is_ok() {
            sent += chunk.len();
            assert!(sent <= LINGER_MAX_BYTES + 2 * chunk.len(), "still reading");
        }
        shutdown.await.expect("join").expect("shutdown");
        assert!(sent >= LINGER_MAX_BYTES - chunk.len());
    }
}
