//! Processes a test starts or looks at: signals, liveness, descendants,
//! environments, a free TCP port, and external plugins run by hand.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::bin;

/// Sends `signal` to process `pid`.
pub fn signal_pid(pid: u64, signal: Signal) {
    let _ = kill(Pid::from_raw(pid as i32), signal);
}

/// Whether process `pid` exists and is not a zombie.
pub fn alive(pid: u64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // The state letter follows the parenthesised command name.
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|s| s.split_whitespace().next());
            state != Some("Z") && state != Some("X")
        }
        Err(_) => false,
    }
}

/// Every live process below `pid` (children, their children...), with its
/// command line, read from /proc. A process that exits meanwhile is skipped.
pub fn descendants(pid: u64) -> Vec<(u64, String)> {
    let mut parent_of = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(child) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
                continue;
            };
            // After the parenthesised command name: state, then the parent's pid.
            let ppid = stat
                .rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u64>().ok());
            if let Some(ppid) = ppid {
                parent_of.push((child, ppid));
            }
        }
    }
    let mut found = Vec::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for &(child, ppid) in &parent_of {
            if ppid == parent && alive(child) {
                let cmdline = std::fs::read(format!("/proc/{child}/cmdline")).unwrap_or_default();
                let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                found.push((child, cmdline.trim().to_owned()));
                frontier.push(child);
            }
        }
    }
    found
}

/// The environment of a running process (for reading a plugin's launch token).
pub fn environ(pid: u64) -> Vec<(String, String)> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    raw.split(|&b| b == 0)
        .filter_map(|kv| {
            let s = String::from_utf8_lossy(kv);
            s.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// A free TCP port on 127.0.0.1 (bound and released; a tiny race is accepted).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// A child process killed when dropped.
pub struct Proc(pub Child);

impl Proc {
    /// Its pid.
    pub fn pid(&self) -> u64 {
        u64::from(self.0.id())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts workspace plugin `binary` as an external plugin of the host at
/// `endpoint` (e.g. `tcp://localhost:7800`), with its output in `log`.
pub fn external_plugin(
    binary: &str,
    endpoint: &str,
    id: &str,
    token: &str,
    extra_env: &[(&str, &str)],
    log: &Path,
) -> Proc {
    let out = std::fs::File::create(log).unwrap();
    let child = Command::new(bin(binary))
        .env_remove("IGLU_PLUGIN")
        .env("IGLU_MODE", "external")
        .env("IGLU_ENDPOINT", endpoint)
        .env("IGLU_PLUGIN_ID", id)
        .env("IGLU_TOKEN", token)
        .envs(extra_env.iter().copied())
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    Proc(child)
}
