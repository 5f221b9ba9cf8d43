//! The machinery of the stress tests: server processes, a database proxy that can be cut, a
//! recording HTTP fleet, the random workload and the database audit.

pub mod audit;
pub mod fleet;
pub mod process;
pub mod proxy;
pub mod workload;

use std::time::Duration;

/// One stress test at a time: each starts three servers and saturates the two cores by itself.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Held for the whole of one stress test.
pub async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

/// The default seed: fixed, so that a failing run can be repeated with the same choices.
const DEFAULT_SEED: u64 = 0x5EED_2026;

/// The seed of the random workload: `STRESS_SEED` (decimal or 0x-hex) or the fixed default.
pub fn seed() -> u64 {
    match std::env::var("STRESS_SEED") {
        Ok(text) => {
            let text = text.trim();
            let parsed = match text.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => text.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("STRESS_SEED={text:?} is not a number"))
        }
        Err(_) => DEFAULT_SEED,
    }
}

/// How long a load phase runs: `STRESS_SOAK_SECONDS` when set, else `bounded`.
pub fn load_duration(bounded: Duration) -> Duration {
    match std::env::var("STRESS_SOAK_SECONDS") {
        Ok(text) => Duration::from_secs(
            text.trim()
                .parse()
                .unwrap_or_else(|_| panic!("STRESS_SOAK_SECONDS={text:?} is not a number")),
        ),
        Err(_) => bounded,
    }
}

/// Whether this is a soak run (longer phases, same checks).
pub fn soaking() -> bool {
    std::env::var_os("STRESS_SOAK_SECONDS").is_some()
}

/// The verdict of a load: every exchange checked against the injected faults, and the database
/// audited against the clients' books. Both are reported when either fails.
pub async fn verdict(
    cluster: &process::Cluster,
    books: &audit::Books,
    hold_limit: i64,
    skew: Duration,
) -> anyhow::Result<(fleet::Figures, audit::Audit)> {
    let exchanges = cluster.fleet.recorder.verify();
    let found = audit::audit(
        cluster.database().url(),
        Some(&books.snapshot()),
        hold_limit,
        skew,
    )
    .await;
    match (exchanges, found) {
        (Ok(exchanges), Ok(found)) if found.lost == 0 => Ok((exchanges, found)),
        (exchanges, found) => anyhow::bail!(
            "seed {:#x}\nexchanges: {}\ndatabase: {}",
            seed(),
            match exchanges {
                Ok(figures) => format!("as expected ({figures})"),
                Err(problems) => problems,
            },
            match found {
                Ok(found) => format!("{found}"),
                Err(broken) => format!("{broken:#}"),
            }
        ),
    }
}
