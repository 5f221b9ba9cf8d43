//! The result table: one row per scenario with the service's numbers, its raw baseline and the
//! ratio service ÷ baseline, rendered as Markdown.

use std::fmt::Write as _;

use crate::measure::Measure;

/// One line of the table.
#[derive(Debug, Clone)]
pub struct Row {
    pub scenario: String,
    pub service: Measure,
    /// What the service is compared with, and its measure.
    pub baseline: Option<(String, Measure)>,
    /// Lowest acceptable ratio, when the issue sets one.
    pub target: Option<f64>,
    /// Text for the unit of throughput (`req/s`, `journeys/s`).
    pub unit: &'static str,
}

impl Row {
    pub fn ratio(&self) -> Option<f64> {
        let (_, baseline) = self.baseline.as_ref()?;
        let base = baseline.throughput();
        (base > 0.0).then(|| self.service.throughput() / base)
    }

    fn verdict(&self) -> &'static str {
        match (self.target, self.ratio()) {
            (Some(target), Some(ratio)) if ratio >= target => "met",
            (Some(_), Some(_)) => "MISSED",
            _ => "",
        }
    }
}

/// A free-form check (RSS, p99 under a fixed rate) printed under the table.
#[derive(Debug, Clone)]
pub struct Check {
    pub what: String,
    pub value: String,
    pub target: String,
    pub met: bool,
}

pub fn render(rows: &[Row], checks: &[Check], header: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{header}\n");
    let _ = writeln!(
        out,
        "| scenario | service | p50 ms | p90 ms | p99 ms | max ms | CPU µs/req server + PG | baseline | baseline p99 ms | ratio | target |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---|");
    for row in rows {
        let s = &row.service;
        let (baseline, base_p99) = match &row.baseline {
            Some((name, m)) => (
                format!("{name}: {:.0}/s", m.throughput()),
                format!("{:.2}", m.quantile_ms(0.99)),
            ),
            None => ("—".to_owned(), "—".to_owned()),
        };
        let ratio = row
            .ratio()
            .map_or_else(|| "—".to_owned(), |r| format!("{r:.2}"));
        let target = row
            .target
            .map_or_else(|| "—".to_owned(), |t| format!("≥ {t:.2} {}", row.verdict()));
        let cpu = s.cpu_per_request_us().map_or_else(
            || "—".to_owned(),
            |(server, database)| format!("{server:.0} + {database:.0}"),
        );
        let _ = writeln!(
            out,
            "| {} | {:.0} {} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} | {} |",
            row.scenario,
            s.throughput(),
            row.unit,
            s.quantile_ms(0.5),
            s.quantile_ms(0.9),
            s.quantile_ms(0.99),
            s.max_ms(),
            cpu,
            baseline,
            base_p99,
            ratio,
            target,
        );
    }
    if !checks.is_empty() {
        let _ = writeln!(out, "\n| check | value | target | |");
        let _ = writeln!(out, "|---|---:|---|---|");
        for check in checks {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                check.what,
                check.value,
                check.target,
                if check.met { "met" } else { "MISSED" }
            );
        }
    }
    let failures: Vec<String> = rows
        .iter()
        .flat_map(|row| {
            let mut lines = Vec::new();
            if row.service.failed > 0 {
                lines.push(format!(
                    "- {} (service): {} failed; first: {}",
                    row.scenario,
                    row.service.failed,
                    row.service.first_failure.as_deref().unwrap_or("?")
                ));
            }
            if let Some((name, m)) = &row.baseline
                && m.failed > 0
            {
                lines.push(format!(
                    "- {} ({name}): {} failed; first: {}",
                    row.scenario,
                    m.failed,
                    m.first_failure.as_deref().unwrap_or("?")
                ));
            }
            lines
        })
        .collect();
    if !failures.is_empty() {
        let _ = writeln!(out, "\nUnexpected answers:\n{}", failures.join("\n"));
    }
    out
}
