//! The sale-open table: each line's burst (joins/s, p50, p99, the time until every user held a
//! place, failures, the check of the line) beside its raw baseline measured in the same run, and
//! the targets. Each part of the run writes its figures to a JSON file (the instances
//! are stopped and started between them); `sale-open report` reads them back and renders this.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::measure::Measure;
use crate::redis_bench::RedisFigures;
use crate::sale_open::LineCheck;

/// Throughput and latency of one run, service or baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub ok: u64,
    pub failed: u64,
    pub seconds: f64,
    pub first_failure: Option<String>,
}

impl Figures {
    pub fn of(m: &Measure) -> Self {
        Self {
            per_second: m.throughput(),
            p50_ms: m.quantile_ms(0.5),
            p99_ms: m.quantile_ms(0.99),
            ok: m.ok,
            failed: m.failed,
            seconds: m.elapsed.as_secs_f64(),
            first_failure: m.first_failure.clone(),
        }
    }

    pub fn of_redis(r: &RedisFigures) -> Self {
        Self {
            per_second: r.per_second,
            p50_ms: r.p50_ms,
            p99_ms: r.p99_ms,
            ok: r.requests,
            failed: 0,
            seconds: r.elapsed().as_secs_f64(),
            first_failure: None,
        }
    }
}

/// CPU time per placed user, in microseconds, of each party on the shared cores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpuPerJoin {
    pub generator: f64,
    pub instances: f64,
    pub store: f64,
}

/// One line's burst and its check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Leg {
    /// `PostgreSQL`, `Redis`.
    pub line: String,
    pub users: u64,
    pub instances: usize,
    pub connections: usize,
    /// The `default` room's `maxActive` during the burst.
    pub max_active: u64,
    /// `ok`: users placed; `failed`: failed attempts (retried); `seconds`: until the last user
    /// held a place.
    pub joins: Figures,
    pub unplaced: u64,
    pub active: u64,
    pub waiting: u64,
    /// What the line check found wrong; empty when it passed.
    pub problems: Vec<String>,
    /// Seconds the check's status polls took (all users, not a sample).
    pub check_seconds: f64,
    /// The room as an instance reported it after the burst (`issued`, `waiting`, `active`).
    pub room_after: Option<String>,
    pub cpu: Option<CpuPerJoin>,
}

impl Leg {
    pub fn set_check(&mut self, check: &LineCheck) {
        self.active = check.active;
        self.waiting = check.waiting;
        self.problems.clone_from(&check.problems);
    }

    pub fn passed(&self) -> bool {
        self.problems.is_empty() && self.unplaced == 0
    }
}

/// A raw baseline: what ran, with how many clients, and its figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    pub name: String,
    pub clients: usize,
    pub figures: Figures,
}

/// Everything one run measured; a missing part is `None` (with `redis_missing` saying why the
/// Redis line was not measured).
#[derive(Debug, Clone, Default)]
pub struct Sale {
    pub header: String,
    pub postgres: Option<Leg>,
    pub postgres_baselines: Vec<Baseline>,
    pub redis: Option<Leg>,
    pub redis_missing: Option<String>,
    pub redis_baselines: Vec<Baseline>,
}

/// `1234567` → `1,234,567`.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn rate(per_second: f64) -> String {
    // Rounded to whole operations: a throughput never goes below zero.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let whole = per_second.round().max(0.0) as u64;
    grouped(whole)
}

fn line_check(leg: &Leg) -> String {
    if leg.passed() {
        format!(
            "passed: {} ACTIVE + {} WAITING at 1..={} (each once), tickets in line order; all {} \
             users polled in {:.1} s",
            grouped(leg.active),
            grouped(leg.waiting),
            grouped(leg.waiting),
            grouped(leg.users),
            leg.check_seconds
        )
    } else {
        let mut problems = leg.problems.clone();
        if leg.unplaced > 0 {
            problems.insert(0, format!("{} users got no place", grouped(leg.unplaced)));
        }
        format!("FAILED: {}", problems.join("; "))
    }
}

/// Renders the table and the checks of the targets as Markdown.
pub fn render(sale: &Sale) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}\n", sale.header);
    let _ = writeln!(
        out,
        "| line | users | joins/s | p50 ms | p99 ms | all placed after | failed attempts | CPU µs/join generator + instances + store | raw baseline (same run) | baseline/s | baseline p99 ms | joins ÷ baseline |"
    );
    let _ = writeln!(
        out,
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|"
    );
    let legs = [
        (
            "PostgreSQL",
            sale.postgres.as_ref(),
            &sale.postgres_baselines,
        ),
        ("Redis", sale.redis.as_ref(), &sale.redis_baselines),
    ];
    for (name, leg, baselines) in legs {
        let baseline_cells = |b: Option<&Baseline>, leg: Option<&Leg>| match b {
            Some(b) => format!(
                "{}, {} clients | {} | {:.2} | {}",
                b.name,
                b.clients,
                rate(b.figures.per_second),
                b.figures.p99_ms,
                leg.filter(|_| b.figures.per_second > 0.0).map_or_else(
                    || "—".to_owned(),
                    |l| format!("{:.2}", l.joins.per_second / b.figures.per_second)
                )
            ),
            None => "— | — | — | —".to_owned(),
        };
        let leg_cells = match leg {
            Some(l) => format!(
                "{} | {} | {:.2} | {:.2} | {:.1} s | {} | {}",
                grouped(l.users),
                rate(l.joins.per_second),
                l.joins.p50_ms,
                l.joins.p99_ms,
                l.joins.seconds,
                grouped(l.joins.failed),
                l.cpu.as_ref().map_or_else(
                    || "—".to_owned(),
                    |c| format!("{:.0} + {:.0} + {:.0}", c.generator, c.instances, c.store)
                ),
            ),
            None => "not measured | — | — | — | — | — | —".to_owned(),
        };
        let _ = writeln!(
            out,
            "| {name} | {leg_cells} | {} |",
            baseline_cells(baselines.first(), leg)
        );
        for b in baselines.iter().skip(1) {
            let _ = writeln!(out, "| | | | | | | | | {} |", baseline_cells(Some(b), leg));
        }
    }

    let _ = writeln!(out, "\n| check | value | target | |\n|---|---|---|---|");
    for (name, leg) in [
        ("PostgreSQL", sale.postgres.as_ref()),
        ("Redis", sale.redis.as_ref()),
    ] {
        if let Some(leg) = leg {
            let _ = writeln!(
                out,
                "| {name} line: every user placed, positions unique and gap-free | {} | all {} users | {} |",
                line_check(leg),
                grouped(leg.users),
                if leg.passed() { "met" } else { "MISSED" }
            );
        }
    }
    match (sale.postgres.as_ref(), sale.redis.as_ref()) {
        (Some(pg), Some(redis)) if pg.joins.per_second > 0.0 => {
            let ratio = redis.joins.per_second / pg.joins.per_second;
            let _ = writeln!(
                out,
                "| Redis line ÷ PostgreSQL line, joins/s | {ratio:.2} ({} ÷ {}) | ≥ 4 | {} |",
                rate(redis.joins.per_second),
                rate(pg.joins.per_second),
                if ratio >= 4.0 { "met" } else { "MISSED" }
            );
        }
        _ => {
            let _ = writeln!(
                out,
                "| Redis line ÷ PostgreSQL line, joins/s | not measured{} | ≥ 4 | — |",
                sale.redis_missing
                    .as_deref()
                    .map(|why| format!(": {why}"))
                    .unwrap_or_default()
            );
        }
    }
    // The 60 s are the Redis line's target; the PostgreSQL line's time is shown beside it.
    for (name, leg, judged) in [
        ("Redis", sale.redis.as_ref(), true),
        ("PostgreSQL", sale.postgres.as_ref(), false),
    ] {
        let Some(leg) = leg else { continue };
        let (target, verdict) = match (judged, leg.users == 1_000_000) {
            (false, _) => ("— (the Redis line's)", "—"),
            (true, false) => ("< 60 s, at 1,000,000 users", "not judged"),
            (true, true) if leg.joins.seconds < 60.0 && leg.passed() => ("< 60 s", "met"),
            (true, true) => ("< 60 s", "MISSED"),
        };
        let _ = writeln!(
            out,
            "| {} users placed, {name} line | {:.1} s | {target} | {verdict} |",
            grouped(leg.users),
            leg.joins.seconds
        );
    }
    if let Some(why) = &sale.redis_missing {
        let _ = writeln!(out, "\nRedis line not measured: {why}");
    }
    let failures: Vec<String> = [sale.postgres.as_ref(), sale.redis.as_ref()]
        .into_iter()
        .flatten()
        .filter_map(|leg| {
            leg.joins.first_failure.as_ref().map(|f| {
                format!(
                    "- {} line: {} failed attempts; first: {f}",
                    leg.line,
                    grouped(leg.joins.failed)
                )
            })
        })
        .collect();
    if !failures.is_empty() {
        let _ = writeln!(out, "\nFailed attempts:\n{}", failures.join("\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(per_second: f64) -> Figures {
        Figures {
            per_second,
            p50_ms: 1.0,
            p99_ms: 2.0,
            ok: 100,
            failed: 0,
            seconds: 10.0,
            first_failure: None,
        }
    }

    fn leg(line: &str, users: u64, per_second: f64) -> Leg {
        Leg {
            line: line.to_owned(),
            users,
            instances: 3,
            connections: 256,
            max_active: 1000,
            joins: Figures {
                seconds: 50.0,
                ..figures(per_second)
            },
            unplaced: 0,
            active: 1000,
            waiting: users - 1000,
            problems: Vec::new(),
            check_seconds: 3.0,
            room_after: None,
            cpu: None,
        }
    }

    fn baseline(name: &str, per_second: f64) -> Baseline {
        Baseline {
            name: name.to_owned(),
            clients: 48,
            figures: figures(per_second),
        }
    }

    #[test]
    fn a_redis_line_of_fewer_than_a_million_users_is_not_judged_on_time() {
        let sale = Sale {
            header: "run".into(),
            redis: Some(leg("Redis", 100_000, 20_000.0)),
            ..Sale::default()
        };
        let table = render(&sale);

        assert!(
            table.contains(
                "| 100,000 users placed, Redis line | 50.0 s | < 60 s, at 1,000,000 users | not judged |"
            ),
            "{table}"
        );
    }

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(1_234_567), "1,234,567");
    }

    #[test]
    fn each_line_shows_its_baselines_and_the_targets_are_judged() {
        let sale = Sale {
            header: "run".into(),
            postgres: Some(leg("PostgreSQL", 1_000_000, 4000.0)),
            postgres_baselines: vec![baseline("pgbench ticket INSERT", 8000.0)],
            redis: Some(leg("Redis", 1_000_000, 20_000.0)),
            redis_missing: None,
            redis_baselines: vec![
                baseline("redis-benchmark INCR", 80_000.0),
                baseline("redis-benchmark EVAL", 40_000.0),
            ],
        };
        let table = render(&sale);

        assert!(
            table.contains("| PostgreSQL | 1,000,000 | 4,000 |")
                && table.contains("| pgbench ticket INSERT, 48 clients | 8,000 | 2.00 | 0.50 |"),
            "{table}"
        );
        assert!(
            table.contains("| redis-benchmark EVAL, 48 clients | 40,000 | 2.00 | 0.50 |"),
            "{table}"
        );
        assert!(
            table.contains("| 5.00 (20,000 ÷ 4,000) | ≥ 4 | met |"),
            "{table}"
        );
        assert!(
            table.contains("| 1,000,000 users placed, Redis line | 50.0 s | < 60 s | met |"),
            "{table}"
        );
        assert!(
            table.contains(
                "| 1,000,000 users placed, PostgreSQL line | 50.0 s | — (the Redis line's) | — |"
            ),
            "{table}"
        );
    }

    #[test]
    fn a_missing_redis_line_says_why_and_the_postgresql_time_is_not_judged() {
        let sale = Sale {
            header: "run".into(),
            postgres: Some(leg("PostgreSQL", 100_000, 4000.0)),
            redis_missing: Some("no QUEUE_URL".into()),
            ..Sale::default()
        };
        let table = render(&sale);

        assert!(table.contains("| Redis | not measured |"), "{table}");
        assert!(
            table.contains("not measured: no QUEUE_URL | ≥ 4 | — |"),
            "{table}"
        );
        assert!(
            table.contains(
                "| 100,000 users placed, PostgreSQL line | 50.0 s | — (the Redis line's) | — |"
            ),
            "{table}"
        );
    }
}
