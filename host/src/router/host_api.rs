//! The host API as the host serves it: the implementation of the trait
//! declared in `iglu_bus::host_api`, for one calling plugin.
//!
//! Adding a method is one method in that declaration and its body here.
//! All of them are quick in-memory operations (reads come from the store's
//! mirror; publishing only queues), so the router answers them inline; the
//! methods that wait (the store's writes, `plugins.call`) are routed
//! before this (`store_writes`, `forward`).

use bytes::Bytes;
use iglu_bus::host_api::{HostApi, HostApiInterface, HostInfo, KvEntry, KvPage, MaybeValue};
use iglu_bus::{ErrorCode, WireError};
use serde_bytes::ByteBuf;

use crate::events::Source;
use crate::permissions::Grants;
use crate::session::Session;
use crate::shared::Shared;

/// What a host-API call may touch.
pub struct HostApiScope<'a> {
    /// The host's state.
    pub shared: &'a Shared,
    /// The calling plugin: every call acts on its own data only.
    pub plugin: &'a str,
    /// The protocol version of its session.
    pub protocol: u32,
    /// Its session, whose grants decide what it may publish and subscribe
    /// to (`None`: a caller with no session, which may do everything).
    pub session: Option<&'a Session>,
}

impl HostApiScope<'_> {
    /// Serves one call; the result is a MessagePack document.
    pub fn handle(&self, method: &str, args: &[u8]) -> Result<Bytes, WireError> {
        if method == HostApiInterface::STATUS_REPORT {
            crate::plugin::health::check_size(args)?;
        }
        HostApiInterface::serve(self, method, args).unwrap_or_else(|| {
            Err(WireError::new(
                ErrorCode::MethodNotFound,
                format!(
                    "the host has no method {method:?} (it serves {})",
                    HostApiInterface::METHODS.join(", ")
                ),
            ))
        })
    }
}

impl HostApiScope<'_> {
    /// Refuses, logs and counts what the session's grants do not allow.
    fn check(
        &self,
        allowed: impl Fn(&Grants) -> bool,
        permission: String,
        what: &str,
    ) -> Result<(), WireError> {
        let Some(session) = self.session else {
            return Ok(());
        };
        match &session.grants {
            Some(g) if !allowed(g) => {
                let e = crate::permissions::denied(self.plugin, &permission, what);
                session.log_denial(&e);
                self.shared.registry.count_denial(self.plugin);
                Err(e)
            }
            _ => Ok(()),
        }
    }

    /// Bytes of keys and values one `kv.list` page may hold: half a frame,
    /// leaving room for the encoding around them.
    fn page_bytes(&self) -> usize {
        self.shared.config.max_message_bytes / 2
    }
}

impl HostApi for HostApiScope<'_> {
    fn info(&self) -> Result<HostInfo, WireError> {
        Ok(HostInfo {
            name: "iglu".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            protocol: self.protocol,
            plugin_id: self.plugin.to_owned(),
        })
    }

    fn kv_get(&self, key: String) -> Result<MaybeValue, WireError> {
        let value = match self.shared.store.get(self.plugin, &key) {
            Some(bytes) => Some(value_of(&bytes)?),
            None => None,
        };
        Ok(MaybeValue { value })
    }

    fn kv_list(
        &self,
        prefix: String,
        after: Option<String>,
        limit: Option<u32>,
    ) -> Result<KvPage, WireError> {
        let limit = limit.map_or(100, |l| l as usize);
        let page = self.shared.store.list(
            self.plugin,
            &prefix,
            after.as_deref(),
            limit,
            self.page_bytes(),
        );
        let mut entries = Vec::with_capacity(page.entries.len());
        for (key, bytes) in page.entries {
            entries.push(KvEntry {
                key,
                value: value_of(&bytes)?,
            });
        }
        Ok(KvPage {
            entries,
            next: page.next,
        })
    }

    fn events_publish(
        &self,
        topic: String,
        payload: ByteBuf,
        retain: bool,
    ) -> Result<bool, WireError> {
        self.check(
            |g| g.allows_publish(&topic),
            format!("publish {topic:?}"),
            "publishing",
        )?;
        let source = Source::Plugin(self.plugin.to_owned());
        self.shared
            .events
            .publish(source, &topic, Bytes::from(payload.into_vec()), retain)?;
        Ok(true)
    }

    fn events_subscribe(&self, filters: Vec<String>) -> Result<bool, WireError> {
        for f in &filters {
            self.check(
                |g| g.allows_subscribe(f),
                format!("subscribe {f:?}"),
                "subscribing",
            )?;
        }
        self.shared.events.subscribe(self.plugin, &filters)?;
        Ok(true)
    }

    fn events_unsubscribe(&self, filters: Vec<String>) -> Result<u64, WireError> {
        Ok(self.shared.events.unsubscribe(self.plugin, &filters) as u64)
    }

    fn status_report(
        &self,
        state: String,
        detail: String,
        facts: Option<rmpv::Value>,
    ) -> Result<bool, WireError> {
        match self.session {
            Some(session) => {
                session
                    .health
                    .set(state, detail, facts.unwrap_or(rmpv::Value::Nil))?
            }
            None => {
                return Err(WireError::new(
                    ErrorCode::BadArguments,
                    "only a plugin with a session has a status to report",
                ))
            }
        }
        Ok(true)
    }
}

/// A stored value (one MessagePack document) as a value of the answer.
pub(super) fn value_of(bytes: &[u8]) -> Result<rmpv::Value, WireError> {
    rmpv::decode::read_value(&mut &bytes[..]).map_err(|e| {
        WireError::new(
            ErrorCode::Internal,
            format!("a stored value does not decode: {e}"),
        )
    })
}
