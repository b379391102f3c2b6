//! `iglu-plugin.toml`: what a package is and what it asks for.
//!
//! ```toml
//! id = "lights"
//! name = "Lights"
//! author = "Iglu developers"
//! version = "1.2.0"
//! description = "The home's lights"
//! executable = "bin/iglu-plugin-lights"
//! provides = ["iglu.light@1.0.0"]
//! requires = ["iglu.thermostat@^1"]
//!
//! [permissions]
//! publish = ["home/+/light/state"]
//! subscribe = ["home/+/light/set"]
//! host_api = ["kv.*", "events.*"]
//! calls = ["thermostat"]
//!
//! [settings.rooms]
//! type = "string"
//! default = "kitchen,hall"
//! description = "The rooms with a light"
//! ```

use std::collections::BTreeMap;
use std::path::{Component, Path};

use serde::{Deserialize, Serialize};

use super::PackageError;

/// The manifest's file name, at the root of a package.
pub const FILE: &str = "iglu-plugin.toml";

/// A package's manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageManifest {
    /// The plugin's id (`[a-z0-9_-]`, 1-64).
    pub id: String,
    /// For people.
    pub name: String,
    /// Who made it.
    #[serde(default)]
    pub author: String,
    /// Semantic version, `major.minor.patch`.
    pub version: String,
    /// For people.
    #[serde(default)]
    pub description: String,
    /// The program, relative to the package's root.
    pub executable: String,
    /// Interfaces it implements (`name@version`).
    #[serde(default)]
    pub provides: Vec<String>,
    /// Interfaces it calls (`name@^version`).
    #[serde(default)]
    pub requires: Vec<String>,
    /// What it may do; nothing beyond.
    #[serde(default)]
    pub permissions: Permissions,
    /// Its settings, by name, with their types and defaults.
    #[serde(default)]
    pub settings: BTreeMap<String, Setting>,
    /// What its processes may use (capped by the host's `[limits]`).
    #[serde(default)]
    pub limits: crate::limits::PluginLimits,
}

/// What a plugin asks to be allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Permissions {
    /// Topic filters it may publish to.
    #[serde(default)]
    pub publish: Vec<String>,
    /// Topic filters it may subscribe to.
    #[serde(default)]
    pub subscribe: Vec<String>,
    /// Host API methods it may call (`kv.get`, or `kv.*` for a group).
    #[serde(default)]
    pub host_api: Vec<String>,
    /// Plugins it may call (`*` for any).
    #[serde(default)]
    pub calls: Vec<String>,
    /// Its store quota in keys (capped by the host's config).
    #[serde(default)]
    pub store_max_keys: Option<u64>,
    /// Its store quota in bytes (capped by the host's config).
    #[serde(default)]
    pub store_max_bytes: Option<u64>,
}

/// One setting: its type, default and description.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Setting {
    /// `string`, `integer`, `float`, `boolean` or `array`.
    #[serde(rename = "type")]
    pub kind: SettingKind,
    /// Its value unless the host's config says otherwise.
    pub default: toml::Value,
    /// For people.
    #[serde(default)]
    pub description: String,
}

/// The type of a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SettingKind {
    /// Text.
    String,
    /// A whole number.
    Integer,
    /// A number.
    Float,
    /// true or false.
    Boolean,
    /// A list.
    Array,
}

impl SettingKind {
    /// Whether `value` is of this type (an integer is a float too).
    pub fn admits(self, value: &toml::Value) -> bool {
        matches!(
            (self, value),
            (SettingKind::String, toml::Value::String(_))
                | (SettingKind::Integer, toml::Value::Integer(_))
                | (
                    SettingKind::Float,
                    toml::Value::Float(_) | toml::Value::Integer(_)
                )
                | (SettingKind::Boolean, toml::Value::Boolean(_))
                | (SettingKind::Array, toml::Value::Array(_))
        )
    }
}

/// Whether `id` is a valid plugin id.
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Whether `path` stays inside the directory it is relative to: relative,
/// and made of plain names only (no `..`, no `.`, no root).
pub fn inside(path: &Path) -> bool {
    !path.as_os_str().is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)))
}

impl PackageManifest {
    /// Parses and checks a manifest's text.
    pub fn parse(text: &str) -> Result<PackageManifest, PackageError> {
        let m: PackageManifest =
            toml::from_str(text).map_err(|e| PackageError::Manifest(e.to_string()))?;
        m.check()?;
        Ok(m)
    }

    /// Reads and checks `dir`'s manifest.
    pub fn read(dir: &Path) -> Result<PackageManifest, PackageError> {
        let path = dir.join(FILE);
        let text = std::fs::read_to_string(&path).map_err(super::io(&path))?;
        PackageManifest::parse(&text)
    }

    fn check(&self) -> Result<(), PackageError> {
        let bad = |m: String| Err(PackageError::Manifest(m));
        if !valid_id(&self.id) {
            return bad(format!(
                "id {:?} must be 1-64 of a-z, 0-9, - and _",
                self.id
            ));
        }
        if self.name.trim().is_empty() {
            return bad("name is empty".into());
        }
        let parts: Vec<&str> = self.version.split('.').collect();
        if parts.len() != 3 || parts.iter().any(|p| p.parse::<u64>().is_err()) {
            return bad(format!(
                "version {:?} must be major.minor.patch",
                self.version
            ));
        }
        if !inside(Path::new(&self.executable)) {
            return bad(format!(
                "executable {:?} must be a path inside the package (no `..`, not absolute)",
                self.executable
            ));
        }
        for (name, s) in &self.settings {
            if !s.kind.admits(&s.default) {
                return bad(format!(
                    "setting {name}: its default {} is not a {:?}",
                    s.default, s.kind
                ));
            }
        }
        for filter in self
            .permissions
            .publish
            .iter()
            .chain(&self.permissions.subscribe)
        {
            iglu_bus::topic::validate_filter(filter).map_err(|e| {
                PackageError::Manifest(format!("permission filter {filter:?}: {e}"))
            })?;
        }
        Ok(())
    }
}
