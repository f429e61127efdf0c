//! What the load generator reads about a process from `/proc` (Linux): resident memory and
//! CPU time.

/// Clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`, 100 on every Linux
/// architecture this runs on).
pub const TICKS_PER_SECOND: f64 = 100.0;

/// Resident memory of process `pid` in KiB (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_rss_kib(&status)
}

/// `VmRSS` in KiB from the text of a `status` file.
pub fn parse_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line["VmRSS:".len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// User plus system CPU time of process `pid` (all its threads), in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_cpu_ticks(&stat)
}

/// The CPU time of the process itself, in clock ticks.
pub fn own_cpu_ticks() -> Option<u64> {
    cpu_ticks(std::process::id())
}

/// `utime + stime` from the text of a `stat` file (fields 14 and 15; the command name in
/// field 2 may hold spaces, so fields are counted after its closing parenthesis).
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_stat() {
        let status = "Name:\tx\nVmPeak:\t 100 kB\nVmRSS:\t    5120 kB\nThreads: 3\n";
        assert_eq!(parse_rss_kib(status), Some(5120));
        let stat = "42 (a b) S 1 42 42 0 -1 4194560 100 0 0 0 250 30 0 0 20 0 3 0";
        assert_eq!(parse_cpu_ticks(stat), Some(280));
        assert!(rss_kib(std::process::id()).is_some_and(|k| k > 0));
        assert!(own_cpu_ticks().is_some());
    }
}
