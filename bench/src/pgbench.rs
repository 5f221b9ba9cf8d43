//! The raw database limit: `pgbench` running one SQL file (the statement or transaction a service
//! request boils down to) with prepared statements and the same client concurrency, against the
//! same database. Throughput from its report, latency percentiles from its per-transaction log.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;

use crate::measure::{Measure, new_histogram};

#[derive(Debug, Clone)]
pub struct PgBench {
    pub binary: PathBuf,
    pub database_url: String,
    /// Where the per-transaction logs go (emptied before each run).
    pub log_dir: PathBuf,
}

impl PgBench {
    /// Runs `script` with `-D name=value` variables for `duration` with `clients` connections.
    pub async fn run(
        &self,
        script: &Path,
        vars: &[(&str, String)],
        clients: usize,
        duration: Duration,
    ) -> anyhow::Result<Measure> {
        let this = self.clone();
        let script = script.to_path_buf();
        let vars: Vec<String> = vars.iter().map(|(k, v)| format!("{k}={v}")).collect();
        tokio::task::spawn_blocking(move || this.run_blocking(&script, &vars, clients, duration))
            .await?
    }

    fn run_blocking(
        &self,
        script: &Path,
        vars: &[String],
        clients: usize,
        duration: Duration,
    ) -> anyhow::Result<Measure> {
        if self.log_dir.exists() {
            std::fs::remove_dir_all(&self.log_dir)?;
        }
        std::fs::create_dir_all(&self.log_dir)?;
        let mut command = Command::new(&self.binary);
        command
            .args(["-n", "-M", "prepared", "-j", "2", "-l"])
            .arg("-c")
            .arg(clients.to_string())
            .arg("-T")
            .arg(duration.as_secs().max(1).to_string())
            .arg("-f")
            .arg(script)
            .arg(format!(
                "--log-prefix={}",
                self.log_dir.join("pgbench").display()
            ));
        for var in vars {
            command.arg("-D").arg(var);
        }
        command.arg(&self.database_url);
        let output = command
            .output()
            .with_context(|| format!("running {}", self.binary.display()))?;
        let report = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            anyhow::bail!(
                "pgbench {} failed: {}\n{}",
                script.display(),
                String::from_utf8_lossy(&output.stderr),
                report
            );
        }
        let tps = report
            .lines()
            .find_map(|line| line.strip_prefix("tps = "))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<f64>().ok())
            .with_context(|| format!("no tps in pgbench's report:\n{report}"))?;
        let failed = report
            .lines()
            .find_map(|line| line.strip_prefix("number of failed transactions: "))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        let mut measure = Measure::empty();
        for entry in std::fs::read_dir(&self.log_dir)? {
            let text = std::fs::read_to_string(entry?.path())?;
            for line in text.lines() {
                // client_id transaction_no time script_no time_epoch time_us
                let Some(micros) = line
                    .split_whitespace()
                    .nth(2)
                    .and_then(|t| t.parse::<u64>().ok())
                else {
                    continue;
                };
                measure.latency.saturating_record(micros.max(1));
                measure.ok += 1;
            }
        }
        if measure.ok == 0 {
            measure.latency = new_histogram();
        }
        measure.failed = failed;
        #[allow(clippy::cast_precision_loss)]
        let seconds = measure.ok as f64 / tps.max(f64::MIN_POSITIVE);
        measure.elapsed = Duration::from_secs_f64(seconds);
        if failed > 0 {
            measure.first_failure = Some(format!("{failed} pgbench transactions failed"));
        }
        Ok(measure)
    }
}
