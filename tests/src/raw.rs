//! Speaking to the host as an attacker would: ZMTP by hand over TCP, and
//! reading what the host's process holds.

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// The 64-byte ZMTP 3.0 greeting with the NULL mechanism.
pub fn zmtp_greeting() -> Vec<u8> {
    let mut g = vec![0u8; 64];
    g[0] = 0xff;
    g[9] = 0x7f;
    g[10] = 3;
    g[12..16].copy_from_slice(b"NULL");
    g
}

/// The greeting and a READY command as a DEALER: what precedes any message.
pub fn zmtp_opening() -> Vec<u8> {
    let mut bytes = zmtp_greeting();
    let mut ready = vec![5];
    ready.extend_from_slice(b"READY");
    ready.push(11);
    ready.extend_from_slice(b"Socket-Type");
    ready.extend_from_slice(&6u32.to_be_bytes());
    ready.extend_from_slice(b"DEALER");
    bytes.extend_from_slice(&[0x04, ready.len() as u8]);
    bytes.extend_from_slice(&ready);
    bytes
}

/// One ZMTP message frame (long form).
pub fn zmtp_frame(body: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02];
    f.extend_from_slice(&(body.len() as u64).to_be_bytes());
    f.extend_from_slice(body);
    f
}

/// Reads until EOF or `within`; true if the other side closed the connection.
pub fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return true,
        }
    }
    false
}

/// VmRSS and VmHWM (peak) of process `pid`, in KiB; zeros if it is gone.
pub fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |n: &str| {
        status
            .lines()
            .find(|l| l.starts_with(n))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}
