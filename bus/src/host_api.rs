//! The host API's arguments and results, defined once for the host, the
//! SDK and any Rust plugin: what a plugin sends in a CALL to the host, and
//! what comes back (the documents inside `args` and `result`, section 9 of
//! `docs/PROTOCOL.md`). Adding a host method is a name here, its types here,
//! and one arm in the host's `host_api::handle`.

use serde::{Deserialize, Serialize};

/// The method names the host serves.
pub mod method {
    /// `()` -> [`super::HostInfo`].
    pub const HOST_INFO: &str = "host.info";
    /// [`super::Key`] -> [`super::MaybeValue`].
    pub const KV_GET: &str = "kv.get";
    /// [`super::KeyValue`] -> `true`.
    pub const KV_SET: &str = "kv.set";
    /// [`super::Key`] -> [`super::Existed`].
    pub const KV_DELETE: &str = "kv.delete";
    /// [`super::Publish`] -> `true`.
    pub const EVENTS_PUBLISH: &str = "events.publish";
    /// [`super::Filters`] -> `true`.
    pub const EVENTS_SUBSCRIBE: &str = "events.subscribe";
    /// [`super::Filters`] -> how many were removed (uint).
    pub const EVENTS_UNSUBSCRIBE: &str = "events.unsubscribe";
    /// [`super::PluginCall`] -> the callee's result, as it answered.
    pub const PLUGINS_CALL: &str = "plugins.call";
    /// Every name above, for the host's "no such method" answer.
    pub const ALL: [&str; 8] = [
        HOST_INFO,
        KV_GET,
        KV_SET,
        KV_DELETE,
        EVENTS_PUBLISH,
        EVENTS_SUBSCRIBE,
        EVENTS_UNSUBSCRIBE,
        PLUGINS_CALL,
    ];
}

/// `plugins.call`: a call to another plugin's method, through the host.
/// The CALL's own deadline is the forwarded call's; a CANCEL of it cancels
/// the forwarded call; the callee's answer (result or error, with its own
/// code) comes back as the answer to this CALL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginCall {
    /// The callee's id.
    pub plugin: String,
    /// Its method.
    pub method: String,
    /// The arguments, one MessagePack document.
    #[serde(with = "serde_bytes")]
    pub args: Vec<u8>,
    /// Wait (within the deadline) for a callee that is starting or
    /// restarting; absent: the host's `call_wait_for_running`.
    #[serde(default)]
    pub wait_for_running: Option<bool>,
    /// For a typed call: the interface the caller was built against; the
    /// host answers `not_implemented` or `incompatible` without calling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<crate::interface::InterfaceRef>,
}

/// The result of `host.info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInfo {
    /// Host program name.
    pub name: String,
    /// Host program version.
    pub version: String,
    /// Negotiated protocol version.
    pub protocol: u32,
    /// The calling plugin's id.
    pub plugin_id: String,
}

/// One key of the calling plugin's store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    /// 1-256 bytes.
    pub key: String,
}

/// A key and the value to store under it (any MessagePack document).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyValue<V> {
    /// 1-256 bytes.
    pub key: String,
    /// The value.
    pub value: V,
}

/// The result of `kv.get`: the value, or nil if the key is unset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaybeValue<V> {
    /// The stored value.
    pub value: Option<V>,
}

/// The result of `kv.delete`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Existed {
    /// Whether the key was set.
    pub existed: bool,
}

/// An event to publish: `payload` is one whole MessagePack document, in a bin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publish {
    /// The topic (no wildcards; not under `$`).
    pub topic: String,
    /// The payload document.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// Keep it as the topic's retained state.
    #[serde(default)]
    pub retain: bool,
}

/// Subscription filters (MQTT `+` and `#`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filters {
    /// The filters.
    pub filters: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documents of PROTOCOL.md section 9, as the host reads them.
    #[test]
    fn arguments_are_the_maps_the_protocol_names() {
        let publish = Publish {
            topic: "home/x".into(),
            payload: vec![0x01],
            retain: true,
        };
        let bytes = rmp_serde::to_vec_named(&publish).expect("encodes");
        let map: rmpv::Value = rmpv::decode::read_value(&mut &bytes[..]).expect("msgpack");
        let keys: Vec<String> = map
            .as_map()
            .expect("a map")
            .iter()
            .filter_map(|(k, _)| k.as_str().map(str::to_owned))
            .collect();
        assert_eq!(keys, ["topic", "payload", "retain"]);
        assert!(map.as_map().expect("map")[1].1.is_bin(), "payload is a bin");
        #[derive(Serialize)]
        struct NoRetain<'a> {
            topic: &'a str,
            #[serde(with = "serde_bytes")]
            payload: &'a [u8],
        }
        let without_retain = rmp_serde::to_vec_named(&NoRetain {
            topic: "t",
            payload: &[0xc0],
        })
        .expect("encodes");
        let back: Publish = rmp_serde::from_slice(&without_retain).expect("retain defaults");
        assert!(!back.retain);
    }
}
