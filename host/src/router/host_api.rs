//! Methods a plugin can call on the host.
//!
//! Adding one means one arm in [`handle`] and, if it takes arguments, one
//! argument type. All of them are quick in-memory operations (publishing
//! only queues), so the router answers them inline.

use bytes::Bytes;
use iglu_bus::host_api::{method, Existed, Filters, HostInfo, Key, KeyValue, MaybeValue, Publish};
use iglu_bus::{ErrorCode, WireError};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::events::Source;
use crate::shared::Shared;

/// What a host-API call may touch.
pub struct HostApi<'a> {
    /// The host's state.
    pub shared: &'a Shared,
    /// The calling plugin: every call acts on its own data only.
    pub plugin: &'a str,
    /// The protocol version of its session.
    pub protocol: u32,
}

/// Serves one call; the result is a MessagePack document.
pub fn handle(api: &HostApi<'_>, method: &str, args: &[u8]) -> Result<Bytes, WireError> {
    match method {
        method::HOST_INFO => encode(&HostInfo {
            name: "iglu".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            protocol: api.protocol,
            plugin_id: api.plugin.to_owned(),
        }),
        method::KV_GET => {
            let Key { key } = decode(args)?;
            let value = match api.shared.kv.get(api.plugin, &key) {
                Some(bytes) => Some(
                    rmpv::decode::read_value(&mut &bytes[..])
                        .map_err(|e| WireError::new(ErrorCode::Internal, e.to_string()))?,
                ),
                None => None,
            };
            encode(&MaybeValue { value })
        }
        method::KV_SET => {
            let KeyValue::<rmpv::Value> { key, value } = decode(args)?;
            let mut bytes = Vec::new();
            rmpv::encode::write_value(&mut bytes, &value)
                .map_err(|e| WireError::new(ErrorCode::Internal, e.to_string()))?;
            api.shared
                .kv
                .set(api.plugin, &key, Bytes::from(bytes))
                .map_err(|e| WireError::new(ErrorCode::BadArguments, e.to_string()))?;
            encode(&true)
        }
        method::KV_DELETE => {
            let Key { key } = decode(args)?;
            encode(&Existed {
                existed: api.shared.kv.delete(api.plugin, &key),
            })
        }
        method::EVENTS_PUBLISH => {
            let p: Publish = decode(args)?;
            let source = Source::Plugin(api.plugin.to_owned());
            api.shared
                .events
                .publish(source, &p.topic, Bytes::from(p.payload), p.retain)?;
            encode(&true)
        }
        method::EVENTS_SUBSCRIBE => {
            let Filters { filters } = decode(args)?;
            api.shared.events.subscribe(api.plugin, &filters)?;
            encode(&true)
        }
        method::EVENTS_UNSUBSCRIBE => {
            let Filters { filters } = decode(args)?;
            encode(&api.shared.events.unsubscribe(api.plugin, &filters))
        }
        other => Err(WireError::new(
            ErrorCode::MethodNotFound,
            format!(
                "the host has no method {other:?} (it serves {})",
                method::ALL.join(", ")
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
