//! The host library's errors. The binary turns them into messages for people.

use std::path::PathBuf;

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file or directory could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// What was read.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The TOML did not parse.
    #[error("{}: {source}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        source: Box<toml::de::Error>,
    },
    /// The values make no sense together.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Why the host could not start or do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The runtime directory is unsafe or unusable.
    #[error("runtime directory {}: {reason}", path.display())]
    RuntimeDir {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Another host already serves this runtime directory.
    #[error("another iglu host is already running on {}", path.display())]
    AlreadyRunning {
        /// Its socket.
        path: PathBuf,
    },
    /// The store cannot be opened (a foreign or corrupt file, one in use by
    /// another host, a newer format, an unusable data directory).
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The thread for the host's timers could not start.
    #[error("cannot start the host's clock thread: {0}")]
    Clock(std::io::Error),
    /// The plugin endpoint could not be bound.
    #[error("cannot listen for plugins on {endpoint}: {source}")]
    Bind {
        /// The endpoint.
        endpoint: String,
        /// Why.
        source: iglu_bus::BusError,
    },
    /// An HTTP endpoint (metrics, dashboard) could not be bound.
    #[error("cannot serve {what} on {bind}: {source}")]
    HttpBind {
        /// Which endpoint.
        what: &'static str,
        /// The address.
        bind: String,
        /// Why.
        source: std::io::Error,
    },
    /// The TCP endpoint for external plugins could not be bound.
    #[error("cannot listen for external plugins on {bind}: {source}")]
    TcpBind {
        /// The address.
        bind: String,
        /// Why.
        source: std::io::Error,
    },
    /// A plugin's settings cannot be used.
    #[error(transparent)]
    Settings(#[from] crate::settings::SettingsError),
    /// A plugin with this id is there already.
    #[error("a plugin named {0:?} is there already")]
    Taken(String),
    /// No plugin has this id.
    #[error("no plugin named {0:?}")]
    UnknownPlugin(String),
    /// The plugin's supervisor has ended (the host is shutting down).
    #[error("plugin {0:?} is not supervised any more (the host is shutting down)")]
    Supervisor(String),
    /// An I/O failure of the host itself.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}
