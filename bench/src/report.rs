//! The result table: one row per scenario with the service's numbers, its raw baseline and the
//! ratio service ÷ baseline, rendered as Markdown; with another binary's run (`--before`), that
//! binary's throughput and the change beside each row.

use std::collections::HashMap;
use std::fmt::Write as _;

use anyhow::Context as _;

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

/// Another binary's throughput per scenario, from its run's [`summary`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Before(HashMap<String, f64>);

/// One line per row, `scenario<TAB>throughput`: what a later run needs for its `--before`.
pub fn summary(rows: &[Row]) -> String {
    rows.iter()
        .map(|row| format!("{}\t{:.1}\n", row.scenario, row.service.throughput()))
        .collect()
}

pub fn parse_summary(text: &str) -> anyhow::Result<Before> {
    text.lines()
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (scenario, throughput) = line
                .split_once('\t')
                .with_context(|| format!("no tab in summary line {line:?}"))?;
            let throughput = throughput
                .parse()
                .with_context(|| format!("throughput of {scenario:?}"))?;
            Ok((scenario.to_owned(), throughput))
        })
        .collect::<anyhow::Result<_>>()
        .map(Before)
}

impl Before {
    /// The cells `before | change` of `row` (dashes for a scenario the other run lacks).
    fn cells(&self, row: &Row) -> String {
        match self.0.get(&row.scenario) {
            Some(&before) if before > 0.0 => format!(
                "{before:.0} | {:+.0} %",
                (row.service.throughput() / before - 1.0) * 100.0
            ),
            _ => "— | —".to_owned(),
        }
    }
}

pub fn render(rows: &[Row], checks: &[Check], header: &str, before: &Before) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{header}\n");
    let compared = !before.0.is_empty();
    let (before_head, before_rule) = if compared {
        (" before | change |", "---:|---:|")
    } else {
        ("", "")
    };
    let _ = writeln!(
        out,
        "| scenario | service |{before_head} p50 ms | p90 ms | p99 ms | max ms | CPU µs/req server + PG | baseline | baseline p99 ms | ratio | target |"
    );
    let _ = writeln!(
        out,
        "|---|---:|{before_rule}---:|---:|---:|---:|---:|---|---:|---:|---|"
    );
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
        let before_cells = if compared {
            format!(" {} |", before.cells(row))
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "| {} | {:.0} {} |{} {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} | {} |",
            row.scenario,
            s.throughput(),
            row.unit,
            before_cells,
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn row(scenario: &str, ok: u64) -> Row {
        let mut service = Measure::empty();
        service.ok = ok;
        service.elapsed = Duration::from_secs(1);
        Row {
            scenario: scenario.to_owned(),
            service,
            baseline: None,
            target: None,
            unit: "req/s",
        }
    }

    #[test]
    fn a_summary_reads_back_and_shows_the_change_beside_each_row() {
        let before = parse_summary(&summary(&[row("hold", 1000), row("join", 400)]))
            .expect("summary parses");
        let table = render(&[row("hold", 1500), row("seats", 10)], &[], "run", &before);

        assert!(
            table.contains("| hold | 1500 req/s | 1000 | +50 % |"),
            "{table}"
        );
        assert!(table.contains("| seats | 10 req/s | — | — |"), "{table}");
    }

    #[test]
    fn without_a_before_run_the_table_has_no_change_columns() {
        let table = render(&[row("hold", 1500)], &[], "run", &Before::default());

        assert!(table.contains("| hold | 1500 req/s | 0.00 |"), "{table}");
        assert!(!table.contains("change"), "{table}");
    }

    #[test]
    fn a_malformed_summary_line_is_an_error() {
        assert!(parse_summary("hold 1000\n").is_err());
        assert!(parse_summary("hold\tmany\n").is_err());
    }
}
