//! The dashboard's token: whoever has it may see and drive the host, as
//! whoever can reach the control socket may. Made at start (32 random
//! bytes, hex) and written to `<runtime_dir>/web.token` (0600) unless
//! `[web] token_file` names one; `iglu dashboard` prints the URL with it.
//! A request carries it as `?token=` (the first visit: the page then keeps
//! it as an HttpOnly, SameSite=Strict cookie), the cookie, or
//! `Authorization: Bearer`.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use axum::http::HeaderMap;
use subtle::ConstantTimeEq;

/// The token file's name in the runtime directory.
pub const FILE: &str = "web.token";

/// The cookie's name.
pub const COOKIE: &str = "iglu_token";

/// Where the token is kept.
pub fn path(runtime_dir: &Path, configured: Option<&Path>) -> PathBuf {
    configured.map_or_else(|| runtime_dir.join(FILE), Path::to_path_buf)
}

/// The token: read from the configured file, or made and written.
pub fn token(runtime_dir: &Path, configured: Option<&Path>) -> std::io::Result<String> {
    if let Some(file) = configured {
        let t = std::fs::read_to_string(file)?.trim().to_owned();
        if t.len() < 16 {
            return Err(std::io::Error::other(format!(
                "{}: the token must be at least 16 characters",
                file.display()
            )));
        }
        return Ok(t);
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    let t = hex::encode(bytes);
    let file = runtime_dir.join(FILE);
    let _ = std::fs::remove_file(&file);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&file)?;
    f.write_all(t.as_bytes())?;
    Ok(t)
}

fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Whether the request carries `token`: its query's `token`, the cookie,
/// or a bearer header.
pub fn allowed(token: &str, query: Option<&str>, headers: &HeaderMap) -> bool {
    if query.is_some_and(|q| same(q, token)) {
        return true;
    }
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer.is_some_and(|b| same(b.trim(), token)) {
        return true;
    }
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .any(|(k, v)| k == COOKIE && same(v, token))
}
