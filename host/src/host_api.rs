//! Methods a plugin can call on the host.
//!
//! Adding one means one arm in [`handle`] and, if it takes arguments, one
//! argument type. All of them are quick in-memory operations, so the router
//! answers them inline.

use bytes::Bytes;
use iglu_bus::{ErrorCode, WireError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::kv::KvStore;

/// What a host-API call may touch.
pub struct HostApi<'a> {
    /// The calling plugin: every call acts on its own data only.
    pub plugin: &'a str,
    /// The protocol version of its session.
    pub protocol: u32,
    /// The key-value stores.
    pub kv: &'a KvStore,
}

#[derive(Serialize)]
struct Info<'a> {
    name: &'static str,
    version: &'static str,
    protocol: u32,
    plugin_id: &'a str,
}

#[derive(Deserialize)]
struct Key {
    key: String,
}

#[derive(Deserialize)]
struct KeyValue {
    key: String,
    value: rmpv::Value,
}

#[derive(Serialize)]
struct MaybeValue {
    value: Option<rmpv::Value>,
}

#[derive(Serialize)]
struct Existed {
    existed: bool,
}

/// Serves one call; the result is a MessagePack document.
pub fn handle(api: &HostApi<'_>, method: &str, args: &[u8]) -> Result<Bytes, WireError> {
    match method {
        "host.info" => encode(&Info {
            name: "iglu",
            version: env!("CARGO_PKG_VERSION"),
            protocol: api.protocol,
            plugin_id: api.plugin,
        }),
        "kv.get" => {
            let Key { key } = decode(args)?;
            let value = match api.kv.get(api.plugin, &key) {
                Some(bytes) => Some(
                    rmpv::decode::read_value(&mut &bytes[..])
                        .map_err(|e| WireError::new(ErrorCode::Internal, e.to_string()))?,
                ),
                None => None,
            };
            encode(&MaybeValue { value })
        }
        "kv.set" => {
            let KeyValue { key, value } = decode(args)?;
            let mut bytes = Vec::new();
            rmpv::encode::write_value(&mut bytes, &value)
                .map_err(|e| WireError::new(ErrorCode::Internal, e.to_string()))?;
            api.kv
                .set(api.plugin, &key, Bytes::from(bytes))
                .map_err(|e| WireError::new(ErrorCode::BadArguments, e.to_string()))?;
            encode(&true)
        }
        "kv.delete" => {
            let Key { key } = decode(args)?;
            encode(&Existed {
                existed: api.kv.delete(api.plugin, &key),
            })
        }
        other => Err(WireError::new(
            ErrorCode::MethodNotFound,
            format!(
                "the host has no method {other:?} (it serves host.info, kv.get, kv.set, kv.delete)"
            ),
        )),
    }
}

fn decode<T: DeserializeOwned>(args: &[u8]) -> Result<T, WireError> {
    rmp_serde::from_slice(args)
        .map_err(|e| WireError::new(ErrorCode::BadArguments, format!("bad arguments: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Result<Bytes, WireError> {
    rmp_serde::to_vec_named(value)
        .map(Bytes::from)
        .map_err(|e| WireError::new(ErrorCode::Internal, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_round_trip_through_the_api() {
        let kv = KvStore::default();
        let api = HostApi {
            plugin: "p",
            protocol: 1,
            kv: &kv,
        };
        let set = rmp_serde::to_vec_named(&serde_json::json!({"key": "k", "value": [1, "x"]}))
            .expect("encodes");
        handle(&api, "kv.set", &set).expect("set");
        let get = rmp_serde::to_vec_named(&serde_json::json!({"key": "k"})).expect("encodes");
        let out = handle(&api, "kv.get", &get).expect("get");
        let v: serde_json::Value = rmp_serde::from_slice(&out).expect("decodes");
        assert_eq!(v, serde_json::json!({"value": [1, "x"]}));
        assert_eq!(
            handle(&api, "nope", &[]).expect_err("unknown").code,
            ErrorCode::MethodNotFound
        );
        assert_eq!(
            handle(&api, "kv.get", &[0xc1]).expect_err("garbage").code,
            ErrorCode::BadArguments
        );
    }
}
