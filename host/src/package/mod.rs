//! Plugin packages: a directory or bundle (`.tar.gz`) with a manifest
//! (`iglu-plugin.toml`, [`manifest`]), built and checked by [`bundle`]
//! (sha256, safe unpacking: nothing may land outside its directory), and
//! signed with ed25519 ([`signing`]). The format is in `docs/PACKAGES.md`.

pub mod bundle;
pub mod commands;
pub mod installed;
pub mod manifest;
pub mod signing;

/// Why a package is refused.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// The manifest is missing, does not parse, or says something invalid.
    #[error("manifest: {0}")]
    Manifest(String),
    /// The bundle holds something it may not (a path outside it, a link,
    /// too much) or is not a readable bundle.
    #[error("bundle: {0}")]
    Bundle(String),
    /// The signature is missing, malformed, or not by a trusted key.
    #[error("signature: {0}")]
    Signature(String),
    /// The checksum does not match.
    #[error("checksum: {0}")]
    Checksum(String),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// An I/O error about `path`.
pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> PackageError + '_ {
    move |source| PackageError::Io {
        path: path.to_owned(),
        source,
    }
}
