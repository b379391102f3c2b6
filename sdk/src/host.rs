//! Calls from the plugin to the host: the host API's generated client
//! (`iglu_bus::host_api`) over the plugin's link, and typed conveniences.
//!
//! Calls are correlated by id in `pending`; the I/O loop resolves them when a
//! REPLY or ERROR arrives and fails them all when the connection ends.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use iglu_bus::{Call, CallId, CallIdMap, Message, WireError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::error::CallError;
use crate::outgoing::Outgoing;

/// Deadline of a call to the host unless the caller picks one.
const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);

/// Calls to the host one plugin has unanswered at once; more wait for a
/// slot (within their deadline). The host closes a plugin whose answers pile
/// up unread past its `send_queue_messages` (65,536 by default): with this
/// bound a plugin built on the SDK cannot get there by calling too eagerly.
pub(crate) const MAX_HOST_CALLS: usize = 4096;

/// A call to the host waiting for its answer. The frame is kept so that
/// an external plugin can send it again after reconnecting.
pub(crate) struct PendingCall {
    pub frame: Bytes,
    pub waiter: oneshot::Sender<Result<Bytes, WireError>>,
    /// The connection it was last sent on (0: not sent yet).
    pub sent_on: u64,
}

pub(crate) type Pending = Arc<Mutex<CallIdMap<PendingCall>>>;

/// A handle for calling the host. Cheap to clone.
#[derive(Clone)]
pub struct HostClient {
    pub(crate) outgoing: mpsc::Sender<Outgoing>,
    pub(crate) pending: Pending,
    /// Bounds calls in flight (see [`MAX_HOST_CALLS`]).
    pub(crate) slots: Arc<tokio::sync::Semaphore>,
}

/// What `host.info` returns (one definition, shared with the host).
pub use iglu_bus::host_api::HostInfo;
use iglu_bus::host_api::{HostApiClient, HostApiInterface};
pub use iglu_bus::host_api::{KvEntry, KvPage};
use iglu_bus::interface::HostCaller;
use serde_bytes::ByteBuf;

impl HostCaller for HostClient {
    type Error = CallError;

    fn call_host<'a>(
        &'a self,
        method: &'static str,
        args: Vec<u8>,
        deadline: Option<Duration>,
    ) -> BoxFuture<'a, Result<Bytes, CallError>> {
        self.call_encoded(method, args, deadline.unwrap_or(DEFAULT_DEADLINE))
            .boxed()
    }

    fn codec_error(&self, message: String) -> CallError {
        CallError::Decode(message)
    }
}

impl HostClient {
    /// The host API's generated client (`iglu_bus::host_api`): every host
    /// method with its declared argument and result types. The methods
    /// below are the same calls with values of your own types.
    pub fn api(&self) -> HostApiClient<&HostClient> {
        HostApiClient::new(self)
    }

    /// Calls a host method by name with a deadline of 10 s.
    pub async fn call<A: Serialize, R: DeserializeOwned>(
        &self,
        method: &str,
        args: &A,
    ) -> Result<R, CallError> {
        self.call_with_deadline(method, args, DEFAULT_DEADLINE)
            .await
    }

    /// Calls a host method by name with the given deadline.
    pub async fn call_with_deadline<A: Serialize, R: DeserializeOwned>(
        &self,
        method: &str,
        args: &A,
        deadline: Duration,
    ) -> Result<R, CallError> {
        let args = rmp_serde::to_vec_named(args).map_err(|e| CallError::Encode(e.to_string()))?;
        let bytes = self.call_encoded(method, args, deadline).await?;
        decode(&bytes)
    }

    /// A host call with encoded arguments; its result as it came (one
    /// MessagePack document).
    pub(crate) async fn call_encoded(
        &self,
        method: &str,
        args: Vec<u8>,
        deadline: Duration,
    ) -> Result<Bytes, CallError> {
        let started = tokio::time::Instant::now();
        let _slot = match tokio::time::timeout(deadline, self.slots.acquire()).await {
            Ok(Ok(slot)) => slot,
            Ok(Err(_)) => return Err(CallError::Disconnected),
            Err(_) => return Err(CallError::Timeout(deadline)),
        };
        let deadline = deadline.saturating_sub(started.elapsed());
        let id = CallId::new_v4();
        let (tx, rx) = oneshot::channel();
        let call = Message::Call(Call {
            id,
            method: method.to_owned(),
            deadline_ms: u32::try_from(deadline.as_millis()).unwrap_or(u32::MAX),
            args: Bytes::from(args),
        });
        let frame = iglu_bus::encode(&call).map_err(|e| CallError::Encode(e.to_string()))?;
        self.lock_pending().insert(
            id,
            PendingCall {
                frame,
                waiter: tx,
                sent_on: 0,
            },
        );
        // Removes the id however this call ends, and tells the host when
        // the answer is no longer wanted (dropped future, deadline).
        let guard = Unanswered { client: self, id };
        let result = async {
            self.outgoing
                .send(Outgoing::Call(id))
                .await
                .map_err(|_| CallError::Disconnected)?;
            match tokio::time::timeout(deadline, rx).await {
                Ok(Ok(answer)) => answer.map_err(CallError::Remote),
                Ok(Err(_)) => Err(CallError::Disconnected),
                Err(_) => Err(CallError::Timeout(deadline)),
            }
        }
        .await;
        drop(guard);
        result
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, CallIdMap<PendingCall>> {
        // A poisoned map only means another thread panicked mid-insert; the map itself is fine.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Calls `method` of another plugin, through the host (`plugins.call`),
    /// within `deadline`. The host must allow it (`calls` in this plugin's
    /// config). The callee's own error comes back as [`CallError::Remote`]
    /// with its code; a callee that dies fails the call at once
    /// (`plugin_crashed`), a stopped one with `not_running` (or, with
    /// `wait_for_running`, after waiting for it within the deadline).
    /// Dropping the future cancels the call on the callee.
    pub async fn call_plugin<A: Serialize, R: DeserializeOwned>(
        &self,
        plugin: &str,
        method: &str,
        args: &A,
        deadline: Duration,
        wait_for_running: Option<bool>,
    ) -> Result<R, CallError> {
        let args = rmp_serde::to_vec_named(args).map_err(|e| CallError::Encode(e.to_string()))?;
        let bytes = self
            .api()
            .with_deadline(deadline)
            .plugins_call(
                plugin.to_owned(),
                method.to_owned(),
                ByteBuf::from(args),
                wait_for_running,
                None,
            )
            .await?;
        decode(&bytes)
    }

    /// The host's name, version and the negotiated protocol.
    pub async fn info(&self) -> Result<HostInfo, CallError> {
        self.api().info().await
    }

    /// Reads a value from this plugin's store on the host; `None` if unset.
    pub async fn kv_get<V: DeserializeOwned>(&self, key: &str) -> Result<Option<V>, CallError> {
        let answer = self.api().kv_get(key.to_owned()).await?;
        answer.value.map(|v| from_value(&v)).transpose()
    }

    /// Stores a value in this plugin's store on the host. Answered once it
    /// is on disk: it survives the plugin's crashes and the host's restarts.
    /// Past this plugin's quota it fails with `quota_exceeded`.
    pub async fn kv_set<V: Serialize>(&self, key: &str, value: &V) -> Result<(), CallError> {
        self.api().kv_set(key.to_owned(), to_value(value)?).await?;
        Ok(())
    }

    /// Sets every entry in one commit: all of them, or none.
    pub async fn kv_set_many<V: Serialize>(&self, entries: &[(&str, V)]) -> Result<(), CallError> {
        let mut all = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            all.push(KvEntry {
                key: (*key).to_owned(),
                value: to_value(value)?,
            });
        }
        self.api().kv_set_many(all).await?;
        Ok(())
    }

    /// Compare-and-set: sets `key` to `value` (`None`: removes it) only if
    /// it holds `expected` now (`None`: only if unset). `Ok(Ok(()))` if it
    /// swapped, `Ok(Err(current))` with what it holds if not.
    pub async fn kv_cas<E: Serialize, V: Serialize, C: DeserializeOwned>(
        &self,
        key: &str,
        expected: Option<&E>,
        value: Option<&V>,
    ) -> Result<Result<(), Option<C>>, CallError> {
        let expected = expected.map(to_value).transpose()?;
        let value = value.map(to_value).transpose()?;
        let answer = self.api().kv_cas(key.to_owned(), expected, value).await?;
        if answer.swapped {
            return Ok(Ok(()));
        }
        let current = answer.current.map(|v| from_value(&v)).transpose()?;
        Ok(Err(current))
    }

    /// This plugin's keys starting with `prefix`, in order: one page of at
    /// most `limit` after `after` (the `next` of the page before).
    pub async fn kv_list<V: DeserializeOwned>(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<KvPage<V>, CallError> {
        let page = self
            .api()
            .kv_list(prefix.to_owned(), after.map(str::to_owned), Some(limit))
            .await?;
        let mut entries = Vec::with_capacity(page.entries.len());
        for e in page.entries {
            entries.push(KvEntry {
                key: e.key,
                value: from_value(&e.value)?,
            });
        }
        Ok(KvPage {
            entries,
            next: page.next,
        })
    }

    /// Removes a key; returns whether it existed.
    pub async fn kv_delete(&self, key: &str) -> Result<bool, CallError> {
        Ok(self.api().kv_delete(key.to_owned()).await?.existed)
    }

    /// Publishes an event on `topic` (plugins may not publish under `$`).
    pub async fn publish<V: Serialize>(&self, topic: &str, payload: &V) -> Result<(), CallError> {
        self.publish_with(topic, payload, false).await
    }

    /// Publishes an event and keeps it as the topic's retained state, which
    /// every new subscriber gets first. A `()` payload clears it.
    pub async fn publish_retained<V: Serialize>(
        &self,
        topic: &str,
        payload: &V,
    ) -> Result<(), CallError> {
        self.publish_with(topic, payload, true).await
    }

    async fn publish_with<V: Serialize>(
        &self,
        topic: &str,
        payload: &V,
        retain: bool,
    ) -> Result<(), CallError> {
        let payload =
            rmp_serde::to_vec_named(payload).map_err(|e| CallError::Encode(e.to_string()))?;
        self.api()
            .events_publish(topic.to_owned(), ByteBuf::from(payload), retain)
            .await?;
        Ok(())
    }

    /// Adds subscriptions (MQTT filters with `+` and `#`); the retained state
    /// of every matching topic arrives first.
    pub async fn subscribe(&self, filters: &[&str]) -> Result<(), CallError> {
        self.api().events_subscribe(owned(filters)).await?;
        Ok(())
    }

    /// Reports this plugin's own health, which `iglu status` shows beside
    /// the host's view of it: a short `state` word, a line for people, and
    /// a few `facts` (a map of counters, say). Each report replaces the
    /// last; at most 4 KiB.
    pub async fn report_status<F: Serialize>(
        &self,
        state: &str,
        detail: &str,
        facts: &F,
    ) -> Result<(), CallError> {
        let facts = to_value(facts)?;
        self.api()
            .status_report(state.to_owned(), detail.to_owned(), Some(facts))
            .await?;
        Ok(())
    }

    /// Removes subscriptions; returns how many were removed.
    pub async fn unsubscribe(&self, filters: &[&str]) -> Result<usize, CallError> {
        let removed = self.api().events_unsubscribe(owned(filters)).await?;
        Ok(usize::try_from(removed).unwrap_or(usize::MAX))
    }
}

/// The host method names, for [`HostClient::call`].
pub const HOST_METHODS: &[&str] = HostApiInterface::METHODS;

/// A value as a MessagePack value tree, with structs as maps by field name
/// (as every Iglu document is; `rmpv::ext::to_value` would make arrays).
fn to_value<V: Serialize + ?Sized>(value: &V) -> Result<rmpv::Value, CallError> {
    let bytes = rmp_serde::to_vec_named(value).map_err(|e| CallError::Encode(e.to_string()))?;
    rmpv::decode::read_value(&mut &bytes[..]).map_err(|e| CallError::Encode(e.to_string()))
}

/// A value tree read as `V`, through its MessagePack bytes (rmp_serde
/// reads every shape rmp_serde writes; `rmpv::ext::from_value` does not
/// read enums written as strings or maps).
fn from_value<V: DeserializeOwned>(value: &rmpv::Value) -> Result<V, CallError> {
    let mut bytes = Vec::new();
    rmpv::encode::write_value(&mut bytes, value).map_err(|e| CallError::Decode(e.to_string()))?;
    decode(&bytes)
}

fn decode<R: DeserializeOwned>(bytes: &[u8]) -> Result<R, CallError> {
    rmp_serde::from_slice(bytes).map_err(|e| CallError::Decode(e.to_string()))
}

/// A call to the host on its way: on drop, its entry goes, and if it was
/// still there (no answer came: the caller gave up or its deadline passed)
/// the host hears CANCEL (best effort: never waits).
struct Unanswered<'a> {
    client: &'a HostClient,
    id: CallId,
}

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        if self.client.lock_pending().remove(&self.id).is_some() {
            let _ = self.client.outgoing.try_send(Outgoing::Cancel(self.id));
        }
    }
}

fn owned(filters: &[&str]) -> Vec<String> {
    filters.iter().map(|f| (*f).to_owned()).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// What a plugin stores comes back as it was, enums and structs alike,
    /// and structs are stored as maps by field name.
    #[test]
    fn values_round_trip_through_the_value_tree() {
        #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
        enum Mode {
            Heat,
            Target { celsius: f64 },
        }
        #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
        struct Room {
            mode: Mode,
            other: Mode,
        }
        let room = Room {
            mode: Mode::Heat,
            other: Mode::Target { celsius: 20.5 },
        };
        let tree = to_value(&room).unwrap();
        assert!(tree.is_map(), "{tree:?}");
        assert_eq!(from_value::<Room>(&tree).unwrap(), room);
    }
}
