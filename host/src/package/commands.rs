//! What `iglu package`, `iglu keygen` and `iglu verify` do, for the CLI.

use std::path::{Path, PathBuf};

use super::manifest::PackageManifest;
use super::{bundle, io, signing, PackageError};

/// Where `iglu package` wrote a bundle.
#[derive(Debug)]
pub struct Packed {
    /// The bundle.
    pub bundle: PathBuf,
    /// Its sha256 (hex), also in `<bundle>.sha256`.
    pub sha256: String,
    /// `<bundle>.sig`, if it was signed.
    pub signature: Option<PathBuf>,
}

fn sidecar(bundle: &Path, ext: &str) -> PathBuf {
    let mut name = bundle.as_os_str().to_owned();
    name.push(ext);
    PathBuf::from(name)
}

/// Packs `dir` into `<out>/<id>-<version>.iglu.tar.gz` with its checksum
/// and, given a secret key, its signature.
pub fn package(dir: &Path, out: &Path, key: Option<&Path>) -> Result<Packed, PackageError> {
    let (manifest, bytes) = bundle::build(dir)?;
    std::fs::create_dir_all(out).map_err(io(out))?;
    let path = out.join(bundle::file_name(&manifest));
    std::fs::write(&path, &bytes).map_err(io(&path))?;
    let sha256 = bundle::sha256_hex(&bytes);
    let sum = sidecar(&path, ".sha256");
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    std::fs::write(&sum, format!("{sha256}  {name}\n")).map_err(io(&sum))?;
    let signature = match key {
        Some(key) => {
            let secret = signing::read_secret(key)?;
            let sig = sidecar(&path, ".sig");
            std::fs::write(&sig, format!("{}\n", signing::sign(&secret, &bytes)))
                .map_err(io(&sig))?;
            Some(sig)
        }
        None => None,
    };
    Ok(Packed {
        bundle: path,
        sha256,
        signature,
    })
}

/// A bundle that passed every check.
#[derive(Debug)]
pub struct Verified {
    /// Its manifest.
    pub manifest: PackageManifest,
    /// Its sha256.
    pub sha256: String,
    /// Which trusted key signed it (`None`: unsigned, allowed).
    pub signed_by: Option<usize>,
}

/// Checks a bundle: its checksum (if `<bundle>.sha256` is there), its
/// signature (`<bundle>.sig`) against `trusted` public key files (an
/// unsigned bundle only with `allow_unsigned`), and that it unpacks safely
/// with a valid manifest (into a scratch directory, removed after).
pub fn verify(
    path: &Path,
    trusted: &[PathBuf],
    allow_unsigned: bool,
) -> Result<Verified, PackageError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    let (sha256, signed_by) = authenticate(path, &bytes, trusted, allow_unsigned)?;
    let scratch = std::env::temp_dir().join(format!(
        "iglu-verify-{}-{}",
        std::process::id(),
        &sha256[..12]
    ));
    let _ = std::fs::remove_dir_all(&scratch);
    let manifest = bundle::unpack(&bytes, &scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(Verified {
        manifest: manifest?,
        sha256,
        signed_by,
    })
}

/// Checks the bundle `bytes` read from `path`: its checksum against
/// `<path>.sha256` if there is one, and its signature `<path>.sig` against
/// the `trusted` key files (no signature: refused unless
/// `allow_unsigned`). Returns its sha256 and which key signed it.
pub fn authenticate(
    path: &Path,
    bytes: &[u8],
    trusted: &[PathBuf],
    allow_unsigned: bool,
) -> Result<(String, Option<usize>), PackageError> {
    let sha256 = bundle::sha256_hex(bytes);
    let sum = sidecar(path, ".sha256");
    if sum.exists() {
        let text = std::fs::read_to_string(&sum).map_err(io(&sum))?;
        let expected = text.split_whitespace().next().unwrap_or_default();
        if expected != sha256 {
            return Err(PackageError::Checksum(format!(
                "{} says {expected}, the bundle is {sha256}",
                sum.display()
            )));
        }
    }
    let sig = sidecar(path, ".sig");
    let signed_by = if sig.exists() {
        let mut keys = Vec::new();
        for key in trusted {
            let text = std::fs::read_to_string(key).map_err(io(key))?;
            keys.push(signing::public_key(&text)?);
        }
        if keys.is_empty() {
            return Err(PackageError::Signature(
                "the bundle is signed, and no trusted key is configured to check it".into(),
            ));
        }
        let text = std::fs::read_to_string(&sig).map_err(io(&sig))?;
        Some(signing::verify(bytes, &text, &keys)?)
    } else if allow_unsigned {
        None
    } else {
        return Err(PackageError::Signature(format!(
            "the bundle is not signed (no {}); allow unsigned bundles explicitly",
            sig.display()
        )));
    };
    Ok((sha256, signed_by))
}
