//! What installing or upgrading a bundle would do, shown to the user for
//! approval before anything changes; and the plugin spec an installed
//! package runs as.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::config::{Config, PluginSpec};
use crate::package::installed::Record;
use crate::package::manifest::{PackageManifest, Permissions, Setting};
use crate::permissions::{covers, Grants};

/// A bundle checked, and what it asks for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    /// The plugin's id.
    pub id: String,
    /// For people.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Who made it.
    pub author: String,
    /// For people.
    pub description: String,
    /// The bundle's sha256.
    pub sha256: String,
    /// The trusted key file that signed it (`None`: unsigned, allowed).
    pub signed_by: Option<String>,
    /// What it asks to be allowed.
    pub permissions: Permissions,
    /// Its settings schema.
    pub settings: BTreeMap<String, Setting>,
    /// Interfaces it implements.
    pub provides: Vec<String>,
    /// Interfaces it calls.
    pub requires: Vec<String>,
    /// The version installed now, if any.
    pub installed: Option<String>,
    /// What it asks beyond what the installed version was approved for
    /// (everything, for a first install): approval is needed when this is
    /// not empty.
    pub more: Vec<String>,
}

impl Plan {
    /// The plan for `manifest`, against the installed version's record.
    pub fn new(
        manifest: &PackageManifest,
        sha256: &str,
        signed_by: Option<String>,
        installed: Option<&Record>,
    ) -> Plan {
        let more = match installed {
            Some(r) => more_permissions(&r.approved, &manifest.permissions),
            None => listed(&manifest.permissions),
        };
        Plan {
            id: manifest.id.clone(),
            name: manifest.name.clone(),
            version: manifest.version.clone(),
            author: manifest.author.clone(),
            description: manifest.description.clone(),
            sha256: sha256.to_owned(),
            signed_by,
            permissions: manifest.permissions.clone(),
            settings: manifest.settings.clone(),
            provides: manifest.provides.clone(),
            requires: manifest.requires.clone(),
            installed: installed.map(|r| r.version.clone()),
            more,
        }
    }
}

/// Every permission, in words.
pub fn listed(p: &Permissions) -> Vec<String> {
    let mut out = Vec::new();
    out.extend(p.publish.iter().map(|f| format!("publish {f}")));
    out.extend(p.subscribe.iter().map(|f| format!("subscribe {f}")));
    out.extend(p.host_api.iter().map(|m| format!("host_api {m}")));
    out.extend(p.calls.iter().map(|c| format!("call {c}")));
    if let Some(k) = p.store_max_keys {
        out.push(format!("store_max_keys {k}"));
    }
    if let Some(b) = p.store_max_bytes {
        out.push(format!("store_max_bytes {b}"));
    }
    out
}

/// What `new` asks beyond `old`, in words: a filter no old one covers, a
/// host method or callee not granted before, a larger quota.
pub fn more_permissions(old: &Permissions, new: &Permissions) -> Vec<String> {
    let mut out = Vec::new();
    let filters = |what: &str, old: &[String], new: &[String], out: &mut Vec<String>| {
        for f in new {
            if !old.iter().any(|o| covers(o, f)) {
                out.push(format!("{what} {f}"));
            }
        }
    };
    filters("publish", &old.publish, &new.publish, &mut out);
    filters("subscribe", &old.subscribe, &new.subscribe, &mut out);
    let old_api = Grants {
        host_api: old.host_api.clone(),
        ..Grants::default()
    };
    for m in &new.host_api {
        let granted = old.host_api.contains(m)
            || old.host_api.iter().any(|o| o == "*")
            || (!m.ends_with('*') && old_api.allows_method(m));
        if !granted {
            out.push(format!("host_api {m}"));
        }
    }
    for c in &new.calls {
        if !old.calls.iter().any(|o| o == "*" || o == c) {
            out.push(format!("call {c}"));
        }
    }
    let bigger = |o: Option<u64>, n: Option<u64>| match (o, n) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(o), Some(n)) => n > o,
    };
    if bigger(old.store_max_keys, new.store_max_keys) {
        out.push(format!(
            "store_max_keys {}",
            new.store_max_keys.unwrap_or_default()
        ));
    }
    if bigger(old.store_max_bytes, new.store_max_bytes) {
        out.push(format!(
            "store_max_bytes {}",
            new.store_max_bytes.unwrap_or_default()
        ));
    }
    out
}

/// The plugin an installed package runs as: its executable (whose sha256
/// is checked before every start), the interfaces it must provide, and
/// exactly the permissions approved, its store quota capped by the config's.
pub fn spec(
    config: &Config,
    record: &Record,
    manifest: &PackageManifest,
    dir: &Path,
) -> PluginSpec {
    let approved = &record.approved;
    let mut spec = PluginSpec::new(&record.id, dir.join(&manifest.executable));
    spec.provides = manifest.provides.clone();
    spec.calls = approved.calls.clone();
    spec.permissions = Some(Grants {
        publish: approved.publish.clone(),
        subscribe: approved.subscribe.clone(),
        host_api: approved.host_api.clone(),
    });
    let cap = |asked: Option<u64>, max: u64| Some(asked.map_or(max, |a| a.min(max)));
    spec.store_max_keys = cap(approved.store_max_keys, config.store.max_keys);
    spec.store_max_bytes = cap(approved.store_max_bytes, config.store.max_bytes);
    spec.sha256 = Some(record.executable_sha256.clone());
    spec.limits = Some(crate::limits::Limits::capped(
        &manifest.limits,
        &config.limits,
    ));
    spec.package = Some(Arc::new(manifest.clone()));
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_permissions_are_what_the_old_grants_do_not_cover() {
        let old = Permissions {
            publish: vec!["home/+/light/state".into()],
            subscribe: vec!["home/#".into()],
            host_api: vec!["kv.*".into()],
            calls: vec!["thermostat".into()],
            store_max_keys: Some(10),
            store_max_bytes: None,
        };
        assert!(more_permissions(&old, &old).is_empty());
        let mut new = old.clone();
        new.subscribe = vec!["home/kitchen/motion".into()];
        new.host_api = vec!["kv.get".into()];
        assert!(
            more_permissions(&old, &new).is_empty(),
            "narrower is not more"
        );
        new.publish.push("alarm/siren".into());
        new.host_api.push("events.publish".into());
        new.calls.push("lights".into());
        new.store_max_keys = Some(11);
        assert_eq!(
            more_permissions(&old, &new),
            vec![
                "publish alarm/siren",
                "host_api events.publish",
                "call lights",
                "store_max_keys 11"
            ]
        );
    }
}
