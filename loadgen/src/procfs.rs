//! CPU time and resident memory of a process, from `/proc`.

use serde::Serialize;

/// Clock ticks per second of `utime`/`stime` (USER_HZ: 100 on Linux x86-64
/// and arm64 whatever the kernel's HZ).
const TICKS: f64 = 100.0;

/// One reading.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Sample {
    /// User + system CPU seconds since the process started (all threads,
    /// including exited ones).
    pub cpu_s: f64,
    /// Resident set size in KiB.
    pub rss_kib: u64,
}

/// Reads `/proc/<pid>` (`None` for this process). `None` if it is gone.
pub fn sample(pid: Option<u32>) -> Option<Sample> {
    let dir = pid.map_or_else(|| "/proc/self".to_owned(), |p| format!("/proc/{p}"));
    let stat = std::fs::read_to_string(format!("{dir}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("{dir}/status")).ok()?;
    Some(Sample {
        cpu_s: parse_cpu(&stat)?,
        rss_kib: parse_rss(&status)?,
    })
}

/// utime + stime from a `stat` line, in seconds.
fn parse_cpu(stat: &str) -> Option<f64> {
    // The command name may hold spaces and parentheses: fields count from
    // the last ')'. After it: state(3) ppid pgrp session tty tpgid flags
    // minflt cminflt majflt cmajflt utime(14) stime(15).
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / TICKS)
}

fn parse_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_names() {
        let stat = "1234 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0";
        assert_eq!(parse_cpu(stat), Some(3.0));
        assert_eq!(parse_rss("Name:\tx\nVmRSS:\t  12345 kB\n"), Some(12345));
    }

    #[test]
    fn reads_this_process() {
        let s = sample(None).expect("own /proc");
        assert!(s.rss_kib > 0);
        assert!(sample(Some(u32::MAX)).is_none());
    }
}
