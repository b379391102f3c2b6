//! A process group's memory and CPU, read from `/proc`.
//!
//! Every process's `stat` names its process group; a plugin leads its own
//! (the host starts it so), and what it forks stays in it unless it leaves
//! on purpose. One pass over `/proc` reads the whole machine's processes:
//! a few hundred small reads, once per heartbeat interval, for every
//! plugin at once.

use std::collections::HashMap;

/// Memory and CPU of one process group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupUsage {
    /// Resident pages.
    pub rss_pages: u64,
    /// User and system time, in clock ticks.
    pub cpu_ticks: u64,
    /// Processes.
    pub processes: u32,
    /// Threads of all its processes (what a pids cgroup counts).
    pub tasks: u32,
}

/// One process's group, resident pages, CPU ticks and threads, from its
/// `stat` line.
fn parse_stat(line: &str) -> Option<(i32, u64, u64, u32)> {
    // The command name (field 2) is in parentheses and may hold spaces or
    // parentheses itself: the fields after it start past the last ')'.
    let rest = &line[line.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state): field n is rest[n - 3].
    let pgrp = fields.get(2)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let threads: u32 = fields.get(17)?.parse().ok()?;
    let rss: i64 = fields.get(21)?.parse().ok()?;
    Some((
        pgrp,
        u64::try_from(rss).unwrap_or(0),
        utime + stime,
        threads,
    ))
}

/// The usage of every process group among `groups`, in one pass over `/proc`.
pub fn groups(groups: &[i32]) -> HashMap<i32, GroupUsage> {
    let mut out: HashMap<i32, GroupUsage> = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        // A process may end between the listing and the read: skipped.
        let Ok(line) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((pgrp, rss, ticks, threads)) = parse_stat(&line) else {
            continue;
        };
        if groups.contains(&pgrp) {
            let u = out.entry(pgrp).or_default();
            u.rss_pages += rss;
            u.cpu_ticks += ticks;
            u.processes += 1;
            u.tasks += threads;
        }
    }
    out
}

/// The usage of the processes `pids` together (a cgroup's).
pub fn processes(pids: &[i32]) -> GroupUsage {
    let mut u = GroupUsage::default();
    for pid in pids {
        // A process may end between the listing and the read: skipped.
        let Some((_, rss, ticks, threads)) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|line| parse_stat(&line))
        else {
            continue;
        };
        u.rss_pages += rss;
        u.cpu_ticks += ticks;
        u.processes += 1;
        u.tasks += threads;
    }
    u
}

/// Bytes in a page, and clock ticks in a second.
pub fn page_and_tick() -> (u64, u64) {
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|v| u64::try_from(v).ok())
        .unwrap_or(4096);
    let tick = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|v| u64::try_from(v).ok())
        .unwrap_or(100);
    (page, tick)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_with_a_strange_name_is_read() {
        let line = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 100 10000000 250 18446744073709551615 0 0";
        assert_eq!(parse_stat(line), Some((1234, 250, 10, 1)));
        let me = std::process::id() as i32;
        let pgrp = nix::unistd::getpgrp().as_raw();
        let all = groups(&[pgrp]);
        assert!(
            all.get(&pgrp)
                .is_some_and(|u| u.processes >= 1 && u.rss_pages > 0),
            "{me}"
        );
    }
}
