//! The host's private directory for its sockets, and safe cleanup of stale ones.
//!
//! The plugin endpoint and the control socket live in one directory of mode
//! 0700 owned by the host's user: that is what keeps other users of the
//! machine from calling plugins or stopping them. `zeromq` does not remove a
//! stale ipc socket file before binding (the bind fails with "address in
//! use"), so the host removes one itself, but only after checking that no
//! live host answers on it.

use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::HostError;

/// File name of the plugins' ZeroMQ endpoint inside the runtime directory.
pub const PLUGIN_SOCKET: &str = "plugins.sock";
/// File name of the CLI's control socket inside the runtime directory.
pub const CONTROL_SOCKET: &str = "control.sock";

/// `$XDG_RUNTIME_DIR/iglu` when that is set (systemd makes it per-user,
/// 0700), otherwise `/tmp/iglu-<uid>`.
pub fn default_path() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("iglu"),
        _ => PathBuf::from(format!("/tmp/iglu-{}", nix::unistd::getuid())),
    }
}

/// Creates the directory 0700 if missing; refuses one that another user owns
/// or that others can enter, since its sockets would then be theirs to use.
pub fn prepare(dir: &Path) -> Result<(), HostError> {
    let fail = |reason: String| HostError::RuntimeDir {
        path: dir.to_owned(),
        reason,
    };
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(fail(format!("cannot create it: {e}"))),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| fail(e.to_string()))?;
    if !meta.is_dir() {
        return Err(fail("it is not a directory".into()));
    }
    if meta.uid() != nix::unistd::getuid().as_raw() {
        return Err(fail(format!(
            "it belongs to uid {}, not to this user",
            meta.uid()
        )));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(fail(format!(
            "its mode is {:o}; it must be 0700 so other users cannot reach the host (chmod 700 it)",
            meta.permissions().mode() & 0o777
        )));
    }
    Ok(())
}

/// Removes `socket` if it is a leftover of a host that died; fails if a live
/// host still answers on it.
pub fn clear_stale_socket(socket: &Path) -> Result<(), HostError> {
    let meta = match std::fs::symlink_metadata(socket) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if !meta.file_type().is_socket() {
        return Err(HostError::RuntimeDir {
            path: socket.to_owned(),
            reason: "exists and is not a socket; refusing to remove it".into(),
        });
    }
    match std::os::unix::net::UnixStream::connect(socket) {
        Ok(_) => Err(HostError::AlreadyRunning {
            path: socket.to_owned(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            tracing::info!(path = %socket.display(), "removing a stale socket left by a host that is gone");
            std::fs::remove_file(socket)?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("iglu-rt-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn creates_private_dir_and_refuses_open_one() {
        let dir = temp_dir("mode");
        prepare(&dir).expect("creates");
        let mode = std::fs::metadata(&dir)
            .expect("exists")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o700);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        assert!(prepare(&dir).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn stale_socket_is_removed_live_one_is_not() {
        let dir = temp_dir("stale");
        prepare(&dir).expect("creates");
        let path = dir.join("s.sock");
        let live = std::os::unix::net::UnixListener::bind(&path).expect("binds");
        assert!(matches!(
            clear_stale_socket(&path),
            Err(HostError::AlreadyRunning { .. })
        ));
        drop(live);
        clear_stale_socket(&path).expect("stale socket removed");
        assert!(!path.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
