//! The control socket's package and settings commands: `plan` (what a
//! bundle would do, for `iglu install` to show), `install`, `upgrade`,
//! `uninstall`, `plugins`, and `settings` get/set/unset.

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};

use super::Response;
use crate::install::{self, InstallError};
use crate::package::manifest::Permissions;
use crate::plugin::registry::PluginKind;
use crate::shared::Shared;

/// `plan`: check a bundle and say what installing it would do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanRequest {
    /// The bundle's path (absolute: the host reads it).
    pub bundle: PathBuf,
    /// Accept it unsigned.
    #[serde(default)]
    pub allow_unsigned: bool,
}

/// `install` or `upgrade`: a bundle, with the permissions approved.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstallRequest {
    /// The bundle's path (absolute: the host reads it).
    pub bundle: PathBuf,
    /// Accept it unsigned.
    #[serde(default)]
    pub allow_unsigned: bool,
    /// The permissions the user approved (an upgrade asking for no more
    /// than its installed version needs none).
    #[serde(default)]
    pub approved: Option<Permissions>,
    /// The sha256 of the bundle the user was shown: a different file at
    /// that path is refused.
    #[serde(default)]
    pub sha256: Option<String>,
}

impl InstallRequest {
    fn bundle(&self) -> install::Bundle<'_> {
        install::Bundle {
            path: &self.bundle,
            allow_unsigned: self.allow_unsigned,
            sha256: self.sha256.as_deref(),
        }
    }
}

/// `uninstall`: one installed package.
#[derive(Debug, Clone, Serialize, Deserialize, clap::Args)]
pub struct UninstallRequest {
    /// The plugin.
    pub plugin: String,
    /// Remove its stored data and run-time settings too.
    #[arg(long)]
    #[serde(default)]
    pub purge: bool,
}

/// `iglu settings ...`.
#[derive(Debug, Clone, Serialize, Deserialize, clap::Subcommand)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum SettingsRequest {
    /// Show a plugin's settings in force, with where each comes from.
    Get {
        /// The plugin.
        plugin: String,
    },
    /// Set one at run time (kept across restarts of the host); the plugin
    /// is told at once. The value is JSON, or else taken as a string.
    Set {
        /// The plugin.
        plugin: String,
        /// The setting.
        key: String,
        /// Its value.
        value: String,
    },
    /// Drop a run-time value: the config's (or the default) is in force again.
    Unset {
        /// The plugin.
        plugin: String,
        /// The setting.
        key: String,
    },
}

fn failed(e: InstallError) -> Response {
    Response::err(e.code(), e.to_string())
}

fn value<T: Serialize>(v: &T) -> Response {
    match serde_json::to_value(v) {
        Ok(v) => Response::ok(v),
        Err(e) => Response::err("internal", e.to_string()),
    }
}

/// `plan`.
pub async fn plan(shared: &Shared, r: PlanRequest) -> Response {
    let bundle = install::Bundle {
        path: &r.bundle,
        allow_unsigned: r.allow_unsigned,
        sha256: None,
    };
    match install::plan(shared, bundle).await {
        Ok(plan) => value(&plan),
        Err(e) => failed(e),
    }
}

/// `install`.
pub async fn install(shared: &Arc<Shared>, r: InstallRequest) -> Response {
    let Some(approved) = &r.approved else {
        return Response::err(
            "approval_required",
            "install needs the approved permissions (iglu install shows them and asks)",
        );
    };
    match install::install(shared, r.bundle(), approved).await {
        Ok(outcome) => value(&outcome),
        Err(e) => failed(e),
    }
}

/// `upgrade`.
pub async fn upgrade(shared: &Arc<Shared>, r: InstallRequest) -> Response {
    match install::upgrade(shared, r.bundle(), r.approved.as_ref()).await {
        Ok(outcome) => value(&outcome),
        Err(e) => failed(e),
    }
}

/// `uninstall`.
pub async fn uninstall(shared: &Arc<Shared>, r: UninstallRequest) -> Response {
    match install::uninstall(shared, &r.plugin, r.purge).await {
        Ok(done) => Response::ok(json!(done)),
        Err(e) => failed(e),
    }
}

/// `plugins`: every plugin, where it comes from, its version and what it may do.
pub fn plugins(shared: &Shared) -> Response {
    let configured = |id: &str| shared.config.plugins.iter().any(|p| p.id == id);
    let list = shared.registry.read_all(|id, f| {
        let (source, version, sha256) = match f.kind() {
            PluginKind::Managed(spec) => match &spec.package {
                Some(m) => ("package", Some(m.version.clone()), spec.sha256.clone()),
                None if configured(id) => ("config", None, spec.sha256.clone()),
                None => ("plugin_dir", None, spec.sha256.clone()),
            },
            PluginKind::External(_) => ("external", None, None),
        };
        let version = version.or_else(|| {
            f.manifest()
                .map(|m| m.version.clone())
                .filter(|v| !v.is_empty())
        });
        let permissions = match f.kind().grants() {
            Some(g) => json!(g),
            None => json!("all"),
        };
        let calls = match f.kind() {
            PluginKind::Managed(s) => s.calls.clone(),
            PluginKind::External(s) => s.calls.clone(),
        };
        json!({
            "id": id,
            "source": source,
            "version": version,
            "state": f.state().as_str(),
            "permissions": permissions,
            "calls": calls,
            "sha256": sha256,
        })
    });
    // Quotas read the registry too: after its lock is released.
    let list = list
        .into_iter()
        .map(|mut p| {
            let id = p["id"].as_str().unwrap_or_default().to_owned();
            p["store_quota"] = json!(shared.quota(&id));
            p
        })
        .collect();
    Response::ok(Json::Array(list))
}

/// `settings`. A change is written to disk (and synced) off the async threads.
pub async fn settings(shared: &Shared, r: SettingsRequest) -> Response {
    let plugin = match &r {
        SettingsRequest::Get { plugin }
        | SettingsRequest::Set { plugin, .. }
        | SettingsRequest::Unset { plugin, .. } => plugin.clone(),
    };
    if !shared.registry.contains(&plugin) {
        return Response::err("unknown_plugin", format!("no plugin named {plugin:?}"));
    }
    if let SettingsRequest::Get { plugin } = &r {
        return value(&shared.settings.shown(plugin));
    }
    let settings = shared.settings.clone();
    let id = plugin.clone();
    let changed = tokio::task::spawn_blocking(move || match r {
        SettingsRequest::Set { key, value, .. } => {
            let value = serde_json::from_str(&value).unwrap_or(Json::String(value));
            settings.set(&id, &key, value).map(|()| true)
        }
        SettingsRequest::Unset { key, .. } => settings.unset(&id, &key),
        SettingsRequest::Get { .. } => Ok(false),
    })
    .await
    .unwrap_or_else(|e| {
        Err(crate::settings::SettingsError::Invalid(format!(
            "the change did not finish: {e}"
        )))
    });
    match changed {
        Ok(true) => {
            notify(shared, &plugin);
            value(&shared.settings.shown(&plugin))
        }
        Ok(false) => Response::err("not_found", "no run-time value of that setting to drop"),
        Err(crate::settings::SettingsError::Invalid(why)) => Response::err("bad_arguments", why),
        Err(e) => Response::err("storage_error", e.to_string()),
    }
}

/// Tells the plugin its settings changed: the whole new set, on its own
/// settings topic, queued for it alone (it gets it when it is back if it
/// is down; its next start reads them from the environment anyway).
fn notify(shared: &Shared, plugin: &str) {
    let all = Json::Object(shared.settings.effective(plugin));
    match crate::json_msgpack::to_msgpack(&all) {
        Ok(bytes) => {
            let topic = crate::settings::topic(plugin);
            if let Err(e) = shared.events.send_to(plugin, &topic, bytes.into()) {
                tracing::warn!(%plugin, error = %e.message, "could not tell the plugin its settings changed");
            }
        }
        Err(e) => tracing::warn!(%plugin, error = %e, "settings do not encode"),
    }
}
