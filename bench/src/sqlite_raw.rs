//! The raw limit of the embedded store: the `sqlite-raw` binary running one request's statements
//! on a copy of the service's store file, in a loop on one connection (the store's own shape).
//! Its report (counts, first failure, one latency per line) becomes a [`Measure`].

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;

use crate::measure::Measure;

#[derive(Debug, Clone)]
pub struct SqliteRaw {
    pub binary: PathBuf,
    /// The service's store file.
    pub store: PathBuf,
}

impl SqliteRaw {
    /// Runs `scenario` (a `sqlite-raw` subcommand with its flags) for `duration`.
    pub async fn run(&self, scenario: Vec<String>, duration: Duration) -> anyhow::Result<Measure> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.run_blocking(&scenario, duration)).await?
    }

    fn run_blocking(&self, scenario: &[String], duration: Duration) -> anyhow::Result<Measure> {
        // Beside the store, on the same file system: the copy sees the same disk.
        let copy = self.store.with_extension("raw.db");
        let output = Command::new(&self.binary)
            .arg("--from")
            .arg(&self.store)
            .arg("--copy")
            .arg(&copy)
            .arg("--seconds")
            .arg(duration.as_secs().max(1).to_string())
            .args(scenario)
            .output()
            .with_context(|| format!("running {}", self.binary.display()))?;
        if !output.status.success() {
            anyhow::bail!(
                "sqlite-raw {} failed: {}",
                scenario.join(" "),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        parse(&String::from_utf8_lossy(&output.stdout))
    }
}

/// `ok failed elapsed_us`, the first failure (or an empty line), then latencies in µs.
fn parse(report: &str) -> anyhow::Result<Measure> {
    let mut lines = report.lines();
    let head: Vec<u64> = lines
        .next()
        .context("empty sqlite-raw report")?
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .context("sqlite-raw's counts")?;
    let [ok, failed, elapsed] = head[..] else {
        anyhow::bail!("sqlite-raw's counts: {head:?}");
    };
    let mut measure = Measure::empty();
    measure.ok = ok;
    measure.failed = failed;
    measure.elapsed = Duration::from_micros(elapsed);
    measure.first_failure = lines
        .next()
        .filter(|line| !line.is_empty())
        .map(str::to_owned);
    for line in lines {
        let micros: u64 = line.parse().context("a sqlite-raw latency")?;
        measure.latency.saturating_record(micros.max(1));
    }
    Ok(measure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_becomes_a_measure() {
        let m = parse("3 1 2000000\nseat moved\n100\n200\n300\n400\n").expect("parses");

        assert_eq!((m.ok, m.failed), (3, 1));
        assert!((m.throughput() - 1.5).abs() < 1e-9);
        assert_eq!(m.first_failure.as_deref(), Some("seat moved"));
        assert_eq!(m.latency.len(), 4);
    }

    #[test]
    fn no_failure_is_an_empty_line() {
        let m = parse("2 0 1000000\n\n5\n6\n").expect("parses");

        assert!(m.first_failure.is_none());
    }
}
