//! The filesystem and network sandbox: Landlock, applied by the host to
//! the plugin's process between clone and exec, before it runs any code of
//! its own, so a plugin in any language is confined, and so is everything
//! it starts.
//!
//! The ruleset is built in the host (its paths opened, its rules added),
//! and the child only calls `prctl(PR_SET_NO_NEW_PRIVS)` and
//! `landlock_restrict_self(2)` on it: two system calls, nothing that
//! allocates or locks, as the time between clone and exec requires. The
//! policy: read and execute the plugin's own directory (its package, or
//! its executable's directory) and the system's (`/usr`, `/lib`, `/lib64`,
//! `/bin`, `/sbin`, `/etc`, `/proc`, `/sys`); read and write its private
//! data directory (made by the host under its data directory, and its
//! `TMPDIR`), `/dev/null`, `/dev/zero`, `/dev/urandom`, `/dev/random`, and
//! the paths its config adds; nothing else. No TCP bind or connect unless
//! it has the network permission (Landlock ABI 4 and later). Where the
//! kernel has no Landlock, the plugin runs unconfined and the host says
//! so, at start and in `iglu status`.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::libc;

const CREATE_RULESET_VERSION: u32 = 1;
const RULE_PATH_BENEATH: libc::c_int = 1;

const EXECUTE: u64 = 1 << 0;
const WRITE_FILE: u64 = 1 << 1;
const READ_FILE: u64 = 1 << 2;
const READ_DIR: u64 = 1 << 3;
/// Every filesystem right of ABI 1 (execute to make-symlink).
const ALL_V1: u64 = (1 << 13) - 1;
const REFER: u64 = 1 << 13;
const TRUNCATE: u64 = 1 << 14;
const IOCTL_DEV: u64 = 1 << 15;
const NET_BIND_TCP: u64 = 1 << 0;
const NET_CONNECT_TCP: u64 = 1 << 1;

/// Scopes of ABI 6: abstract Unix sockets and signals outside the sandbox.
const SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1 << 0;
const SCOPE_SIGNAL: u64 = 1 << 1;

#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

/// What a sandboxed plugin does not inherit of the host's environment:
/// the ways to reach services outside the sandbox that would run code
/// for it unconfined (a session bus, an SSH or GPG agent), and where the
/// host's config and controls are.
pub const SCRUBBED_ENV: [&str; 6] = [
    "DBUS_SESSION_BUS_ADDRESS",
    "DBUS_SYSTEM_BUS_ADDRESS",
    "SSH_AUTH_SOCK",
    "GPG_AGENT_INFO",
    "IGLU_CONFIG",
    "IGLU_RUNTIME_DIR",
];

#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

/// The Landlock ABI version of the running kernel, if it has Landlock.
#[allow(unsafe_code)]
pub fn abi() -> Option<u32> {
    // SAFETY: the documented way to ask for the version: no attribute, size 0.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<RulesetAttr>(),
            0usize,
            CREATE_RULESET_VERSION,
        )
    };
    u32::try_from(v).ok().filter(|&v| v > 0)
}

/// What one plugin may reach.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Read and execute beneath these.
    pub read: Vec<PathBuf>,
    /// Read and write beneath these.
    pub write: Vec<PathBuf>,
    /// TCP bind and connect allowed.
    pub network: bool,
}

/// The system's directories every plugin may read and execute from.
pub const SYSTEM: [&str; 8] = [
    "/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc", "/proc", "/sys",
];
/// The devices every plugin may read and write.
pub const DEVICES: [&str; 4] = ["/dev/null", "/dev/zero", "/dev/urandom", "/dev/random"];

/// A ruleset built in the host, to be applied in the child.
#[derive(Debug)]
pub struct Ruleset {
    fd: OwnedFd,
}

impl Ruleset {
    /// Builds the ruleset of `policy` for the kernel's `abi`. A path that
    /// does not exist is left out (a `/lib64` on a system without one).
    #[allow(unsafe_code)]
    pub fn build(policy: &Policy, abi: u32) -> std::io::Result<Ruleset> {
        let mut fs = ALL_V1;
        if abi >= 2 {
            fs |= REFER;
        }
        if abi >= 3 {
            fs |= TRUNCATE;
        }
        if abi >= 5 {
            fs |= IOCTL_DEV;
        }
        let net = if abi >= 4 && !policy.network {
            NET_BIND_TCP | NET_CONNECT_TCP
        } else {
            0
        };
        // From ABI 6: no signal to a process outside the sandbox (the
        // host), no abstract Unix socket outside it.
        let scoped = if abi >= 6 {
            SCOPE_SIGNAL | SCOPE_ABSTRACT_UNIX_SOCKET
        } else {
            0
        };
        let attr = RulesetAttr {
            handled_access_fs: fs,
            handled_access_net: net,
            scoped,
        };
        // Older ABIs know fewer fields: give each what it knows.
        let size = match abi {
            1..=3 => std::mem::size_of::<u64>(),
            4 | 5 => 2 * std::mem::size_of::<u64>(),
            _ => std::mem::size_of::<RulesetAttr>(),
        };
        // SAFETY: `attr` is a live struct of at least `size` bytes.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                &attr as *const RulesetAttr,
                size,
                0u32,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let raw = RawFd::try_from(fd).map_err(|_| std::io::Error::other("bad ruleset fd"))?;
        // SAFETY: the kernel just returned this descriptor, owned by no one else.
        let ruleset = Ruleset {
            fd: unsafe { OwnedFd::from_raw_fd(raw) },
        };
        let read = EXECUTE | READ_FILE | READ_DIR;
        let write = fs & !EXECUTE;
        for dir in SYSTEM
            .iter()
            .map(Path::new)
            .chain(policy.read.iter().map(PathBuf::as_path))
        {
            ruleset.allow(dir, read)?;
        }
        for dir in DEVICES
            .iter()
            .map(Path::new)
            .chain(policy.write.iter().map(PathBuf::as_path))
        {
            ruleset.allow(dir, write | READ_FILE | READ_DIR)?;
        }
        Ok(ruleset)
    }

    /// Allows `access` beneath `path` (only what applies to a file, when
    /// it is one). A missing path is skipped.
    #[allow(unsafe_code)]
    fn allow(&self, path: &Path, access: u64) -> std::io::Result<()> {
        let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
            return Ok(());
        };
        // SAFETY: a valid C string; the descriptor is closed below.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
        if fd < 0 {
            return Ok(());
        }
        // SAFETY: just opened, owned here.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let is_dir = std::fs::metadata(path).is_ok_and(|m| m.is_dir());
        let file_rights = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV;
        let allowed = if is_dir { access } else { access & file_rights };
        let attr = PathBeneathAttr {
            allowed_access: allowed,
            parent_fd: fd.as_raw_fd(),
        };
        // SAFETY: a live ruleset descriptor and a live attribute struct.
        let r = unsafe {
            libc::syscall(
                libc::SYS_landlock_add_rule,
                self.fd.as_raw_fd(),
                RULE_PATH_BENEATH,
                &attr as *const PathBeneathAttr,
                0u32,
            )
        };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            return Err(std::io::Error::other(format!(
                "landlock rule for {}: {e}",
                path.display()
            )));
        }
        Ok(())
    }

    /// The descriptor the child applies.
    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// In the child, between clone and exec: no new privileges, then the
/// ruleset. Two system calls, no allocation.
#[allow(unsafe_code)]
pub fn restrict_self(ruleset: RawFd) -> std::io::Result<()> {
    // SAFETY: plain system calls with integer arguments.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::syscall(libc::SYS_landlock_restrict_self, ruleset, 0u32) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A plugin's own sandbox settings (`[[plugin]] sandbox = { ... }`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxSpec {
    /// Sandbox this plugin (default: `[sandbox] enabled`).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// More paths it may read and execute beneath.
    #[serde(default)]
    pub read: Vec<PathBuf>,
    /// More paths it may read and write beneath.
    #[serde(default)]
    pub write: Vec<PathBuf>,
    /// It may bind and connect TCP sockets.
    #[serde(default)]
    pub network: bool,
}

/// The host's sandbox settings (`[sandbox]`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxConfig {
    /// Sandbox every managed plugin that does not say otherwise (default
    /// true).
    pub enabled: bool,
    /// More paths every sandboxed plugin may read and execute beneath (an
    /// interpreter's or a shared runtime's directory).
    pub read: Vec<PathBuf>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            enabled: true,
            read: Vec::new(),
        }
    }
}

/// What a launch needs to confine a plugin on this host: its sandbox and
/// its niceness.
#[derive(Debug, Clone)]
pub struct Sandboxing {
    /// `[sandbox] enabled`.
    pub default_on: bool,
    /// The kernel's Landlock ABI, if it has Landlock.
    pub abi: Option<u32>,
    /// Where private data directories go (`<data_dir>/plugins/<id>`).
    pub data_dir: PathBuf,
    /// The niceness plugins run at (`[limits] nice`).
    pub nice: i32,
    /// `[sandbox] read`: more paths every sandboxed plugin may read.
    pub read: Vec<PathBuf>,
}

impl Sandboxing {
    /// Whether plugin `spec` is to be sandboxed.
    pub fn wanted(&self, own: Option<&SandboxSpec>) -> bool {
        own.and_then(|s| s.enabled).unwrap_or(self.default_on)
    }

    /// How the sandbox stands for a plugin, in words, for `iglu status`.
    pub fn mechanism(&self, own: Option<&SandboxSpec>) -> String {
        match (self.wanted(own), self.abi) {
            (false, _) => "sandbox: off".to_owned(),
            (true, Some(abi)) => format!(
                "sandbox: landlock ABI {abi}{}",
                match (own.is_some_and(|s| s.network), abi >= 4) {
                    (true, _) => " (network allowed)",
                    (false, true) => ", no TCP",
                    (false, false) => " (this ABI cannot restrict TCP)",
                }
            ),
            (true, None) => {
                "sandbox: wanted, but this kernel has no Landlock: NOT confined".to_owned()
            }
        }
    }

    /// The private data directory of plugin `id`, made 0700 if need be.
    pub fn private_dir(&self, id: &str) -> std::io::Result<PathBuf> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = self.data_dir.join("plugins").join(id);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        Ok(dir)
    }
}

/// Where a command runs from: its own path, or the first match on `PATH`.
pub fn resolve(command: &Path) -> PathBuf {
    if command.components().count() > 1 {
        return command.to_owned();
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(command))
        .find(|p| p.is_file())
        .unwrap_or_else(|| command.to_owned())
}
