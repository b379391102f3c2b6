//! The host API's writes to a plugin's store (`kv.set`, `kv.delete`,
//! `kv.cas`, `kv.set_many`): queued for the store's next group commit and
//! answered once durable, from the store's writer thread (no task per
//! write), so the router never waits for the disk. A write cannot be cancelled once queued (its CANCEL
//! is ignored): the answer says what happened.

use std::sync::Arc;

use bytes::Bytes;
use iglu_bus::host_api::{host_api_args, Existed, HostApiInterface, Swapped};
use iglu_bus::interface::{decode_args, encode_result};
use iglu_bus::{Call, ErrorCode, WireError};

use super::answer;
use super::host_api::value_of;
use crate::session::Session;
use crate::shared::Shared;
use crate::store::{Done, Op, StoreError};

/// Whether `method` is one of the store's writes.
pub(super) fn is_write(method: &str) -> bool {
    [
        HostApiInterface::KV_SET,
        HostApiInterface::KV_DELETE,
        HostApiInterface::KV_CAS,
        HostApiInterface::KV_SET_MANY,
    ]
    .contains(&method)
}

/// Queues `call` (one of [`is_write`]) and answers it once it is durable,
/// or at once if it cannot be queued.
pub(super) fn start(shared: &Shared, session: &Arc<Session>, call: Call) {
    let id = call.id;
    let ops = match ops_of(&call.method, &call.args) {
        Ok(ops) => ops,
        Err(e) => return answer(session, id, Err(e)),
    };
    let quota = shared.quota(&session.plugin_id);
    let to = Arc::downgrade(session);
    let method = call.method;
    let done = Box::new(move |outcome: Result<Vec<Done>, StoreError>| {
        if let Some(session) = to.upgrade() {
            let result = outcome
                .map_err(|e| e.to_wire())
                .and_then(|done| result_of(&method, done));
            answer(&session, id, result);
        }
    });
    if let Err(e) = shared.store.submit(&session.plugin_id, quota, ops, done) {
        answer(session, id, Err(e.to_wire()));
    }
}

fn document(value: &rmpv::Value) -> Result<Bytes, WireError> {
    let mut bytes = Vec::new();
    rmpv::encode::write_value(&mut bytes, value)
        .map_err(|e| WireError::new(ErrorCode::Internal, e.to_string()))?;
    Ok(Bytes::from(bytes))
}

/// The store operations a write call stands for.
fn ops_of(method: &str, args: &[u8]) -> Result<Vec<Op>, WireError> {
    Ok(match method {
        HostApiInterface::KV_SET => {
            let a: host_api_args::KvSet = decode_args(args)?;
            vec![Op::Set {
                key: a.key,
                value: document(&a.value)?,
            }]
        }
        HostApiInterface::KV_DELETE => {
            let a: host_api_args::KvDelete = decode_args(args)?;
            vec![Op::Delete { key: a.key }]
        }
        HostApiInterface::KV_CAS => {
            let a: host_api_args::KvCas = decode_args(args)?;
            let present = |v: Option<rmpv::Value>| -> Result<Option<Bytes>, WireError> {
                match v {
                    None | Some(rmpv::Value::Nil) => Ok(None),
                    Some(v) => document(&v).map(Some),
                }
            };
            vec![Op::Cas {
                key: a.key,
                expected: present(a.expected)?,
                value: present(a.value)?,
            }]
        }
        _ => {
            let a: host_api_args::KvSetMany = decode_args(args)?;
            let mut ops = Vec::with_capacity(a.entries.len());
            for e in a.entries {
                ops.push(Op::Set {
                    key: e.key,
                    value: document(&e.value)?,
                });
            }
            ops
        }
    })
}

/// The answer of a write call from what its operations did.
fn result_of(method: &str, done: Vec<Done>) -> Result<Bytes, WireError> {
    match (method, done.first()) {
        (HostApiInterface::KV_DELETE, Some(Done::Deleted(existed))) => {
            encode_result(&Existed { existed: *existed })
        }
        (HostApiInterface::KV_CAS, Some(Done::Cas { swapped, current })) => {
            let current = match current {
                Some(bytes) => Some(value_of(bytes)?),
                None => None,
            };
            encode_result(&Swapped {
                swapped: *swapped,
                current,
            })
        }
        _ => encode_result(&true),
    }
}
