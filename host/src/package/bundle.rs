//! Bundles: a package directory as one `.tar.gz`, its sha256, and safe
//! unpacking. A bundle may hold only regular files and directories under
//! its root, within bounds: a path that escapes (`../x`, `/etc/x`), a
//! link or a device is refused before anything is written.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::manifest::{self, PackageManifest};
use super::{io, PackageError};

/// Most bytes a bundle may unpack to (a bound against archive bombs).
pub const MAX_UNPACKED: u64 = 512 * 1024 * 1024;
/// Most entries in a bundle.
pub const MAX_ENTRIES: usize = 10_000;

/// The sha256 of `bytes`, in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The sha256 of a file, in hex, read a piece at a time (an executable
/// may be large; it is never held whole).
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The bundle's file name for a manifest: `<id>-<version>.iglu.tar.gz`.
pub fn file_name(m: &PackageManifest) -> String {
    format!("{}-{}.iglu.tar.gz", m.id, m.version)
}

/// Packs `dir` (which holds `iglu-plugin.toml`) into a bundle's bytes.
/// Files are taken in name order with their permission bits, so the same
/// directory gives the same bundle.
pub fn build(dir: &Path) -> Result<(PackageManifest, Vec<u8>), PackageError> {
    let manifest = PackageManifest::read(dir)?;
    let exe = dir.join(&manifest.executable);
    let meta = std::fs::metadata(&exe).map_err(io(&exe))?;
    if !meta.is_file() {
        return Err(PackageError::Manifest(format!(
            "executable {} is not a file",
            manifest.executable
        )));
    }
    let mut files = Vec::new();
    collect(dir, Path::new(""), &mut files)?;
    files.sort();
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    tar.mode(tar::HeaderMode::Deterministic);
    // Plain entries only: a file with holes (a debug build often has
    // them) would otherwise become a GNU sparse entry, which other tools
    // and older readers do not all take.
    tar.sparse(false);
    for rel in &files {
        let path = dir.join(rel);
        let mut file = std::fs::File::open(&path).map_err(io(&path))?;
        tar.append_file(rel, &mut file).map_err(io(&path))?;
    }
    let gz = tar.into_inner().map_err(io(dir))?;
    let bytes = gz.finish().map_err(io(dir))?;
    Ok((manifest, bytes))
}

fn collect(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<(), PackageError> {
    let here = root.join(rel);
    for entry in std::fs::read_dir(&here).map_err(io(&here))? {
        let entry = entry.map_err(io(&here))?;
        let name = rel.join(entry.file_name());
        let kind = entry.file_type().map_err(io(&entry.path()))?;
        if kind.is_dir() {
            collect(root, &name, out)?;
        } else if kind.is_file() {
            out.push(name);
        } else {
            return Err(PackageError::Bundle(format!(
                "{}: only files and directories go into a bundle (not links or devices)",
                name.display()
            )));
        }
    }
    Ok(())
}

/// Unpacks a bundle into `into` (which must not exist yet) and returns its
/// manifest. Refuses, having written nothing outside `into`, any entry
/// that is not a plain file or directory inside it, and more than the
/// bounds; `into` is removed again if anything is refused.
pub fn unpack(bytes: &[u8], into: &Path) -> Result<PackageManifest, PackageError> {
    std::fs::create_dir(into).map_err(io(into))?;
    let result = unpack_into(bytes, into);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(into);
    }
    result
}

fn unpack_into(bytes: &[u8], into: &Path) -> Result<PackageManifest, PackageError> {
    let bad = |m: String| PackageError::Bundle(m);
    // Every entry is checked before any is written.
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    let mut total = 0u64;
    let mut count = 0usize;
    for entry in archive.entries().map_err(|e| bad(e.to_string()))? {
        let entry = entry.map_err(|e| bad(format!("not a readable bundle: {e}")))?;
        count += 1;
        if count > MAX_ENTRIES {
            return Err(bad(format!("more than {MAX_ENTRIES} entries")));
        }
        let path = entry.path().map_err(|e| bad(e.to_string()))?.into_owned();
        if !manifest::inside(&path) {
            return Err(bad(format!(
                "entry {} escapes the bundle (absolute, or with `..`)",
                path.display()
            )));
        }
        let kind = entry.header().entry_type();
        // A GNU sparse entry is a file with holes (bundles made elsewhere).
        if !(kind.is_file() || kind.is_dir() || kind.is_gnu_sparse()) {
            return Err(bad(format!(
                "entry {} is a link or a device: only files and directories may be in a bundle",
                path.display()
            )));
        }
        total = total.saturating_add(entry.header().size().unwrap_or(u64::MAX));
        if total > MAX_UNPACKED {
            return Err(bad(format!("it unpacks to more than {MAX_UNPACKED} bytes")));
        }
    }
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    archive.set_preserve_permissions(false);
    archive.set_overwrite(false);
    for entry in archive.entries().map_err(|e| bad(e.to_string()))? {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        let path = entry.path().map_err(|e| bad(e.to_string()))?.into_owned();
        let mode = entry.header().mode().unwrap_or(0o644);
        let target = into.join(&path);
        if entry.header().entry_type().is_dir() {
            std::fs::create_dir_all(&target).map_err(io(&target))?;
            continue;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let mut data = Vec::new();
        entry
            .read_to_end(&mut data)
            .map_err(|e| bad(format!("{}: {e}", path.display())))?;
        std::fs::write(&target, &data).map_err(io(&target))?;
        use std::os::unix::fs::PermissionsExt;
        // Owner's bits only matter: executable or not, never setuid.
        let mode = if mode & 0o100 != 0 { 0o755 } else { 0o644 };
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))
            .map_err(io(&target))?;
    }
    let manifest = PackageManifest::read(into)?;
    let exe = into.join(&manifest.executable);
    if !exe.is_file() {
        return Err(PackageError::Manifest(format!(
            "executable {} is not in the bundle",
            manifest.executable
        )));
    }
    Ok(manifest)
}
