//! What the host put in the environment when it started this plugin.

use std::time::Duration;

use iglu_bus::handshake::{COOKIE_KEY, COOKIE_VALUE};
use iglu_bus::launch;

use crate::error::SdkError;

/// Default wait for WELCOME. A DEALER that connects to a stale ipc socket
/// file waits forever without an error, so this bound is what turns that
/// into a message.
const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Who started the plugin, which decides what it does when the host goes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A child of the host: it exits when the host goes silent.
    Managed,
    /// Started by someone else (a container, a service manager): it
    /// reconnects, with backoff and jitter, until the host is back.
    External,
}

/// The launch parameters read from the environment.
#[derive(Debug, Clone)]
pub struct Launch {
    /// Managed or external.
    pub mode: Mode,
    /// Where to connect.
    pub endpoint: String,
    /// The per-launch secret.
    pub token: String,
    /// The id the host knows this plugin by.
    pub plugin_id: String,
    /// How long to wait for WELCOME.
    pub handshake_timeout: Duration,
}

impl Launch {
    /// Reads the environment; fails when the binary was not started by a host.
    /// An external plugin (`IGLU_MODE=external`) needs no cookie; its token
    /// comes from `IGLU_TOKEN` or the file named by `IGLU_TOKEN_FILE`
    /// (Docker secrets).
    pub fn from_env(manifest_id: &str) -> Result<Launch, SdkError> {
        let mode = match std::env::var(launch::MODE).ok().as_deref() {
            Some("external") => Mode::External,
            _ => Mode::Managed,
        };
        if mode == Mode::Managed && std::env::var(COOKIE_KEY).ok().as_deref() != Some(COOKIE_VALUE)
        {
            return Err(SdkError::NotLaunchedByHost { key: COOKIE_KEY });
        }
        let endpoint =
            std::env::var(launch::ENDPOINT).map_err(|_| SdkError::MissingEnv(launch::ENDPOINT))?;
        let token = match (
            std::env::var(launch::TOKEN),
            std::env::var(launch::TOKEN_FILE),
        ) {
            (Ok(token), _) => token,
            (Err(_), Ok(path)) => std::fs::read_to_string(&path)
                .map_err(|_| SdkError::MissingEnv(launch::TOKEN_FILE))?
                .trim()
                .to_owned(),
            _ => return Err(SdkError::MissingEnv(launch::TOKEN)),
        };
        let plugin_id = std::env::var(launch::PLUGIN_ID).unwrap_or_else(|_| manifest_id.to_owned());
        if mode == Mode::Managed {
            die_with_host()?;
        }
        let handshake_timeout = std::env::var(launch::HANDSHAKE_TIMEOUT_MS)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_HANDSHAKE_TIMEOUT);
        Ok(Launch {
            mode,
            endpoint,
            token,
            plugin_id,
            handshake_timeout,
        })
    }
}

/// Asks Linux to SIGKILL this process when its parent (the host) dies, then
/// makes sure the parent has not died already: if it had, the signal would
/// never come. Without `IGLU_HOST_PID` (an older host) nothing is done; host
/// silence still ends the plugin.
fn die_with_host() -> Result<(), SdkError> {
    let Some(host) = std::env::var(launch::HOST_PID)
        .ok()
        .and_then(|p| p.parse::<i32>().ok())
    else {
        return Ok(());
    };
    #[cfg(target_os = "linux")]
    {
        let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
        if nix::unistd::getppid().as_raw() != host {
            return Err(SdkError::HostGone);
        }
    }
    Ok(())
}
