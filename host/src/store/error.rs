//! How the store fails, for Rust callers; [`StoreError::to_wire`] is what
//! a plugin or the CLI is told.

use std::path::PathBuf;

use iglu_bus::{ErrorCode, WireError};

/// Why a store operation failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    /// The database file could not be opened as this host's store; it is
    /// left as it is (never wiped).
    #[error("the store {path} cannot be opened: {reason}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why, in words.
        reason: String,
    },
    /// Writing failed (disk full, read-only, I/O error): nothing of the
    /// write was kept.
    #[error("the store could not write: {0}")]
    Storage(String),
    /// The write would pass one of the plugin's quotas: nothing of it was kept.
    #[error(
        "plugin {plugin}'s store quota {quota} = {limit} would be exceeded: it would hold {would}"
    )]
    Quota {
        /// Whose store.
        plugin: String,
        /// `max_keys` or `max_bytes`.
        quota: &'static str,
        /// The limit.
        limit: u64,
        /// What the write would have made it.
        would: u64,
    },
    /// A key that is empty or too long.
    #[error("keys must be 1-{max} bytes (got {len})")]
    BadKey {
        /// Its length.
        len: usize,
        /// The longest allowed.
        max: usize,
    },
    /// Too many writes are waiting for their commit already.
    #[error("the store already has {0} writes waiting for their commit; try again")]
    Overloaded(usize),
    /// The host is shutting down.
    #[error("the store is closed")]
    Closed,
}

impl StoreError {
    /// The error as it crosses the wire.
    pub fn to_wire(&self) -> WireError {
        let code = match self {
            StoreError::Open { .. } | StoreError::Storage(_) | StoreError::Closed => {
                ErrorCode::StorageError
            }
            StoreError::Quota { .. } => ErrorCode::QuotaExceeded,
            StoreError::BadKey { .. } => ErrorCode::BadArguments,
            StoreError::Overloaded(_) => ErrorCode::Overloaded,
        };
        WireError::new(code, self.to_string())
    }
}
