//! Packages installed, upgraded and uninstalled on a running host.
//!
//! Every bundle is checked by the host itself, against the trusted keys of
//! the host's config, before anything changes: its checksum, its signature
//! and every entry of it (see [`crate::package`]). The user approves the
//! permissions it asks for ([`plan::Plan`], shown by `iglu install`), and
//! the request carries what was approved: a bundle that asks for anything
//! else is refused, so what runs is exactly what was shown. An upgrade that
//! asks for nothing more than the installed version was approved for needs
//! no new approval.

pub mod plan;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::package::installed::{PackageStore, Record, Unpacked};
use crate::package::manifest::Permissions;
use crate::package::{commands, PackageError};
use crate::plugin::handle::Upgraded;
use crate::plugin::state::PluginState;
use crate::roster;
use crate::shared::Shared;
use crate::store::Op;
use plan::Plan;

/// Why an install, upgrade or uninstall did not happen.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The bundle failed a check.
    #[error(transparent)]
    Package(#[from] PackageError),
    /// The bundle asks for permissions that were not approved.
    #[error("{0}")]
    ApprovalRequired(String),
    /// The id is taken, or not an installed package.
    #[error("{0}")]
    Conflict(String),
    /// The new version did not take over; the old one still serves.
    #[error("upgrade failed: {0}")]
    UpgradeFailed(String),
    /// The config's (or run-time) settings do not fit its schema.
    #[error("{0}")]
    Settings(String),
    /// The bundle is not the one the user approved.
    #[error("{0}")]
    Changed(String),
    /// The host could not do it.
    #[error("{0}")]
    Host(String),
}

impl InstallError {
    /// The control socket's error code.
    pub fn code(&self) -> &'static str {
        match self {
            InstallError::Package(PackageError::Signature(_)) => "bad_signature",
            InstallError::Package(PackageError::Checksum(_)) => "bad_checksum",
            InstallError::Package(_) => "bad_package",
            InstallError::ApprovalRequired(_) => "approval_required",
            InstallError::Conflict(_) => "conflict",
            InstallError::UpgradeFailed(_) => "upgrade_failed",
            InstallError::Settings(_) => "bad_arguments",
            InstallError::Changed(_) => "changed",
            InstallError::Host(_) => "internal",
        }
    }
}

/// What `iglu install` and `iglu upgrade` report.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Outcome {
    /// The plugin.
    pub id: String,
    /// The version now in force.
    pub version: String,
    /// Its state when the answer was sent.
    pub state: String,
    /// For an upgrade: how the switch went.
    pub upgrade: Option<Upgraded>,
}

/// The store of installed packages of this host.
pub fn store(shared: &Shared) -> PackageStore {
    PackageStore::new(&shared.config.data_dir())
}

/// A bundle to install or upgrade to, as the request names it.
#[derive(Debug, Clone, Copy)]
pub struct Bundle<'a> {
    /// Its path, read by the host.
    pub path: &'a Path,
    /// Accept it unsigned.
    pub allow_unsigned: bool,
    /// The sha256 of the bundle the user approved (shown by the plan): a
    /// different file at that path is refused.
    pub sha256: Option<&'a str>,
}

/// A checked bundle, unpacked in the store's scratch space.
struct Checked {
    unpacked: Unpacked,
    sha256: String,
    signed_by: Option<String>,
}

/// Reads, authenticates and unpacks a bundle, off the async threads.
async fn check(shared: &Shared, request: Bundle<'_>) -> Result<Checked, InstallError> {
    let (bundle, allow_unsigned) = (request.path, request.allow_unsigned);
    let expected = request.sha256.map(str::to_owned);
    let trusted = shared.config.packages.trusted_keys.clone();
    let allow = allow_unsigned || shared.config.packages.allow_unsigned;
    let store = store(shared);
    let bundle = bundle.to_owned();
    tokio::task::spawn_blocking(move || {
        let io = |source| PackageError::Io {
            path: bundle.clone(),
            source,
        };
        let len = std::fs::metadata(&bundle).map_err(io)?.len();
        if len > crate::package::bundle::MAX_UNPACKED {
            return Err(PackageError::Bundle(format!(
                "{len} bytes: a bundle may be at most {} bytes",
                crate::package::bundle::MAX_UNPACKED
            ))
            .into());
        }
        let bytes = std::fs::read(&bundle).map_err(io)?;
        let (sha256, key) = commands::authenticate(&bundle, &bytes, &trusted, allow)?;
        if let Some(expected) = expected.filter(|e| !e.eq_ignore_ascii_case(&sha256)) {
            return Err(InstallError::Changed(format!(
                "the bundle changed since it was shown for approval (sha256 {sha256}, approved {expected}): nothing was installed"
            )));
        }
        let unpacked = store.unpack(&bytes, &sha256)?;
        Ok(Checked {
            unpacked,
            sha256,
            signed_by: key
                .and_then(|i| trusted.get(i))
                .map(|p| p.display().to_string()),
        })
    })
    .await
    .map_err(|e| InstallError::Host(format!("the check did not finish: {e}")))?
}

/// What installing (or upgrading to) `bundle` would do, for approval.
pub async fn plan(shared: &Shared, bundle: Bundle<'_>) -> Result<Plan, InstallError> {
    let checked = check(shared, bundle).await?;
    let store = store(shared);
    {
        let (store, path) = (store.clone(), checked.unpacked.path.clone());
        let _ = tokio::task::spawn_blocking(move || store.discard(&path)).await;
    }
    let installed = store.read(&checked.unpacked.manifest.id)?.map(|(r, _)| r);
    Ok(Plan::new(
        &checked.unpacked.manifest,
        &checked.sha256,
        checked.signed_by,
        installed.as_ref(),
    ))
}

/// Installs `bundle` with the `approved` permissions and starts it.
pub async fn install(
    shared: &Arc<Shared>,
    bundle: Bundle<'_>,
    approved: &Permissions,
) -> Result<Outcome, InstallError> {
    let _one_at_a_time = shared.packages.lock().await;
    let mut checked = check(shared, bundle).await?;
    let store = store(shared);
    let manifest = checked.unpacked.manifest.clone();
    if &manifest.permissions != approved {
        return refuse(&store, &checked.unpacked, InstallError::ApprovalRequired(format!(
            "{} asks for permissions other than those approved: approve what it asks (iglu install shows it)",
            manifest.id
        )));
    }
    if shared.registry.contains(&manifest.id) {
        let how = if store.read(&manifest.id).ok().flatten().is_some() {
            "is installed already: use iglu upgrade"
        } else {
            "is taken by a plugin of the host's config or plugin_dir"
        };
        return refuse(
            &store,
            &checked.unpacked,
            InstallError::Conflict(format!("plugin id {} {how}", manifest.id)),
        );
    }
    if let Err(e) = stage(shared, &store, &mut checked) {
        return refuse(&store, &checked.unpacked, e);
    }
    let record = record(&checked, approved.clone());
    if let Err(e) = commit(&store, &record).await {
        return refuse(&store, &checked.unpacked, e);
    }
    let spec = plan::spec(&shared.config, &record, &manifest, &checked.unpacked.path);
    shared
        .settings
        .set_schema(&manifest.id, Some(&manifest.settings));
    roster::add(shared, spec).map_err(|e| InstallError::Host(e.to_string()))?;
    tracing::info!(plugin = %manifest.id, version = %manifest.version, signed_by = ?checked.signed_by, "package installed");
    let state = settled(shared, &manifest.id).await;
    Ok(Outcome {
        id: manifest.id,
        version: manifest.version,
        state,
        upgrade: None,
    })
}

/// Upgrades an installed package to `bundle`: the new version is started
/// beside the old one and takes over with no failed call, or the old one
/// goes on and the reason is returned. More permissions than the old
/// version's need `approved` to be exactly what the new one asks.
pub async fn upgrade(
    shared: &Arc<Shared>,
    bundle: Bundle<'_>,
    approved: Option<&Permissions>,
) -> Result<Outcome, InstallError> {
    let _one_at_a_time = shared.packages.lock().await;
    let mut checked = check(shared, bundle).await?;
    let store = store(shared);
    let manifest = checked.unpacked.manifest.clone();
    let old = match store.read(&manifest.id) {
        Ok(Some((record, _))) if is_package(shared, &manifest.id) => record,
        Ok(_) => {
            return refuse(
                &store,
                &checked.unpacked,
                InstallError::Conflict(format!(
                    "{} is not an installed package: use iglu install",
                    manifest.id
                )),
            )
        }
        Err(e) => return refuse(&store, &checked.unpacked, e.into()),
    };
    let more = plan::more_permissions(&old.approved, &manifest.permissions);
    if !more.is_empty() && approved != Some(&manifest.permissions) {
        return refuse(
            &store,
            &checked.unpacked,
            InstallError::ApprovalRequired(format!(
                "{} {} asks for more than {} was approved for ({}): approve them again",
                manifest.id,
                manifest.version,
                old.version,
                more.join(", ")
            )),
        );
    }
    if let Err(e) = stage(shared, &store, &mut checked) {
        return refuse(&store, &checked.unpacked, e);
    }
    let record = record(&checked, manifest.permissions.clone());
    let mut spec = plan::spec(&shared.config, &record, &manifest, &checked.unpacked.path);
    // What the old version provided, the new one must too: its callers
    // go on calling it.
    if let Some((_, old_manifest)) = store.read(&manifest.id).ok().flatten() {
        for p in old_manifest.provides {
            if !spec.provides.contains(&p) {
                spec.provides.push(p);
            }
        }
    }
    let result = shared.handles.upgrade(&manifest.id, spec).await;
    let upgraded = match result {
        Ok(Ok(upgraded)) => upgraded,
        Ok(Err(reason)) => {
            return refuse(
                &store,
                &checked.unpacked,
                InstallError::UpgradeFailed(reason),
            )
        }
        Err(e) => return refuse(&store, &checked.unpacked, InstallError::Host(e.to_string())),
    };
    if let Err(e) = commit(&store, &record).await {
        // The new version runs; on the next start of the host the old
        // record (and version) is in force again.
        tracing::error!(plugin = %manifest.id, error = %e, "the upgrade runs but could not be recorded");
        return Err(e);
    }
    {
        let (store, id, keep) = (store.clone(), manifest.id.clone(), record.dir.clone());
        tokio::task::spawn_blocking(move || store.prune(&id, Some(&keep)));
    }
    shared
        .settings
        .set_schema(&manifest.id, Some(&manifest.settings));
    tracing::info!(plugin = %manifest.id, from = %old.version, to = %manifest.version, switch_ms = upgraded.switch_ms, "package upgraded");
    Ok(Outcome {
        id: manifest.id.clone(),
        version: manifest.version,
        state: state_of(shared, &manifest.id),
        upgrade: Some(upgraded),
    })
}

/// Stops and removes an installed package; its stored data and settings
/// go too with `purge`.
pub async fn uninstall(
    shared: &Arc<Shared>,
    id: &str,
    purge: bool,
) -> Result<String, InstallError> {
    let _one_at_a_time = shared.packages.lock().await;
    let store = store(shared);
    if !crate::package::manifest::valid_id(id) {
        return Err(InstallError::Conflict(format!("{id:?} is not a plugin id")));
    }
    if store.read(id)?.is_none() || !is_package(shared, id) {
        return Err(InstallError::Conflict(format!(
            "{id} is not an installed package (plugins of the config are removed from the config)"
        )));
    }
    roster::remove(shared, id)
        .await
        .map_err(|e| InstallError::Host(e.to_string()))?;
    {
        let (store, id) = (store.clone(), id.to_owned());
        tokio::task::spawn_blocking(move || store.remove(&id))
            .await
            .map_err(|e| InstallError::Host(e.to_string()))??;
    }
    shared.settings.set_schema(id, None);
    if purge {
        shared
            .store
            .write(id, shared.quota(id), vec![Op::Clear])
            .await
            .map_err(|e| InstallError::Host(format!("its data could not be removed: {e}")))?;
        let (settings, owned) = (shared.settings.clone(), id.to_owned());
        tokio::task::spawn_blocking(move || settings.purge(&owned))
            .await
            .map_err(|e| InstallError::Host(e.to_string()))?
            .map_err(|e| InstallError::Host(e.to_string()))?;
        Ok(format!("{id}: uninstalled, its data and settings removed"))
    } else {
        Ok(format!(
            "{id}: uninstalled (its data is kept; --purge removes it)"
        ))
    }
}

/// The installed packages as plugins to supervise, at the host's start.
pub fn installed_specs(config: &crate::config::Config) -> Vec<crate::config::PluginSpec> {
    let store = PackageStore::new(&config.data_dir());
    store.clear_scratch();
    let (found, broken) = store.list();
    for why in broken {
        tracing::error!(%why, "an installed package cannot be read: not started");
    }
    found
        .into_iter()
        .map(|(record, manifest)| {
            let dir: PathBuf = store.path_of(&record);
            plan::spec(config, &record, &manifest, &dir)
        })
        .collect()
}

/// Puts a checked bundle beside the version in force, once its settings
/// schema fits what the config and `iglu settings set` hold for it.
fn stage(shared: &Shared, store: &PackageStore, checked: &mut Checked) -> Result<(), InstallError> {
    let m = &checked.unpacked.manifest;
    shared
        .settings
        .fits(&m.id, &m.settings)
        .map_err(|e| InstallError::Settings(e.to_string()))?;
    store.place(&mut checked.unpacked)?;
    Ok(())
}

/// Refuses with `e`, removing what was unpacked for nothing (off the
/// async threads: a package may be large).
fn refuse<T>(
    store: &PackageStore,
    unpacked: &Unpacked,
    e: InstallError,
) -> Result<T, InstallError> {
    let (store, path) = (store.clone(), unpacked.path.clone());
    tokio::task::spawn_blocking(move || store.discard(&path));
    Err(e)
}

/// Makes `record` the version in force (it syncs to disk: off the async threads).
async fn commit(store: &PackageStore, record: &Record) -> Result<(), InstallError> {
    let (store, record) = (store.clone(), record.clone());
    tokio::task::spawn_blocking(move || store.commit(&record))
        .await
        .map_err(|e| InstallError::Host(e.to_string()))?
        .map_err(InstallError::from)
}

fn record(checked: &Checked, approved: Permissions) -> Record {
    Record {
        id: checked.unpacked.manifest.id.clone(),
        version: checked.unpacked.manifest.version.clone(),
        dir: checked.unpacked.dir.clone(),
        bundle_sha256: checked.sha256.clone(),
        executable_sha256: checked.unpacked.executable_sha256.clone(),
        approved,
        signed_by: checked.signed_by.clone(),
        installed_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0),
    }
}

/// Whether plugin `id` on this host runs from an installed package (not a
/// plugin of the config with the same id, which then runs instead).
fn is_package(shared: &Shared, id: &str) -> bool {
    shared
        .registry
        .read(id, |f| {
            matches!(f.kind(), crate::plugin::registry::PluginKind::Managed(s) if s.package.is_some())
        })
        .unwrap_or(false)
}

fn state_of(shared: &Shared, id: &str) -> String {
    shared
        .registry
        .state(id)
        .map_or("gone", |s| s.as_str())
        .to_owned()
}

/// Waits (within the handshake deadline and a little) for a new plugin to
/// be running or down, and says which.
async fn settled(shared: &Shared, id: &str) -> String {
    let until = tokio::time::Instant::now()
        + Duration::from_millis(shared.config.handshake_timeout_ms)
        + Duration::from_secs(1);
    loop {
        let state = shared.registry.state(id);
        let done = !matches!(state, Some(PluginState::Starting));
        if done || tokio::time::Instant::now() >= until {
            return state_of(shared, id);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
