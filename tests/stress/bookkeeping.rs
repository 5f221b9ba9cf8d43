//! The random workload over three instances with short holds: afterwards the database's books are
//! exact and every client's book matches them.

use std::time::{Duration, Instant};

use concert_postgres::testing::TestDatabase;

use crate::harness::process::{Cluster, ClusterSpec};
use crate::harness::{self, audit, workload};

const HOLD_TTL_SECONDS: u64 = 2;
const HOLD_LIMIT: i64 = 4;

#[tokio::test(flavor = "multi_thread")]
async fn random_holds_payments_cancels_and_lapses_keep_the_books_exact() -> anyhow::Result<()> {
    let _serial = harness::exclusive().await;
    let seed = harness::seed();
    let started = Instant::now();
    let cluster = Cluster::start(
        ClusterSpec::new("bookkeeping")
            .env("HOLD_TTL_SECONDS", HOLD_TTL_SECONDS)
            .env("MAX_HOLDS_PER_USER", HOLD_LIMIT),
        TestDatabase::create().await?,
    )
    .await?;
    let duration = harness::load_duration(Duration::from_secs(15));
    let stage = workload::Stage::prepare(cluster.fleet.clone(), seed, 300, duration).await?;
    let load = workload::run(stage.clone(), 60).await?;
    let (exchanges, found) =
        harness::verdict(&cluster, &stage.books, HOLD_LIMIT, audit::SKEW).await?;
    anyhow::ensure!(found.payments > 0, "{found}");
    eprintln!(
        "stress bookkeeping (seed {seed:#x}, load {duration:?}, total {:.1?}): {load}. \
         Exchanges: {exchanges}. Database: {found}",
        started.elapsed()
    );
    cluster.finish().await
}
