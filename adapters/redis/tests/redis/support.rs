//! What the Redis tests share: a fresh line (a key prefix of its own on the process's shared
//! server) and raw reads of its keys.

use std::sync::Arc;
use std::time::Duration;

use concert_application::ports::TicketBlockLeases;

use concert_redis::RedisLine;
use concert_redis::testing::{RedisServer, TestKeys, connect, keys_under};

/// The command timeout of the tests' lines.
pub const TIMEOUT: Duration = Duration::from_secs(1);

/// A line under a fresh prefix on the process's shared server; its keys go with it.
pub struct FreshLine {
    pub line: RedisLine,
    pub keys: TestKeys,
    pub url: String,
}

impl FreshLine {
    /// Drawing its numbers from `blocks`.
    pub async fn new(blocks: Arc<dyn TicketBlockLeases>) -> Self {
        let server = RedisServer::shared();
        let keys = TestKeys::new(server.url());
        let line = server.line(keys.prefix(), TIMEOUT, blocks).await;
        Self {
            line,
            keys,
            url: server.url(),
        }
    }

    /// A plain connection to the line's server, for raw reads and writes.
    pub async fn raw(&self) -> redis::aio::MultiplexedConnection {
        connect(&self.url).await.expect("a connection")
    }

    /// The base of `line`'s keys.
    pub fn base(&self, line: u32) -> String {
        format!("{}{{line:{line}}}:", self.keys.prefix())
    }

    /// Every key of the test's prefix, sorted.
    pub async fn all_keys(&self) -> Vec<String> {
        keys_under(&self.url, self.keys.prefix())
            .await
            .expect("the keys")
    }
}
