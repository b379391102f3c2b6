//! The host API, declared once with the same mechanism as any interface
//! (`#[interface(host_api)]`): the host implements the trait [`HostApi`]
//! and dispatches calls with [`HostApiInterface::serve`]; the SDK's host
//! client is the generated [`HostApiClient`]; the argument maps are the
//! structs of [`host_api_args`]. These are the documents inside `args` and
//! `result` of section 9 of `docs/PROTOCOL.md`. Adding a host method is one
//! method here and its implementation in the host.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::error::WireError;
use crate::interface::InterfaceRef;

/// What the host serves to every plugin, on the wire under the names given.
#[iglu_macros::interface(
    name = "iglu.host",
    version = "1.0.0",
    host_api,
    runtime = "crate::interface"
)]
pub trait HostApi {
    /// The host's name and version, the negotiated protocol, the caller's id.
    #[wire = "host.info"]
    fn info(&self) -> Result<HostInfo, WireError>;
    /// A value of the caller's store (1-256 byte keys); nil if unset.
    #[wire = "kv.get"]
    fn kv_get(&self, key: String) -> Result<MaybeValue, WireError>;
    /// The caller's keys starting with `prefix`, in order, after `after`
    /// (exclusive: the `next` of the page before), at most `limit` (default
    /// 100, at most 1,000); `next` is set when there are more.
    #[wire = "kv.list"]
    fn kv_list(
        &self,
        #[serde(default)] prefix: String,
        #[serde(default, skip_serializing_if = "Option::is_none")] after: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")] limit: Option<u32>,
    ) -> Result<KvPage, WireError>;
    /// Stores any MessagePack document under `key` in the caller's store;
    /// answered once it is on disk.
    #[wire = "kv.set"]
    #[routed]
    fn kv_set(&self, key: String, value: rmpv::Value) -> Result<bool, WireError>;
    /// Removes a key of the caller's store; answered once it is on disk.
    #[wire = "kv.delete"]
    #[routed]
    fn kv_delete(&self, key: String) -> Result<Existed, WireError>;
    /// Compare-and-set: sets `key` to `value` (nil or absent: removes it)
    /// only if it holds `expected` now (nil or absent: only if unset).
    /// Answered once on disk, with whether it swapped and, if not, the
    /// current value.
    #[wire = "kv.cas"]
    #[routed]
    fn kv_cas(
        &self,
        key: String,
        #[serde(default)] expected: Option<rmpv::Value>,
        #[serde(default)] value: Option<rmpv::Value>,
    ) -> Result<Swapped, WireError>;
    /// Sets every entry in one commit: all of them, or none (a quota, a bad key).
    #[wire = "kv.set_many"]
    #[routed]
    fn kv_set_many(&self, entries: Vec<KvEntry>) -> Result<bool, WireError>;
    /// Publishes an event: `payload` is one whole MessagePack document in a
    /// bin; `retain` keeps it as the topic's state (no wildcards, not under `$`).
    #[wire = "events.publish"]
    fn events_publish(
        &self,
        topic: String,
        payload: ByteBuf,
        #[serde(default)] retain: bool,
    ) -> Result<bool, WireError>;
    /// Adds subscriptions (MQTT `+` and `#`); matching retained state comes first.
    #[wire = "events.subscribe"]
    fn events_subscribe(&self, filters: Vec<String>) -> Result<bool, WireError>;
    /// Removes subscriptions; how many were removed.
    #[wire = "events.unsubscribe"]
    fn events_unsubscribe(&self, filters: Vec<String>) -> Result<u64, WireError>;
    /// A call to another plugin's method, through the host. The CALL's own
    /// deadline is the forwarded call's; a CANCEL of it cancels the
    /// forwarded call; the callee's answer (result or error, with its own
    /// code) comes back as the answer. `wait_for_running` waits (within the
    /// deadline) for a callee that is starting or restarting (absent: the
    /// host's `call_wait_for_running`); `interface`, for a typed call, is
    /// what the caller was built against, checked before forwarding.
    #[wire = "plugins.call"]
    #[raw]
    fn plugins_call(
        &self,
        plugin: String,
        method: String,
        args: ByteBuf,
        #[serde(default)] wait_for_running: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")] interface: Option<InterfaceRef>,
    ) -> Result<ByteBuf, WireError>;
    /// The plugin's own word on its health, shown by `iglu status`: a
    /// short `state` (`connected`, `reconnecting`), a line of `detail` for
    /// people and a small map of `facts` (counters, an address). Each
    /// report replaces the last; the session's end forgets it. Always
    /// allowed; at most [`MAX_STATUS_REPORT_BYTES`] of arguments.
    #[wire = "status.report"]
    fn status_report(
        &self,
        state: String,
        #[serde(default)] detail: String,
        #[serde(default, skip_serializing_if = "Option::is_none")] facts: Option<rmpv::Value>,
    ) -> Result<bool, WireError>;
}

/// The largest `status.report` (its encoded arguments): room for a state,
/// a sentence and a few dozen counters, not a log.
pub const MAX_STATUS_REPORT_BYTES: usize = 4096;

/// One key and its value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KvEntry<V = rmpv::Value> {
    /// The key.
    pub key: String,
    /// Its value.
    pub value: V,
}

/// A page of `kv.list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KvPage<V = rmpv::Value> {
    /// Entries in key order.
    pub entries: Vec<KvEntry<V>>,
    /// Pass as `after` for the next page; absent on the last.
    pub next: Option<String>,
}

/// The result of `kv.cas`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Swapped<V = rmpv::Value> {
    /// It held `expected` and now holds `value`.
    pub swapped: bool,
    /// When it did not swap: what it holds (nil if unset).
    pub current: Option<V>,
}

/// The arguments of `plugins.call`, as the router reads them.
pub type PluginCall = host_api_args::PluginsCall;

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

/// The result of `kv.get`: the value, or nil if the key is unset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaybeValue<V = rmpv::Value> {
    /// The stored value.
    pub value: Option<V>,
}

/// The result of `kv.delete`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Existed {
    /// Whether the key was set.
    pub existed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interface::{decode_args, encode_result};

    /// The documents of PROTOCOL.md section 9, as the host reads them.
    #[test]
    fn arguments_are_the_maps_the_protocol_names() {
        let publish = host_api_args::EventsPublish {
            topic: "home/x".into(),
            payload: ByteBuf::from(vec![0x01]),
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
        let back: host_api_args::EventsPublish =
            decode_args(&without_retain).expect("retain defaults");
        assert!(!back.retain);
    }

    struct Fixed;
    impl HostApi for Fixed {
        fn info(&self) -> Result<HostInfo, WireError> {
            Ok(HostInfo {
                name: "iglu".into(),
                version: "0".into(),
                protocol: 1,
                plugin_id: "p".into(),
            })
        }
        fn kv_get(&self, key: String) -> Result<MaybeValue, WireError> {
            Ok(MaybeValue {
                value: Some(rmpv::Value::from(key)),
            })
        }
        fn kv_list(
            &self,
            _: String,
            _: Option<String>,
            _: Option<u32>,
        ) -> Result<KvPage, WireError> {
            Ok(KvPage {
                entries: vec![],
                next: None,
            })
        }
        fn events_publish(&self, _: String, _: ByteBuf, _: bool) -> Result<bool, WireError> {
            Ok(true)
        }
        fn events_subscribe(&self, _: Vec<String>) -> Result<bool, WireError> {
            Ok(true)
        }
        fn events_unsubscribe(&self, f: Vec<String>) -> Result<u64, WireError> {
            Ok(f.len() as u64)
        }
        fn status_report(
            &self,
            _: String,
            _: String,
            _: Option<rmpv::Value>,
        ) -> Result<bool, WireError> {
            Ok(true)
        }
    }

    #[test]
    fn serve_dispatches_by_wire_name_and_reads_nil_as_no_arguments() {
        let info = HostApiInterface::serve(&Fixed, "host.info", &[0xc0])
            .expect("a method")
            .expect("served");
        let info: HostInfo = rmp_serde::from_slice(&info).expect("decodes");
        assert_eq!(info.plugin_id, "p");
        let args =
            rmp_serde::to_vec_named(&host_api_args::KvGet { key: "k".into() }).expect("encodes");
        let got = HostApiInterface::serve(&Fixed, HostApiInterface::KV_GET, &args)
            .expect("a method")
            .expect("served");
        let got: MaybeValue = rmp_serde::from_slice(&got).expect("decodes");
        assert_eq!(got.value, Some(rmpv::Value::from("k")));
        let bad = HostApiInterface::serve(&Fixed, "kv.get", &[0x01]).expect("a method");
        assert_eq!(
            bad.expect_err("refused").code,
            crate::ErrorCode::BadArguments
        );
        assert!(HostApiInterface::serve(&Fixed, "plugins.call", &[0x80]).is_none());
        assert!(
            HostApiInterface::serve(&Fixed, "kv.set", &[0x80]).is_none(),
            "routed apart"
        );
        assert!(HostApiInterface::serve(&Fixed, "kv.gte", &[0x80]).is_none());
        assert_eq!(HostApiInterface::METHODS.len(), 12);
        assert_eq!(HostApiInterface::info().methods.len(), 12);
        let _ = encode_result(&true).expect("encodes");
    }
}
