//! Each plugin's recent log lines, for `iglu logs` and the dashboard: a
//! ring per plugin, bounded in lines and bytes (the oldest go first), kept
//! across its restarts (the lines before a crash are the interesting ones)
//! and numbered, so a follower asks for what came after the last it saw.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;

use super::record::{Level, Record};

/// Lines kept per plugin.
pub const MAX_LINES: usize = 2000;
/// Bytes of messages and fields kept per plugin.
pub const MAX_BYTES: usize = 512 * 1024;
/// Lines one read returns at most.
pub const MAX_READ: usize = 1000;

/// A kept line.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    /// Its number in the plugin's log, from 1.
    pub seq: u64,
    /// When the host read it, ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// What it says.
    #[serde(flatten)]
    pub record: Record,
}

impl Line {
    fn cost(&self) -> usize {
        self.record.message.len()
            + self.record.target.len()
            + self
                .record
                .fields
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
            + 48
    }
}

#[derive(Default)]
struct Ring {
    lines: VecDeque<Line>,
    bytes: usize,
    next: u64,
}

/// What to read.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Only lines after this number.
    pub after: u64,
    /// Only lines at least this severe.
    pub level: Option<Level>,
    /// Only lines read at or after this time (ms since the epoch).
    pub since_ms: Option<u64>,
    /// At most this many of the newest that match (at most [`MAX_READ`]).
    pub limit: usize,
}

/// Every plugin's ring.
#[derive(Default)]
pub struct LogBook {
    rings: Mutex<HashMap<String, Ring>>,
}

impl LogBook {
    /// Keeps a line of `plugin`'s.
    pub fn push(&self, plugin: &str, timestamp_ms: u64, record: Record) {
        let mut rings = self.rings.lock().unwrap_or_else(|p| p.into_inner());
        let ring = match rings.get_mut(plugin) {
            Some(r) => r,
            None => rings.entry(plugin.to_owned()).or_default(),
        };
        ring.next += 1;
        let line = Line {
            seq: ring.next,
            timestamp_ms,
            record,
        };
        ring.bytes += line.cost();
        ring.lines.push_back(line);
        while ring.lines.len() > MAX_LINES || ring.bytes > MAX_BYTES {
            match ring.lines.pop_front() {
                Some(old) => ring.bytes -= old.cost(),
                None => break,
            }
        }
    }

    /// The newest lines of `plugin` that match, oldest first, and the
    /// number of its last line (for the next `after`).
    pub fn read(&self, plugin: &str, q: &Query) -> (Vec<Line>, u64) {
        let rings = self.rings.lock().unwrap_or_else(|p| p.into_inner());
        let Some(ring) = rings.get(plugin) else {
            return (Vec::new(), 0);
        };
        let limit = q.limit.clamp(1, MAX_READ);
        let mut out: Vec<Line> = ring
            .lines
            .iter()
            .rev()
            .take_while(|l| l.seq > q.after)
            .filter(|l| q.level.is_none_or(|min| l.record.level <= min))
            .filter(|l| q.since_ms.is_none_or(|s| l.timestamp_ms >= s))
            .take(limit)
            .cloned()
            .collect();
        out.reverse();
        (out, ring.next)
    }

    /// Forgets a plugin that was removed.
    pub fn forget(&self, plugin: &str) {
        self.rings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(plugin);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(level: Level, m: &str) -> Record {
        Record {
            level,
            target: "t".into(),
            message: m.into(),
            fields: Vec::new(),
        }
    }

    #[test]
    fn bounded_numbered_and_filtered() {
        let book = LogBook::default();
        for i in 0..(MAX_LINES + 10) {
            let level = if i % 2 == 0 { Level::Info } else { Level::Warn };
            book.push("p", i as u64, rec(level, &format!("{i}")));
        }
        let all = Query {
            limit: MAX_READ,
            ..Query::default()
        };
        let (lines, last) = book.read("p", &all);
        assert_eq!(last, (MAX_LINES + 10) as u64);
        assert_eq!(lines.len(), MAX_READ);
        assert_eq!(lines.last().map(|l| l.seq), Some(last));
        let warn = Query {
            level: Some(Level::Warn),
            after: last - 10,
            limit: 100,
            ..Query::default()
        };
        let (lines, _) = book.read("p", &warn);
        assert_eq!(lines.len(), 5);
        assert!(lines.iter().all(|l| l.record.level == Level::Warn));
        let big = "x".repeat(100_000);
        for _ in 0..10 {
            book.push("q", 0, rec(Level::Info, &big));
        }
        let (lines, _) = book.read("q", &all);
        assert!(lines.len() <= MAX_BYTES / 100_000, "{}", lines.len());
    }
}
