//! Where the CPU of a scenario goes: the service process, and the PostgreSQL backends serving the
//! service's connections (found by the database name in their process title). Read from
//! `/proc/<pid>/stat` (user + system time) before and after a run, so the numbers are CPU time
//! per request, not wall time. Backends that start and end inside the run are missed; the
//! service's pooled connections live across runs.

use std::time::Duration;

/// Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`, 100 on Linux).
const TICKS_PER_SECOND: u64 = 100;

/// CPU time of one process (user + system), `None` when it is gone.
fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields after its closing parenthesis are fixed.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND))
}

/// The PostgreSQL backends connected to `database` (process title `postgres: user database ...`).
fn backends_of(database: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let needle = format!(" {database} ");
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|raw| {
                let title = String::from_utf8_lossy(&raw);
                title.starts_with("postgres: ") && title.contains(&needle)
            })
        })
        .collect()
}

/// CPU time used so far by the service process and by its database's backends.
#[derive(Debug, Clone, Default)]
pub struct CpuSample {
    server: Duration,
    backends: Vec<(u32, Duration)>,
}

impl CpuSample {
    /// `database`: `None` for a service with no database server (the embedded store).
    pub fn take(server_pid: Option<u32>, database: Option<&str>) -> Self {
        Self {
            server: server_pid.and_then(process_cpu).unwrap_or_default(),
            backends: database
                .map(backends_of)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|pid| Some((pid, process_cpu(pid)?)))
                .collect(),
        }
    }

    /// (service, PostgreSQL) CPU time from `self` to `later`, for backends alive at both ends.
    pub fn until(&self, later: &Self) -> (Duration, Duration) {
        let backends = later
            .backends
            .iter()
            .filter_map(|(pid, after)| {
                let before = self
                    .backends
                    .iter()
                    .find(|(p, _)| p == pid)
                    .map_or(Duration::ZERO, |(_, t)| *t);
                after.checked_sub(before)
            })
            .sum();
        (later.server.saturating_sub(self.server), backends)
    }
}
