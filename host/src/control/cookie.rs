//! The control socket's cookie: a fresh secret per host start, in a 0600
//! file beside the socket, that every request must carry.
//!
//! The socket's directory and mode keep other users out, and the server
//! checks the peer's uid; but a plugin runs as the host's user, and
//! Landlock (up to ABI 7) cannot forbid connecting to a Unix socket by
//! path. A sandboxed plugin cannot read the runtime directory, so it
//! cannot read the cookie: it can connect, and is refused. (An
//! unsandboxed plugin can read the file, as it can read everything of its
//! user's: the sandbox is what keeps a plugin out of the host's controls.)

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The cookie file's name, beside `control.sock`.
pub const FILE: &str = "control.cookie";

/// Makes a fresh cookie in `dir` (mode 0600) and returns it.
pub fn create(dir: &Path) -> std::io::Result<String> {
    let cookie = hex::encode(rand::random::<[u8; 32]>());
    let path = dir.join(FILE);
    let _ = std::fs::remove_file(&path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    f.write_all(cookie.as_bytes())?;
    Ok(cookie)
}

/// The cookie of the host whose control socket is `socket`, if it can be read.
pub fn read_for(socket: &Path) -> Option<String> {
    let text = std::fs::read_to_string(socket.with_file_name(FILE)).ok()?;
    Some(text.trim().to_owned())
}

/// A request line with `cookie` added as its first field.
pub fn add_to(line: &[u8], cookie: &str) -> Vec<u8> {
    match line.iter().position(|&b| b == b'{') {
        Some(i) => {
            let mut out = Vec::with_capacity(line.len() + cookie.len() + 16);
            out.extend_from_slice(&line[..=i]);
            out.extend_from_slice(format!("\"cookie\":\"{cookie}\",").as_bytes());
            out.extend_from_slice(&line[i + 1..]);
            out
        }
        None => line.to_vec(),
    }
}

/// Whether a request line carries `cookie` (compared in constant time).
pub fn carried(line: &[u8], cookie: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Carried {
        #[serde(default)]
        cookie: String,
    }
    serde_json::from_slice::<Carried>(line)
        .is_ok_and(|c| iglu_bus::handshake::tokens_match(&c.cookie, cookie))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_carries_its_cookie() {
        let line = add_to(br#"{"cmd":"status"}"#, "abc");
        assert_eq!(line, br#"{"cookie":"abc","cmd":"status"}"#);
        assert!(carried(&line, "abc"));
        assert!(!carried(&line, "abd"));
        assert!(!carried(br#"{"cmd":"status"}"#, "abc"));
    }
}
