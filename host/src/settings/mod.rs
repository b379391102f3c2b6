//! Plugins' settings: a value for each name, from three layers, the later
//! over the earlier:
//!
//! 1. the defaults of the package's settings schema (its manifest);
//! 2. the host config's `[settings.<plugin>]` table;
//! 3. `iglu settings set <plugin> <key> <value>` at run time, kept in
//!    `<data_dir>/settings.json` (so it outlives the host) until
//!    `iglu settings unset`.
//!
//! Every value is checked before a plugin can see it: against the schema's
//! type where there is a schema (an unknown name is refused too), else
//! against the type of the value it replaces. A plugin gets its settings as
//! JSON in `IGLU_SETTINGS` at every start, and each change as an event on
//! `$iglu/plugins/<id>/settings` (the whole new set), queued for it alone.

mod file;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use serde_json::{Map, Value as Json};

use crate::package::manifest::{Setting, SettingKind};

/// The environment variable a plugin reads its settings from (JSON).
pub const ENV: &str = "IGLU_SETTINGS";

/// The topic a plugin's settings changes arrive on.
pub fn topic(plugin: &str) -> String {
    format!("$iglu/plugins/{plugin}/settings")
}

/// Why a setting was refused.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The value does not fit the setting.
    #[error("{0}")]
    Invalid(String),
    /// The runtime layer could not be written (the change is not made).
    #[error("cannot keep the settings in {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The runtime layer on disk is not valid JSON of settings.
    #[error("{}: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// One setting as `iglu settings get` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Shown {
    /// Its value in force.
    pub value: Json,
    /// Which layer it comes from: `default`, `config` or `runtime`.
    pub source: &'static str,
    /// Its type in the schema, if there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<SettingKind>,
    /// The schema's words for people.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
}

#[derive(Default)]
struct Layers {
    schema: BTreeMap<String, BTreeMap<String, Setting>>,
    config: BTreeMap<String, Map<String, Json>>,
    runtime: BTreeMap<String, Map<String, Json>>,
}

/// Every plugin's settings.
pub struct Settings {
    layers: Mutex<Layers>,
    /// Held while the run-time layer is written, so the file is never
    /// written by two changes at once, in the wrong order; readers take
    /// only `layers`, for a moment, never across the disk's sync.
    writing: Mutex<()>,
    file: Option<PathBuf>,
}

impl Settings {
    /// Settings with the config's layer, and the runtime layer read from
    /// `file` (none yet is fine; `None`: kept in memory only, for tests).
    pub fn load(
        config: &BTreeMap<String, toml::Table>,
        file: Option<PathBuf>,
    ) -> Result<Settings, SettingsError> {
        let mut layers = Layers::default();
        for (plugin, table) in config {
            let json = toml_to_json(&toml::Value::Table(table.clone()));
            if let Json::Object(map) = json {
                layers.config.insert(plugin.clone(), map);
            }
        }
        if let Some(path) = &file {
            layers.runtime = file::read(path)?;
        }
        Ok(Settings {
            layers: Mutex::new(layers),
            writing: Mutex::new(()),
            file,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Layers> {
        self.layers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Gives plugin `id` the schema of its package (or none).
    pub fn set_schema(&self, id: &str, schema: Option<&BTreeMap<String, Setting>>) {
        let mut layers = self.lock();
        match schema {
            Some(s) => layers.schema.insert(id.to_owned(), s.clone()),
            None => layers.schema.remove(id),
        };
    }

    /// Checks that the config's values for `id` fit its schema; the reason if not.
    pub fn check_config(&self, id: &str) -> Result<(), SettingsError> {
        let layers = self.lock();
        if let Some(values) = layers.config.get(id) {
            for (key, value) in values {
                check(&layers, id, key, value, "the host config")?;
            }
        }
        Ok(())
    }

    /// Whether the config's and the run-time values for `id` would fit
    /// `schema` (a package about to be installed or upgraded to).
    pub fn fits(&self, id: &str, schema: &BTreeMap<String, Setting>) -> Result<(), SettingsError> {
        let layers = self.lock();
        let mut trial = Layers::default();
        trial.schema.insert(id.to_owned(), schema.clone());
        for (layer, what) in [
            (&layers.config, "the host config"),
            (&layers.runtime, "iglu settings set"),
        ] {
            for (key, value) in layer.get(id).into_iter().flatten() {
                check(&trial, id, key, value, what)?;
            }
        }
        Ok(())
    }

    /// The settings of `id` in force, as one JSON object.
    pub fn effective(&self, id: &str) -> Map<String, Json> {
        self.shown(id)
            .into_iter()
            .map(|(k, s)| (k, s.value))
            .collect()
    }

    /// The settings of `id` in force, each with where it comes from.
    pub fn shown(&self, id: &str) -> BTreeMap<String, Shown> {
        let layers = self.lock();
        let mut out = BTreeMap::new();
        let schema = layers.schema.get(id);
        for (key, s) in schema.into_iter().flatten() {
            out.insert(
                key.clone(),
                Shown {
                    value: toml_to_json(&s.default),
                    source: "default",
                    kind: Some(s.kind),
                    description: s.description.clone(),
                },
            );
        }
        for (layer, source) in [(&layers.config, "config"), (&layers.runtime, "runtime")] {
            for (key, value) in layer.get(id).into_iter().flatten() {
                let entry = out.entry(key.clone()).or_insert_with(|| Shown {
                    value: Json::Null,
                    source,
                    kind: None,
                    description: String::new(),
                });
                entry.value = value.clone();
                entry.source = source;
            }
        }
        out
    }

    /// Sets `key` of plugin `id` at run time, once checked and kept on disk.
    pub fn set(&self, id: &str, key: &str, value: Json) -> Result<(), SettingsError> {
        self.change(|layers, runtime| {
            check(layers, id, key, &value, "the value")?;
            runtime
                .entry(id.to_owned())
                .or_default()
                .insert(key.to_owned(), value);
            Ok(true)
        })
        .map(|_| ())
    }

    /// Drops the run-time value of `key` (the config's or the default is
    /// in force again); false if there was none.
    pub fn unset(&self, id: &str, key: &str) -> Result<bool, SettingsError> {
        self.change(|_, runtime| {
            let removed = runtime.get_mut(id).and_then(|m| m.remove(key)).is_some();
            runtime.retain(|_, m| !m.is_empty());
            Ok(removed)
        })
    }

    /// Forgets the run-time values of `id` (it was uninstalled with `--purge`).
    pub fn purge(&self, id: &str) -> Result<(), SettingsError> {
        self.change(|_, runtime| Ok(runtime.remove(id).is_some()))
            .map(|_| ())
    }

    /// Changes the run-time layer with `edit` (which says whether it
    /// changed anything): on a copy, written to disk, then put in force.
    fn change(
        &self,
        edit: impl FnOnce(
            &Layers,
            &mut BTreeMap<String, Map<String, Json>>,
        ) -> Result<bool, SettingsError>,
    ) -> Result<bool, SettingsError> {
        let _writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let mut runtime = {
            let layers = self.lock();
            let mut runtime = layers.runtime.clone();
            if !edit(&layers, &mut runtime)? {
                return Ok(false);
            }
            runtime
        };
        self.keep(&runtime)?;
        std::mem::swap(&mut self.lock().runtime, &mut runtime);
        Ok(true)
    }

    fn keep(&self, runtime: &BTreeMap<String, Map<String, Json>>) -> Result<(), SettingsError> {
        match &self.file {
            Some(path) => file::write(path, runtime),
            None => Ok(()),
        }
    }
}

/// Whether `value` may be `key` of plugin `id`: the schema's type, else the
/// type of the value in force.
fn check(
    layers: &Layers,
    id: &str,
    key: &str,
    value: &Json,
    what: &str,
) -> Result<(), SettingsError> {
    let invalid = |m: String| Err(SettingsError::Invalid(m));
    if let Some(schema) = layers.schema.get(id) {
        let Some(setting) = schema.get(key) else {
            let names: Vec<&str> = schema.keys().map(String::as_str).collect();
            return invalid(format!(
                "plugin {id} has no setting named {key:?} (its settings: {})",
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            ));
        };
        if !admits(setting.kind, value) {
            return invalid(format!(
                "{what} {value} for setting {key:?} of plugin {id} is not {}",
                kind_words(setting.kind)
            ));
        }
        return Ok(());
    }
    let before = layers
        .runtime
        .get(id)
        .and_then(|m| m.get(key))
        .or_else(|| layers.config.get(id).and_then(|m| m.get(key)));
    match before {
        Some(old) if !same_kind(old, value) => invalid(format!(
            "{what} {value} for setting {key:?} of plugin {id} is not of the type of its value {old}"
        )),
        _ => Ok(()),
    }
}

/// Whether a JSON value is of the schema's type (an integer is a float too).
pub fn admits(kind: SettingKind, value: &Json) -> bool {
    match kind {
        SettingKind::String => value.is_string(),
        SettingKind::Integer => value.is_i64() || value.is_u64(),
        SettingKind::Float => value.is_number(),
        SettingKind::Boolean => value.is_boolean(),
        SettingKind::Array => value.is_array(),
    }
}

fn kind_words(kind: SettingKind) -> &'static str {
    match kind {
        SettingKind::String => "a string",
        SettingKind::Integer => "an integer",
        SettingKind::Float => "a number",
        SettingKind::Boolean => "true or false",
        SettingKind::Array => "an array",
    }
}

fn same_kind(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => x.is_f64() || !y.is_f64(),
        _ => std::mem::discriminant(a) == std::mem::discriminant(b),
    }
}

/// A TOML value as JSON (dates become strings).
pub fn toml_to_json(value: &toml::Value) -> Json {
    match value {
        toml::Value::String(s) => Json::String(s.clone()),
        toml::Value::Integer(i) => Json::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        toml::Value::Boolean(b) => Json::Bool(*b),
        toml::Value::Datetime(d) => Json::String(d.to_string()),
        toml::Value::Array(a) => Json::Array(a.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => Json::Object(
            t.iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> BTreeMap<String, Setting> {
        let mut s = BTreeMap::new();
        s.insert(
            "rooms".to_owned(),
            Setting {
                kind: SettingKind::Integer,
                default: toml::Value::Integer(2),
                description: "how many".into(),
            },
        );
        s
    }

    #[test]
    fn layers_apply_in_order_and_values_are_checked() {
        let mut config = BTreeMap::new();
        let mut t = toml::Table::new();
        t.insert("rooms".into(), toml::Value::Integer(3));
        config.insert("p".to_owned(), t.clone());
        config.insert("q".to_owned(), t);
        let s = Settings::load(&config, None).unwrap_or_else(|e| panic!("{e}"));
        s.set_schema("p", Some(&schema()));
        assert_eq!(s.effective("p")["rooms"], Json::from(3));
        assert!(s.set("p", "rooms", Json::from("four")).is_err());
        assert!(s.set("p", "colour", Json::from(1)).is_err());
        s.set("p", "rooms", Json::from(4))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.shown("p")["rooms"].source, "runtime");
        assert!(s.unset("p", "rooms").unwrap_or(false));
        assert_eq!(s.effective("p")["rooms"], Json::from(3));
        // No schema: the type of the value in force.
        assert!(s.set("q", "rooms", Json::from(true)).is_err());
        assert!(s.set("q", "anything", Json::from(true)).is_ok());
    }
}
