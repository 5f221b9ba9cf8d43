//! Start-up and pool behaviour: database creation, concurrent migrations, session settings,
//! failing fast while the database is unreachable and recovering after.

use std::time::{Duration, Instant};

use concert_application::ports::{ReadinessProbe, RepositoryError, WalletRepository};
use concert_postgres::testing::url_with_database;
use concert_postgres::{
    PgConfig, PgReadinessProbe, PgWalletRepository, build_pool, prepare_database,
};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncConnection, RunQueryDsl};

use concert_contract::Store;
use concert_contract::fixtures::{NOW, charge, decide_charge, race};

use crate::contract::PgStore;
use crate::support::{Ctx, user};

fn server_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| concert_postgres::testing::DEFAULT_SERVER_URL.to_owned())
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    count: i64,
}

#[derive(QueryableByName)]
struct Setting {
    #[diesel(sql_type = Text)]
    value: String,
}

async fn drop_database(ctx: &Ctx, name: &str) {
    ctx.execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn prepare_database_creates_a_missing_database_and_migrates_it_once_when_instances_start_together()
 {
    let ctx = Ctx::new().await;
    let name = format!("prep_{}", uuid::Uuid::new_v4().simple());
    let url = url_with_database(&server_url(), &name);

    let results = race(4, |_| {
        let url = url.clone();
        async move { prepare_database(&url).await }
    })
    .await;
    for result in &results {
        assert!(result.is_ok(), "{result:?}");
    }
    // Once more on an existing, migrated database: nothing to do.
    prepare_database(&url).await.expect("idempotent");

    let mut config = PgConfig::new(url.clone());
    config.max_connections = 1;
    let pool = build_pool(&config).expect("pool");
    let mut conn = pool.get().await.expect("connection to the new database");
    let applied: Count =
        diesel::sql_query("SELECT count(*) AS count FROM __diesel_schema_migrations")
            .get_result(&mut conn)
            .await
            .expect("migrations table");
    let embedded = diesel::migration::MigrationSource::<diesel::pg::Pg>::migrations(
        &concert_postgres::MIGRATIONS,
    )
    .expect("embedded migrations")
    .len();
    assert_eq!(
        usize::try_from(applied.count).expect("a count"),
        embedded,
        "every embedded migration, applied once"
    );
    assert!(embedded >= 5, "the retention indexes included");
    let queue_rows: Count = diesel::sql_query("SELECT count(*) AS count FROM queue_state")
        .get_result(&mut conn)
        .await
        .expect("queue_state");
    assert_eq!(
        queue_rows.count, 1,
        "the migration seeds the single counter row"
    );
    drop(conn);
    pool.close();
    drop(pool);
    drop_database(&ctx, &name).await;
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pooled_connections_carry_the_statement_timeout_and_application_name() {
    let ctx = Ctx::new().await;
    let mut config = ctx.db.config();
    config.statement_timeout = Duration::from_millis(1500);
    config.application_name = "concert-settings-test".to_owned();
    let pool = build_pool(&config).expect("pool");
    let mut conn = pool.get().await.expect("connection");
    let timeout: Setting =
        diesel::sql_query("SELECT current_setting('statement_timeout') AS value")
            .get_result(&mut conn)
            .await
            .expect("setting");
    assert_eq!(timeout.value, "1500ms");
    let name: Setting = diesel::sql_query("SELECT current_setting('application_name') AS value")
        .get_result(&mut conn)
        .await
        .expect("setting");
    assert_eq!(name.value, "concert-settings-test");
    drop(conn);
    pool.close();
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn statement_running_past_the_timeout_is_cut_and_reported_unavailable() {
    let store = PgStore::fresh().await;
    let ctx = &store.ctx;
    let someone = user();
    charge(&store, someone, 100, NOW, None).await;
    let mut config = ctx.db.config();
    config.statement_timeout = Duration::from_millis(300);
    let short = build_pool(&config).expect("pool");

    // Another transaction holds the wallet row; the charge's compare-and-set waits for it.
    let write = decide_charge(&store, someone, 5, NOW, None).await;
    let mut blocker = ctx.db.connect().await.expect("a connection");
    let wallets = PgWalletRepository::new(short.clone());
    let started = Instant::now();
    let outcome = blocker
        .transaction::<_, diesel::result::Error, _>(async |conn| {
            diesel::sql_query(format!(
                "SELECT 1 FROM wallets WHERE user_id = '{}' FOR UPDATE",
                someone.get()
            ))
            .execute(conn)
            .await?;
            Ok(wallets.save_charge(&write).await)
        })
        .await
        .expect("blocker transaction");
    assert!(
        matches!(outcome, Err(RepositoryError::Unavailable(_))),
        "{outcome:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    let balance = ctx.wallets().balance(someone).await.expect("balance");
    assert_eq!(balance.get(), 100, "the timed-out charge changed nothing");
    short.close();
    store.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_database_fails_fast_as_unavailable() {
    // A server that accepts TCP connections and never answers: only the timeouts can help.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listener");
    let address = silent.local_addr().expect("address");
    let accept = tokio::spawn(async move {
        let mut sockets = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            sockets.push(socket);
        }
    });
    let mut config = PgConfig::new(format!("postgres://postgres@{address}/concert"));
    config.connect_timeout = Duration::from_millis(500);
    config.acquire_timeout = Duration::from_millis(500);
    let probe =
        PgReadinessProbe::new(build_pool(&config).expect("the pool is built without connecting"));
    let started = Instant::now();
    let result = probe.check().await;
    assert!(
        matches!(result, Err(RepositoryError::Unavailable(_))),
        "{result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    accept.abort();

    // Nothing listening at all: refused at once.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listener");
    let address = closed.local_addr().expect("address");
    drop(closed);
    let probe = PgReadinessProbe::new(
        build_pool(&PgConfig::new(format!(
            "postgres://postgres@{address}/concert"
        )))
        .expect("pool"),
    );
    let started = Instant::now();
    let result = probe.check().await;
    assert!(
        matches!(result, Err(RepositoryError::Unavailable(_))),
        "{result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pool_recovers_by_itself_after_its_connections_are_killed() {
    let ctx = Ctx::new().await;
    let mut config = ctx.db.config();
    config.application_name = format!("concert-recover-{}", &ctx.db.name()[5..13]);
    config.max_connections = 3;
    let pool = build_pool(&config).expect("pool");
    let probe = PgReadinessProbe::new(pool.clone());
    // Three connections open and idle in the pool.
    {
        let a = pool.get().await.expect("a");
        let b = pool.get().await.expect("b");
        let c = pool.get().await.expect("c");
        drop((a, b, c));
    }
    probe.check().await.expect("ready before");
    let killed = ctx
        .count(&format!(
            "SELECT count(pg_terminate_backend(pid)) AS count FROM pg_stat_activity \
             WHERE application_name = '{}'",
            config.application_name
        ))
        .await;
    assert_eq!(killed, 3);
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Every killed connection is noticed on recycling and replaced: no error reaches the caller.
    for _ in 0..5 {
        probe
            .check()
            .await
            .expect("ready after the connections died");
    }
    pool.close();
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_probe_answers_while_the_database_is_up() {
    let ctx = Ctx::new().await;
    ctx.readiness().check().await.expect("ready");
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_test_database_left_to_drop_is_removed_all_the_same() {
    let ctx = Ctx::new().await;
    let forgotten = concert_postgres::testing::TestDatabase::create()
        .await
        .expect("a test database");
    let name = forgotten.name().to_owned();
    let exists =
        |name: &str| format!("SELECT count(*) AS count FROM pg_database WHERE datname = '{name}'");
    assert_eq!(ctx.count(&exists(&name)).await, 1);
    drop(forgotten); // as when a test panics before its explicit drop
    assert_eq!(ctx.count(&exists(&name)).await, 0);
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn instances_starting_together_agree_on_the_first_generated_deployment_key() {
    let ctx = Ctx::new().await;
    let url = ctx.db.url().to_owned();

    let keys = race(4, |i| {
        let url = url.clone();
        async move {
            let candidate = vec![u8::try_from(i).expect("small"); 32];
            concert_postgres::deployment_key(&url, concert_postgres::QUEUE_TOKEN_KEY, &candidate)
                .await
                .expect("a key")
        }
    })
    .await;

    assert!(keys.windows(2).all(|pair| pair[0] == pair[1]), "one key");
    let later = concert_postgres::deployment_key(&url, concert_postgres::QUEUE_TOKEN_KEY, &[9; 32])
        .await
        .expect("a key");
    assert_eq!(later, keys[0], "a later instance reads the stored key");
    assert!(
        concert_postgres::deployment_key(&url, QUEUE_OTHER, &[1; 8])
            .await
            .is_err(),
        "a key shorter than 32 bytes is refused by the schema"
    );
    ctx.finish().await;
}

const QUEUE_OTHER: &str = "another-key";
