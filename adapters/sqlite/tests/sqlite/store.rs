//! Opening the store: created and migrated when missing, kept after a restart, one process per
//! file.

use concert_sqlite::{Location, OpenError, SqliteStore};

/// A directory of its own under the system's temporary directory, removed when dropped.
pub struct Scratch(std::path::PathBuf);

impl Scratch {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("concert-sqlite-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        Self(dir)
    }

    pub fn url(&self, file: &str) -> String {
        format!("sqlite://{}", self.0.join(file).display())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn urls_name_a_file_or_memory() {
    assert_eq!(
        Location::parse("sqlite://concert.db").expect("relative"),
        Location::File("concert.db".into())
    );
    assert_eq!(
        Location::parse("sqlite:///var/lib/concert/concert.db").expect("absolute"),
        Location::File("/var/lib/concert/concert.db".into())
    );
    assert_eq!(
        Location::parse("sqlite::memory:").expect("memory"),
        Location::Memory
    );
    assert!(matches!(
        Location::parse("postgres://localhost/db"),
        Err(OpenError::InvalidUrl(_))
    ));
    assert!(matches!(
        Location::parse("sqlite://"),
        Err(OpenError::InvalidUrl(_))
    ));
}

#[tokio::test]
async fn a_missing_file_is_created_in_missing_directories_and_migrated() {
    let scratch = Scratch::new();
    let url = scratch.url("nested/dir/concert.db");
    let store = SqliteStore::open(&url).await.expect("open");
    assert!(matches!(store.location(), Location::File(path) if path.exists()));
    drop(store);
    // Opening again finds the schema in place.
    SqliteStore::open(&url).await.expect("open again");
}

#[tokio::test]
async fn a_second_open_of_the_same_file_is_refused_until_the_first_closes() {
    let scratch = Scratch::new();
    let url = scratch.url("concert.db");
    let first = SqliteStore::open(&url).await.expect("first");
    let second = SqliteStore::open(&url).await;
    match second {
        Err(error @ OpenError::InUse(_)) => {
            assert!(error.to_string().contains("PostgreSQL"), "{error}");
        }
        other => panic!("a second store on the same file: {other:?}"),
    }
    drop(first);
    SqliteStore::open(&url).await.expect("free again");
}

#[tokio::test]
async fn an_open_store_is_ready() {
    use concert_application::ports::ReadinessProbe;
    let store = SqliteStore::in_memory().expect("store");
    concert_sqlite::SqliteReadinessProbe::new(store)
        .check()
        .await
        .expect("ready");
}
