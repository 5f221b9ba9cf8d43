//! Transient errors provoked on a live server: each must come out as
//! `RepositoryError::Unavailable`, whether its SQLSTATE survives diesel-async's conversion (as a
//! `DatabaseErrorKind`) or only its message does. A plain mistake must stay `Unexpected`.

use std::time::{Duration, Instant};

use concert_application::ports::{RepositoryError, WalletRepository};
use concert_postgres::testing::repository_error;
use concert_postgres::{PgWalletRepository, build_pool};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

use concert_contract::Store;
use concert_contract::fixtures::{NOW, charge, decide_charge, user};

use crate::contract::PgStore;
use crate::support::Ctx;

/// Runs `sql` (one statement), expecting the server to refuse it.
async fn failing(conn: &mut AsyncPgConnection, sql: &str) -> DieselError {
    match diesel::sql_query(sql).execute(conn).await {
        Ok(_) => panic!("{sql}: succeeded"),
        Err(e) => e,
    }
}

#[derive(diesel::QueryableByName)]
struct Pid {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pid: i32,
}

fn message(error: &DieselError) -> &str {
    match error {
        DieselError::DatabaseError(_, info) => info.message(),
        other => panic!("not a database error: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn statement_timeout_57014_is_unavailable() {
    let ctx = Ctx::new().await;
    let mut conn = ctx.db.connect().await.expect("a connection");
    conn.batch_execute("SET statement_timeout = '1ms'")
        .await
        .expect("set");
    let error = failing(&mut conn, "SELECT pg_sleep(1)").await;
    assert!(
        message(&error).starts_with("canceling statement due to statement timeout"),
        "{error:?}"
    );
    let error = repository_error(error);
    assert!(
        matches!(error, RepositoryError::Unavailable(_)),
        "{error:?}"
    );
    drop(conn);
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_shutdown_57p01_is_unavailable() {
    let ctx = Ctx::new().await;
    let mut victim = ctx.db.connect().await.expect("a connection");
    let Pid { pid } = diesel::sql_query("SELECT pg_backend_pid() AS pid")
        .get_result(&mut victim)
        .await
        .expect("own pid");
    // Terminated from another session while it sleeps.
    let killer = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        ctx.count(&format!(
            "SELECT count(pg_terminate_backend({pid})) AS count"
        ))
        .await
    };
    let (error, killed) = tokio::join!(failing(&mut victim, "SELECT pg_sleep(10)"), killer);
    assert_eq!(killed, 1);
    // The server's FATAL answer to the statement it was running, code dropped (see error.rs).
    assert!(
        message(&error).starts_with("terminating connection due to administrator command"),
        "{error:?}"
    );
    let error = repository_error(error);
    assert!(
        matches!(error, RepositoryError::Unavailable(_)),
        "{error:?}"
    );
    drop(victim);
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lock_not_available_55p03_is_unavailable() {
    let ctx = Ctx::new().await;
    let mut holder = ctx.db.connect().await.expect("a connection");
    let mut other = ctx.db.connect().await.expect("a connection");
    holder
        .batch_execute("BEGIN; SELECT 1 FROM queue_state FOR UPDATE")
        .await
        .expect("row locked");
    let error = failing(&mut other, "SELECT 1 FROM queue_state FOR UPDATE NOWAIT").await;
    let error = repository_error(error);
    assert!(
        matches!(error, RepositoryError::Unavailable(_)),
        "{error:?}"
    );
    holder.batch_execute("ROLLBACK").await.expect("rollback");
    drop((holder, other));
    ctx.finish().await;
}

/// Takes the advisory lock `key` in `conn`'s open transaction; on failure rolls the
/// transaction back at once, releasing what it holds, so the other side can go on.
async fn lock_or_roll_back(conn: &mut AsyncPgConnection, key: i64) -> Result<(), DieselError> {
    let result = diesel::sql_query(format!("SELECT pg_advisory_xact_lock({key})"))
        .execute(&mut *conn)
        .await;
    if result.is_err() {
        conn.batch_execute("ROLLBACK").await.expect("rollback");
    }
    result.map(drop)
}

#[tokio::test(flavor = "multi_thread")]
async fn deadlock_40p01_is_unavailable() {
    let ctx = Ctx::new().await;
    let mut a = ctx.db.connect().await.expect("a connection");
    let mut b = ctx.db.connect().await.expect("a connection");
    a.batch_execute("BEGIN; SELECT pg_advisory_xact_lock(9001)")
        .await
        .expect("a holds 9001");
    b.batch_execute("BEGIN; SELECT pg_advisory_xact_lock(9002)")
        .await
        .expect("b holds 9002");
    // Each now waits for the other's lock; the server breaks the cycle after deadlock_timeout.
    let (ra, rb) = tokio::join!(
        lock_or_roll_back(&mut a, 9002),
        lock_or_roll_back(&mut b, 9001)
    );
    let (error, mut winner) = match (ra, rb) {
        (Err(e), Ok(())) => (e, b),
        (Ok(()), Err(e)) => (e, a),
        other => panic!("expected exactly one deadlock victim: {other:?}"),
    };
    winner.batch_execute("COMMIT").await.expect("commit");
    assert!(
        message(&error).starts_with("deadlock detected"),
        "{error:?}"
    );
    let error = repository_error(error);
    assert!(
        matches!(error, RepositoryError::Unavailable(_)),
        "{error:?}"
    );
    drop(winner);
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn serialization_failure_40001_keeps_its_kind_and_is_unavailable() {
    let ctx = Ctx::new().await;
    let mut a = ctx.db.connect().await.expect("a connection");
    let mut b = ctx.db.connect().await.expect("a connection");
    // Two repeatable-read transactions update the same row: the second to commit loses.
    for conn in [&mut a, &mut b] {
        conn.batch_execute(
            "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT serving FROM queue_state",
        )
        .await
        .expect("snapshot taken");
    }
    a.batch_execute("UPDATE queue_state SET serving = serving + 1; COMMIT")
        .await
        .expect("first writer commits");
    let error = failing(&mut b, "UPDATE queue_state SET serving = serving + 1").await;
    assert!(
        matches!(
            error,
            DieselError::DatabaseError(DatabaseErrorKind::SerializationFailure, _)
        ),
        "{error:?}"
    );
    let error = repository_error(error);
    assert!(
        matches!(error, RepositoryError::Unavailable(_)),
        "{error:?}"
    );
    b.batch_execute("ROLLBACK").await.expect("rollback");
    drop((a, b));
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mistakes_stay_unexpected() {
    let ctx = Ctx::new().await;
    let mut conn = ctx.db.connect().await.expect("a connection");
    for sql in [
        "SELEC 1",
        "SELECT 1 / 0",
        "SELECT * FROM nowhere",
        "INSERT INTO queue_state SELECT * FROM queue_state",
    ] {
        let error = repository_error(failing(&mut conn, sql).await);
        assert!(
            matches!(error, RepositoryError::Unexpected(_)),
            "{sql}: {error:?}"
        );
    }
    drop(conn);
    ctx.finish().await;
}

/// A charge waiting for a row lock, on a pool of its own named `application_name`; `kill` is
/// called with that name once the charge's backend waits, and the charge's result is returned.
async fn charge_interrupted_by(store: &PgStore, kill: &str) -> Result<(), RepositoryError> {
    let ctx = &store.ctx;
    let someone = user();
    charge(store, someone, 100, NOW, None).await;
    let mut config = ctx.db.config();
    config.application_name = format!("concert-{kill}-{}", &ctx.db.name()[5..13]);
    config.max_connections = 1;
    let wallets = PgWalletRepository::new(build_pool(&config).expect("pool"));

    let mut blocker = ctx.db.connect().await.expect("a connection");
    blocker
        .batch_execute(&format!(
            "BEGIN; SELECT 1 FROM wallets WHERE user_id = '{}' FOR UPDATE",
            someone.get()
        ))
        .await
        .expect("row locked");
    let write = decide_charge(store, someone, 5, NOW, None).await;
    let charge = tokio::spawn(async move { wallets.save_charge(&write).await.map(drop) });
    let waiting = format!(
        "FROM pg_stat_activity WHERE application_name = '{}' AND wait_event_type = 'Lock'",
        config.application_name
    );
    let started = Instant::now();
    while ctx
        .count(&format!("SELECT count(*) AS count {waiting}"))
        .await
        == 0
    {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "the charge never waited for the lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let killed = ctx
        .count(&format!("SELECT count({kill}(pid)) AS count {waiting}"))
        .await;
    assert_eq!(killed, 1);
    let result = charge.await.expect("the charge task");
    blocker.batch_execute("ROLLBACK").await.expect("rollback");
    result
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repository_call_whose_backend_is_terminated_is_unavailable() {
    let store = PgStore::fresh().await;
    // Inside a transaction the 57P01 is followed by a rollback on the dead connection, whose
    // failure (a closed connection, no SQLSTATE) is what diesel-async reports.
    let result = charge_interrupted_by(&store, "pg_terminate_backend").await;
    assert!(
        matches!(result, Err(RepositoryError::Unavailable(_))),
        "{result:?}"
    );
    store.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repository_call_whose_statement_is_cancelled_57014_is_unavailable() {
    let store = PgStore::fresh().await;
    let result = charge_interrupted_by(&store, "pg_cancel_backend").await;
    assert!(
        matches!(result, Err(RepositoryError::Unavailable(_))),
        "{result:?}"
    );
    store.finish().await;
}
