//! The embedded store (`DATABASE_URL=sqlite://PATH`), whatever `E2E_STORE` says: what was
//! answered is still there after a restart, and a second instance on the same file refuses to
//! start, saying to use PostgreSQL for several instances.

use concert_e2e::{Client, TestServer};
use uuid::Uuid;

/// A directory of its own for one test's database file, removed at the end.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("concert-e2e-embedded-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }

    fn url(&self) -> String {
        format!("sqlite://{}", self.0.join("concert.db").display())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn what_was_answered_is_still_there_after_a_restart() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let user = Uuid::new_v4();

    let first = TestServer::start(&scratch.url(), |_| {}).await?;
    let client = Client::new(first.addr);
    let charged = client.charge(user, 50_000, Some("first-charge")).await?;
    assert_eq!(charged.status, 200, "{}", charged.text);
    first.stop().await?;

    let again = TestServer::start(&scratch.url(), |_| {}).await?;
    let client = Client::new(again.addr);
    assert_eq!(client.balance(user).await?, 50_000);
    // The idempotency key survived too: the retry replays, nothing is charged twice.
    let replayed = client.charge(user, 50_000, Some("first-charge")).await?;
    assert_eq!(replayed.status, 200, "{}", replayed.text);
    assert_eq!(client.balance(user).await?, 50_000);
    again.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_instance_on_the_same_file_refuses_to_start() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let first = TestServer::start(&scratch.url(), |_| {}).await?;

    let second = TestServer::start(&scratch.url(), |_| {}).await;
    let error = match second {
        Ok(_) => anyhow::bail!("a second instance started on the same SQLite file"),
        Err(error) => format!("{error:#}"),
    };
    assert!(
        error.contains("in use by another process") && error.contains("PostgreSQL"),
        "{error}"
    );

    // The first one still serves; once it stopped, the file is free again.
    let client = Client::new(first.addr);
    assert_eq!(client.balance(Uuid::new_v4()).await?, 0);
    first.stop().await?;
    TestServer::start(&scratch.url(), |_| {})
        .await?
        .stop()
        .await
}
