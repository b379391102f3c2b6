//! The host's package store: installed packages under
//! `<data_dir>/packages/<id>/`, one directory per version unpacked
//! (`<version>-<sha256 prefix>/`) and `installed.json`, the record of the
//! version in force: its bundle's and its executable's sha256 and the
//! permissions the user approved.
//!
//! A version is unpacked into a scratch directory and renamed into place
//! whole; the record is replaced whole (written beside, synced, renamed).
//! So a crash at any point leaves the old version installed, or the new
//! one, and at worst an unreferenced directory that the next install of
//! that package clears.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::manifest::{PackageManifest, Permissions};
use super::{bundle, io, PackageError};

/// The record's file name in a package's directory.
const RECORD: &str = "installed.json";

/// What the host keeps about an installed package.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The plugin's id.
    pub id: String,
    /// Its version.
    pub version: String,
    /// The directory it is unpacked in, under the package's directory.
    pub dir: String,
    /// The bundle's sha256.
    pub bundle_sha256: String,
    /// The executable's sha256, checked before every start.
    pub executable_sha256: String,
    /// The permissions approved at install (or at the last upgrade).
    pub approved: Permissions,
    /// The trusted key file that signed it, if it was signed.
    pub signed_by: Option<String>,
    /// When it was installed, in ms since the Unix epoch.
    pub installed_ms: u64,
}

/// The package store of one host.
#[derive(Debug, Clone)]
pub struct PackageStore {
    root: PathBuf,
}

/// A version unpacked, not yet in force.
#[derive(Debug)]
pub struct Unpacked {
    /// Where it is.
    pub path: PathBuf,
    /// Its directory's name.
    pub dir: String,
    /// Its manifest.
    pub manifest: PackageManifest,
    /// Its executable's sha256.
    pub executable_sha256: String,
}

impl PackageStore {
    /// The store under `data_dir`.
    pub fn new(data_dir: &Path) -> PackageStore {
        PackageStore {
            root: data_dir.join("packages"),
        }
    }

    fn package_dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Removes what unpacks left behind when the host died mid-way (at
    /// start, before anything unpacks).
    pub fn clear_scratch(&self) {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return;
        };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(".unpack-") {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }

    /// Every installed package with its manifest, by id. One whose record
    /// or manifest cannot be read is left out with the reason.
    pub fn list(&self) -> (Vec<(Record, PackageManifest)>, Vec<String>) {
        let mut found = Vec::new();
        let mut broken = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return (found, broken);
        };
        let mut ids: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter(|n| super::manifest::valid_id(n))
            .collect();
        ids.sort();
        for id in ids {
            match self.read(&id) {
                Ok(Some(pair)) => found.push(pair),
                Ok(None) => {}
                Err(e) => broken.push(format!("package {id}: {e}")),
            }
        }
        (found, broken)
    }

    /// The installed package `id`, if there is one.
    pub fn read(&self, id: &str) -> Result<Option<(Record, PackageManifest)>, PackageError> {
        let path = self.package_dir(id).join(RECORD);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&path)(e)),
        };
        let record: Record = serde_json::from_str(&text)
            .map_err(|e| PackageError::Manifest(format!("{}: {e}", path.display())))?;
        if record.id != id || !super::manifest::inside(Path::new(&record.dir)) {
            return Err(PackageError::Manifest(format!(
                "{}: the record is not this package's",
                path.display()
            )));
        }
        let manifest = PackageManifest::read(&self.package_dir(id).join(&record.dir))?;
        Ok(Some((record, manifest)))
    }

    /// Where version `record` is unpacked.
    pub fn path_of(&self, record: &Record) -> PathBuf {
        self.package_dir(&record.id).join(&record.dir)
    }

    /// Unpacks a bundle's `bytes` (whose sha256 is `sha256`) into a
    /// scratch directory of the store, checking every entry; nothing is
    /// in force until [`Self::place`] and [`Self::commit`].
    pub fn unpack(&self, bytes: &[u8], sha256: &str) -> Result<Unpacked, PackageError> {
        std::fs::create_dir_all(&self.root).map_err(io(&self.root))?;
        // Unique per unpack: two requests for one bundle (a plan, then its
        // install) never share a scratch directory.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let scratch = self.root.join(format!(
            ".unpack-{}-{n}-{}",
            std::process::id(),
            &sha256[..12]
        ));
        let _ = std::fs::remove_dir_all(&scratch);
        let manifest = match bundle::unpack(bytes, &scratch) {
            Ok(m) => m,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&scratch);
                return Err(e);
            }
        };
        let exe = scratch.join(&manifest.executable);
        let executable_sha256 = match bundle::file_sha256(&exe) {
            Ok(sum) => sum,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&scratch);
                return Err(io(&exe)(e));
            }
        };
        Ok(Unpacked {
            dir: format!("{}-{}", manifest.version, &sha256[..12]),
            path: scratch,
            manifest,
            executable_sha256,
        })
    }

    /// Moves an unpacked version into its package's directory, beside the
    /// version in force; refused if this very bundle is there already.
    pub fn place(&self, unpacked: &mut Unpacked) -> Result<(), PackageError> {
        let pkg = self.package_dir(&unpacked.manifest.id);
        std::fs::create_dir_all(&pkg).map_err(io(&pkg))?;
        let path = pkg.join(&unpacked.dir);
        if path.exists() {
            return Err(PackageError::Bundle(format!(
                "{} {} from this very bundle is installed already",
                unpacked.manifest.id, unpacked.manifest.version
            )));
        }
        std::fs::rename(&unpacked.path, &path).map_err(io(&path))?;
        unpacked.path = path;
        Ok(())
    }

    /// Removes an unpacked version (at `path`, under this store) that is
    /// not going in force.
    pub fn discard(&self, path: &Path) {
        if path.starts_with(&self.root) {
            let _ = std::fs::remove_dir_all(path);
        }
    }

    /// Makes `record` the version in force.
    pub fn commit(&self, record: &Record) -> Result<(), PackageError> {
        let pkg = self.package_dir(&record.id);
        let path = pkg.join(RECORD);
        let tmp = pkg.join(format!("{RECORD}.new"));
        let text =
            serde_json::to_vec_pretty(record).map_err(|e| PackageError::Manifest(e.to_string()))?;
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(&text).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        drop(f);
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        if let Ok(d) = std::fs::File::open(&pkg) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Removes every version of `id` but `keep` (after an upgrade, or a
    /// failed one: then `keep` is the old version).
    pub fn prune(&self, id: &str, keep: Option<&str>) {
        let pkg = self.package_dir(id);
        let Ok(entries) = std::fs::read_dir(&pkg) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name == RECORD || Some(name.as_ref()) == keep {
                continue;
            }
            if e.path().is_dir() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }

    /// Removes package `id` altogether.
    pub fn remove(&self, id: &str) -> Result<(), PackageError> {
        let pkg = self.package_dir(id);
        match std::fs::remove_dir_all(&pkg) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&pkg)(e)),
        }
    }
}
