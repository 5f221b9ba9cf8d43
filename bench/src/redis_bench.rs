//! The raw Redis limit: `redis-benchmark` running one command (`INCR`, or an `EVAL` of a script)
//! against a Redis server, throughput and latency percentiles from its CSV report.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;

/// What one `redis-benchmark` run reported.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RedisFigures {
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub requests: u64,
}

impl RedisFigures {
    pub fn elapsed(&self) -> Duration {
        #[allow(clippy::cast_precision_loss)]
        let requests = self.requests as f64;
        Duration::from_secs_f64(requests / self.per_second.max(f64::MIN_POSITIVE))
    }
}

#[derive(Debug, Clone)]
pub struct RedisBenchmark {
    pub binary: PathBuf,
    pub port: u16,
    pub clients: usize,
    pub requests: u64,
}

impl RedisBenchmark {
    /// `redis-benchmark -t incr` (a random key per request among 10⁹).
    pub async fn incr(&self) -> anyhow::Result<RedisFigures> {
        self.run(vec!["-t".into(), "incr".into()]).await
    }

    /// `redis-benchmark … eval <script> <keys> <key…> <arg…>`: `__rand_int__` in an argument is
    /// a random 12-digit number below 10⁹ on each request.
    pub async fn eval(
        &self,
        script: &str,
        keys: &[&str],
        args: &[&str],
    ) -> anyhow::Result<RedisFigures> {
        let mut command = vec!["eval".into(), script.into(), keys.len().to_string()];
        command.extend(keys.iter().map(|k| (*k).to_owned()));
        command.extend(args.iter().map(|a| (*a).to_owned()));
        self.run(command).await
    }

    async fn run(&self, command: Vec<String>) -> anyhow::Result<RedisFigures> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.run_blocking(&command)).await?
    }

    fn run_blocking(&self, command: &[String]) -> anyhow::Result<RedisFigures> {
        let output = Command::new(&self.binary)
            .args(["-h", "127.0.0.1", "--csv"])
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-c")
            .arg(self.clients.to_string())
            .arg("-n")
            .arg(self.requests.to_string())
            // keyspacelen is read as a C int: 10⁹ fits, 10¹² would wrap to one key.
            .args(["-r", "1000000000"])
            .args(command)
            .output()
            .with_context(|| format!("running {}", self.binary.display()))?;
        let report = String::from_utf8_lossy(&output.stdout);
        anyhow::ensure!(
            output.status.success(),
            "redis-benchmark failed: {}\n{report}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut figures = parse_csv(&report)?;
        figures.requests = self.requests;
        Ok(figures)
    }
}

/// The figures of the last test in `redis-benchmark --csv`'s report. The test's name is the
/// command line, which may hold line breaks and commas (a script), so the numbers are read from
/// the end of the last line: `…","rps","avg","min","p50","p95","p99","max"`.
pub fn parse_csv(report: &str) -> anyhow::Result<RedisFigures> {
    let line = report
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .context("an empty redis-benchmark report")?;
    let fields: Vec<&str> = line.trim().trim_matches('"').rsplitn(8, "\",\"").collect();
    let number = |i: usize, what: &str| -> anyhow::Result<f64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("no {what} in redis-benchmark's line {line:?}"))
    };
    Ok(RedisFigures {
        per_second: number(6, "rps")?,
        p50_ms: number(3, "p50")?,
        p99_ms: number(1, "p99")?,
        requests: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_figures_are_read_from_the_end_of_a_multi_line_test_name() {
        let report = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\
                      \"eval local v = 1\nreturn v, \"\"x\"\" 0\",\"19940.18\",\"1.827\",\"0.072\",\"0.887\",\"5.279\",\"12.159\",\"40.319\"\n";
        let figures = parse_csv(report).expect("parses");
        assert_eq!(
            figures,
            RedisFigures {
                per_second: 19940.18,
                p50_ms: 0.887,
                p99_ms: 12.159,
                requests: 0
            }
        );
    }

    #[test]
    fn a_report_without_figures_is_an_error() {
        assert!(parse_csv("").is_err());
        assert!(parse_csv("Could not connect to Redis at 127.0.0.1:1\n").is_err());
    }
}
