//! `iglu kv`: a plugin's store from the command line, against the running
//! host: values as JSON (like `iglu call`'s arguments), writes as durable
//! as a plugin's own, and export/import of one plugin's store or of the
//! whole store for backups.
//!
//! An export is a JSON object: one plugin's is `{key: value, ...}`; the
//! whole store's is `{"plugins": {id: {key: value, ...}, ...}}`. Binary
//! values come out as arrays of bytes (JSON has no binary), and go back
//! in as such arrays.

use std::path::PathBuf;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value as Json};

use super::{json_text, Response};
use crate::json_msgpack;
use crate::shared::Shared;
use crate::store::{Done, Op, StoreError};

/// Keys one `list` answers with at most (`--limit`).
const LIST_DEFAULT: usize = 100;

/// `iglu kv ...`, as the CLI parses it.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum KvCommand {
    /// Print a key's value (JSON); fails if it is unset.
    Get {
        /// The plugin whose store it is.
        plugin: String,
        /// The key.
        key: String,
    },
    /// Set a key to a JSON value (stored as MessagePack, like a plugin's own).
    Set {
        /// The plugin.
        plugin: String,
        /// The key.
        key: String,
        /// The value, as JSON.
        #[arg(value_parser = json_text)]
        value: Box<RawValue>,
    },
    /// Remove a key.
    Delete {
        /// The plugin.
        plugin: String,
        /// The key.
        key: String,
    },
    /// List keys and values, in order, a page at a time.
    List {
        /// The plugin.
        plugin: String,
        /// Only keys starting with this.
        #[arg(long, default_value = "")]
        prefix: String,
        /// Start after this key (the `next` of the page before).
        #[arg(long)]
        after: Option<String>,
        /// Keys per page (at most 1,000).
        #[arg(long, default_value_t = LIST_DEFAULT)]
        limit: usize,
    },
    /// Print a plugin's store, or with `--all` the whole store, as JSON.
    Export {
        /// The plugin (or `--all`).
        #[arg(required_unless_present = "all")]
        plugin: Option<String>,
        /// Every plugin's store: `{"plugins": {id: {key: value}}}`.
        #[arg(long, conflicts_with = "plugin")]
        all: bool,
    },
    /// Write an export back: `iglu kv import <plugin> FILE` into a plugin's
    /// store, or `iglu kv import --all FILE` into every plugin's store the
    /// file names.
    Import {
        /// `<plugin> FILE`, or with `--all` just `FILE` (JSON).
        #[arg(num_args = 1..=2, required = true, value_name = "PLUGIN FILE")]
        args: Vec<String>,
        /// The file holds the whole store (`iglu kv export --all`).
        #[arg(long)]
        all: bool,
        /// Remove the keys the file does not have (restore exactly).
        #[arg(long)]
        replace: bool,
    },
}

/// `kv` on the control socket: the same, with an import's data inline.
/// Read it with [`KvRequest::from_json`] (it carries JSON text, which
/// serde's tagged enums cannot read back).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum KvRequest {
    /// See [`KvCommand::Get`].
    Get(KeyOf),
    /// See [`KvCommand::Set`].
    Set(SetOf),
    /// See [`KvCommand::Delete`].
    Delete(KeyOf),
    /// See [`KvCommand::List`].
    List(ListOf),
    /// See [`KvCommand::Export`]; no plugin: the whole store.
    Export(ExportOf),
    /// See [`KvCommand::Import`]; no plugin: `data` is the whole store's.
    Import(ImportOf),
}

/// A plugin and one of its keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyOf {
    /// The plugin.
    pub plugin: String,
    /// The key.
    pub key: String,
}

/// A key to set.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetOf {
    /// The plugin.
    pub plugin: String,
    /// The key.
    pub key: String,
    /// The value, JSON text.
    pub value: Box<RawValue>,
}

/// A page to list.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListOf {
    /// The plugin.
    pub plugin: String,
    /// Key prefix.
    #[serde(default)]
    pub prefix: String,
    /// After this key.
    #[serde(default)]
    pub after: Option<String>,
    /// Page size.
    #[serde(default)]
    pub limit: Option<usize>,
}

/// What to export.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportOf {
    /// The plugin; none: every plugin.
    #[serde(default)]
    pub plugin: Option<String>,
}

/// What to import.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportOf {
    /// The plugin; none: `data` is the whole store's.
    #[serde(default)]
    pub plugin: Option<String>,
    /// The export, JSON text.
    pub data: Box<RawValue>,
    /// Remove keys not in it.
    #[serde(default)]
    pub replace: bool,
}

impl KvRequest {
    /// Reads a `kv` request line: its `op`, then that operation's fields.
    pub fn from_json(text: &str) -> Result<KvRequest, serde_json::Error> {
        #[derive(Deserialize)]
        struct Tag {
            op: String,
        }
        let tag: Tag = serde_json::from_str(text)?;
        Ok(match tag.op.as_str() {
            "get" => KvRequest::Get(serde_json::from_str(text)?),
            "set" => KvRequest::Set(serde_json::from_str(text)?),
            "delete" => KvRequest::Delete(serde_json::from_str(text)?),
            "list" => KvRequest::List(serde_json::from_str(text)?),
            "export" => KvRequest::Export(serde_json::from_str(text)?),
            "import" => KvRequest::Import(serde_json::from_str(text)?),
            other => {
                return Err(serde::de::Error::custom(format!(
                    "unknown kv op {other:?} (get, set, delete, list, export, import)"
                )))
            }
        })
    }
}

impl KvCommand {
    /// The request it stands for (an import's file read here, by the CLI).
    pub fn into_request(self) -> std::io::Result<KvRequest> {
        Ok(match self {
            KvCommand::Get { plugin, key } => KvRequest::Get(KeyOf { plugin, key }),
            KvCommand::Set { plugin, key, value } => KvRequest::Set(SetOf { plugin, key, value }),
            KvCommand::Delete { plugin, key } => KvRequest::Delete(KeyOf { plugin, key }),
            KvCommand::List {
                plugin,
                prefix,
                after,
                limit,
            } => KvRequest::List(ListOf {
                plugin,
                prefix,
                after,
                limit: Some(limit),
            }),
            KvCommand::Export { plugin, all } => KvRequest::Export(ExportOf {
                plugin: if all { None } else { plugin },
            }),
            KvCommand::Import { args, all, replace } => {
                let (plugin, file) = match (all, &args[..]) {
                    (true, [file]) => (None, PathBuf::from(file)),
                    (false, [plugin, file]) => (Some(plugin.clone()), PathBuf::from(file)),
                    _ => {
                        return Err(std::io::Error::other(
                            "give `<plugin> FILE`, or `--all FILE` for the whole store",
                        ))
                    }
                };
                let text = std::fs::read_to_string(&file)?;
                let data = json_text(&text)
                    .map_err(|e| std::io::Error::other(format!("{}: {e}", file.display())))?;
                KvRequest::Import(ImportOf {
                    plugin,
                    data,
                    replace,
                })
            }
        })
    }
}

fn failed(e: StoreError) -> Response {
    let wire = e.to_wire();
    Response::err(wire.code.as_str(), wire.message)
}

fn json_of(bytes: &[u8]) -> Json {
    json_msgpack::to_json(bytes).unwrap_or_else(|e| json!(format!("<undecodable: {e}>")))
}

/// Serves one `kv` request.
pub async fn handle(shared: &Shared, request: KvRequest) -> Response {
    let store = &shared.store;
    match request {
        KvRequest::Get(KeyOf { plugin, key }) => match store.get(&plugin, &key) {
            Some(value) => Response::ok(json_of(&value)),
            None => Response::err(
                "not_found",
                format!("plugin {plugin}'s store has no key {key:?}"),
            ),
        },
        KvRequest::Set(SetOf { plugin, key, value }) => {
            let value = match json_msgpack::text_to_msgpack(value.get()) {
                Ok(v) => Bytes::from(v),
                Err(e) => return Response::err("bad_arguments", e.to_string()),
            };
            let quota = shared.quota(&plugin);
            match store
                .write(&plugin, quota, vec![Op::Set { key, value }])
                .await
            {
                Ok(_) => Response::ok(json!("stored")),
                Err(e) => failed(e),
            }
        }
        KvRequest::Delete(KeyOf { plugin, key }) => {
            let quota = shared.quota(&plugin);
            match store.write(&plugin, quota, vec![Op::Delete { key }]).await {
                Ok(done) => {
                    Response::ok(json!({"existed": done.first() == Some(&Done::Deleted(true))}))
                }
                Err(e) => failed(e),
            }
        }
        KvRequest::List(ListOf {
            plugin,
            prefix,
            after,
            limit,
        }) => {
            let page = store.list(
                &plugin,
                &prefix,
                after.as_deref(),
                limit.unwrap_or(LIST_DEFAULT),
                shared.config.max_message_bytes / 2,
            );
            let entries: Vec<Json> = page
                .entries
                .iter()
                .map(|(k, v)| json!({"key": k, "value": json_of(v)}))
                .collect();
            Response::ok(json!({"entries": entries, "next": page.next}))
        }
        KvRequest::Export(ExportOf {
            plugin: Some(plugin),
        }) => Response::ok(export_one(shared, &plugin)),
        KvRequest::Export(ExportOf { plugin: None }) => {
            let mut plugins = Map::new();
            for id in store.plugins() {
                let one = export_one(shared, &id);
                plugins.insert(id, one);
            }
            Response::ok(json!({"plugins": plugins}))
        }
        KvRequest::Import(ImportOf {
            plugin,
            data,
            replace,
        }) => {
            let data: Json = match serde_json::from_str(data.get()) {
                Ok(d) => d,
                Err(e) => return Response::err("bad_arguments", format!("not JSON: {e}")),
            };
            let targets: Vec<(String, Json)> = match (plugin, data) {
                (Some(plugin), data) => vec![(plugin, data)],
                (None, Json::Object(mut whole)) => match whole.remove("plugins") {
                    Some(Json::Object(plugins)) => plugins.into_iter().collect(),
                    _ => {
                        return Response::err(
                            "bad_arguments",
                            "a whole-store import is {\"plugins\": {id: {key: value}}} (iglu kv export --all)",
                        )
                    }
                },
                (None, _) => return Response::err("bad_arguments", "the import is not a JSON object"),
            };
            let mut imported = Map::new();
            for (plugin, entries) in targets {
                match import_one(shared, &plugin, entries, replace).await {
                    Ok(n) => {
                        imported.insert(plugin, json!(n));
                    }
                    Err(response) => return response,
                }
            }
            Response::ok(json!({"imported": imported}))
        }
    }
}

/// One plugin's store as `{key: value}`.
fn export_one(shared: &Shared, plugin: &str) -> Json {
    let mut out = Map::new();
    let mut after: Option<String> = None;
    loop {
        let page = shared.store.list(
            plugin,
            "",
            after.as_deref(),
            crate::store::MAX_PAGE,
            usize::MAX,
        );
        for (k, v) in &page.entries {
            out.insert(k.clone(), json_of(v));
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    Json::Object(out)
}

/// Writes `{key: value}` into `plugin`'s store in one commit.
async fn import_one(
    shared: &Shared,
    plugin: &str,
    entries: Json,
    replace: bool,
) -> Result<usize, Response> {
    let Json::Object(entries) = entries else {
        return Err(Response::err(
            "bad_arguments",
            format!("the import for {plugin} is not a JSON object of keys"),
        ));
    };
    let mut ops = Vec::with_capacity(entries.len() + 1);
    if replace {
        ops.push(Op::Clear);
    }
    let count = entries.len();
    for (key, value) in entries {
        let value = json_msgpack::to_msgpack(&value)
            .map_err(|e| Response::err("bad_arguments", format!("{plugin}/{key}: {e}")))?;
        ops.push(Op::Set {
            key,
            value: Bytes::from(value),
        });
    }
    let quota = shared.quota(plugin);
    shared
        .store
        .write(plugin, quota, ops)
        .await
        .map(|_| count)
        .map_err(failed)
}
