//! A plugin's record re-emitted through the host's `tracing`, as if the
//! plugin's own code had logged it in the host: at its own level, under its
//! own target, with its own fields (and `plugin`, `stream`), so that
//! `RUST_LOG=warn` keeps a plugin's warnings and `RUST_LOG=info,garage=debug`
//! one plugin's debug lines.
//!
//! `tracing`'s macros want all of that known at compile time; a plugin's is
//! known when its line arrives. So each (level, target, field names) gets a
//! callsite of its own, made once and kept (leaked: callsites live for the
//! program), at most [`MAX_SITES`] of them; past that, lines go through one
//! fixed callsite with their fields as text.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use tracing_core::callsite::{Callsite, Identifier};
use tracing_core::field::{FieldSet, Value};
use tracing_core::metadata::Kind;
use tracing_core::{Event, Interest, Metadata};

use super::record::{Level, Record};

/// Callsites made at most: a plugin's distinct targets and field sets are
/// a handful each; this bounds what plugins inventing new field names
/// could make the host keep.
pub const MAX_SITES: usize = 1024;

/// Callsites one plugin may have made: one plugin inventing names cannot
/// take the others' share.
pub const MAX_SITES_PER_PLUGIN: usize = 64;

/// Longest target given a callsite of its own.
const MAX_TARGET: usize = 128;

/// Fields every re-emitted record has before its own.
const OWN: [&str; 3] = ["message", "plugin", "stream"];

struct Site {
    meta: OnceLock<Metadata<'static>>,
}

static FALLBACK: Site = Site {
    meta: OnceLock::new(),
};

impl Callsite for Site {
    fn set_interest(&self, _: Interest) {}

    fn metadata(&self) -> &Metadata<'_> {
        self.meta.get_or_init(|| {
            // Only FALLBACK gets here (the others are set before registering).
            Metadata::new(
                "plugin log",
                "iglu::plugin",
                tracing_core::Level::INFO,
                None,
                None,
                None,
                FieldSet::new(
                    &["message", "plugin", "stream", "fields"],
                    Identifier(&FALLBACK),
                ),
                Kind::EVENT,
            )
        })
    }
}

type Key = (Level, String, Vec<String>);

#[derive(Default)]
struct Sites {
    by_key: HashMap<Key, &'static Site>,
    /// Callsites made for each plugin.
    made: HashMap<String, usize>,
}

fn sites() -> &'static Mutex<Sites> {
    static SITES: OnceLock<Mutex<Sites>> = OnceLock::new();
    SITES.get_or_init(Mutex::default)
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

/// The callsite of this shape, made if new and there is room (overall,
/// and in `plugin`'s share).
fn site(plugin: &str, level: Level, target: &str, names: &[&str]) -> Option<&'static Site> {
    if target.len() > MAX_TARGET {
        return None;
    }
    let key = (
        level,
        target.to_owned(),
        names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
    );
    let mut sites = sites().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(s) = sites.by_key.get(&key) {
        return Some(s);
    }
    let made = sites.made.get(plugin).copied().unwrap_or(0);
    if sites.by_key.len() >= MAX_SITES || made >= MAX_SITES_PER_PLUGIN {
        return None;
    }
    sites.made.insert(plugin.to_owned(), made + 1);
    let site: &'static Site = Box::leak(Box::new(Site {
        meta: OnceLock::new(),
    }));
    let names: &'static [&'static str] = Box::leak(
        names
            .iter()
            .map(|n| leak(n))
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    );
    let target = leak(target);
    let _ = site.meta.set(Metadata::new(
        "plugin log",
        target,
        level.tracing(),
        None,
        None,
        Some(target),
        FieldSet::new(names, Identifier(site)),
        Kind::EVENT,
    ));
    tracing_core::callsite::register(site);
    sites.by_key.insert(key, site);
    Some(site)
}

/// Emits `record` of plugin `plugin`, read from `stream`.
pub fn emit(plugin: &str, stream: &str, record: &Record) {
    // Plain lines have no target of their own: they are the plugin's output.
    let target =
        if record.target == "stdout" || record.target == "stderr" || record.target.is_empty() {
            "iglu::plugin"
        } else {
            record.target.as_str()
        };
    let renamed: Vec<String> = record
        .fields
        .iter()
        .map(|(k, _)| {
            if OWN.contains(&k.as_str()) || !valid_name(k) {
                format!("field_{}", sanitize(k))
            } else {
                k.clone()
            }
        })
        .collect();
    let mut names: Vec<&str> = OWN.to_vec();
    names.extend(renamed.iter().map(String::as_str));
    let mut texts: Vec<&str> = vec![record.message.as_str(), plugin, stream];
    texts.extend(record.fields.iter().map(|(_, v)| v.as_str()));
    // Two fields of one name (after renaming) cannot share a field set.
    let unique = {
        let mut seen = std::collections::HashSet::new();
        names.iter().all(|n| seen.insert(*n))
    };
    let made = if unique {
        site(plugin, record.level, target, &names)
    } else {
        None
    };
    match made {
        Some(site) => dispatch(site, &texts),
        None => {
            let fields: Vec<String> = record
                .fields
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let joined = fields.join(" ");
            let texts = [record.message.as_str(), plugin, stream, joined.as_str()];
            dispatch_fallback(record.level, &texts);
        }
    }
}

fn dispatch(site: &'static Site, texts: &[&str]) {
    let meta = site.metadata();
    tracing::dispatcher::get_default(|d| {
        if d.enabled(meta) {
            let values: Vec<Option<&dyn Value>> =
                texts.iter().map(|t| Some(t as &dyn Value)).collect();
            let fields = meta.fields();
            d.event(&Event::new(meta, &fields.value_set_all(&values)));
        }
    });
}

/// The fixed callsite is INFO; other levels go through the macros.
fn dispatch_fallback(level: Level, t: &[&str; 4]) {
    let [message, plugin, stream, fields] = *t;
    match level {
        Level::Error => {
            tracing::error!(target: "iglu::plugin", plugin, stream, fields, "{message}")
        }
        Level::Warn => tracing::warn!(target: "iglu::plugin", plugin, stream, fields, "{message}"),
        Level::Info => {
            static REGISTERED: std::sync::Once = std::sync::Once::new();
            REGISTERED.call_once(|| tracing_core::callsite::register(&FALLBACK));
            dispatch(&FALLBACK, t)
        }
        Level::Debug => {
            tracing::debug!(target: "iglu::plugin", plugin, stream, fields, "{message}")
        }
        Level::Trace => {
            tracing::trace!(target: "iglu::plugin", plugin, stream, fields, "{message}")
        }
    }
}

fn valid_name(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 64
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
}

fn sanitize(k: &str) -> String {
    k.chars()
        .take(56)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
