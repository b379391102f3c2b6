//! Plugin-to-plugin calls (`plugins.call`): the host checks that the caller
//! may call the callee, then calls it as any caller would, in a task of its
//! own, and answers the caller's CALL with the callee's answer.
//!
//! The router never waits for a forwarded call, so calls that go round in
//! a cycle (a calls b calls a) cannot deadlock the host; they end at their
//! deadline at worst. The caller's deadline is the forwarded call's; the
//! caller's CANCEL, or its session ending, drops the forwarded call, which
//! sends CANCEL on to the callee; a callee that dies fails the call at once
//! with `plugin_crashed`; a callee that is restarting is waited for only if
//! the caller asked (or the config's `call_wait_for_running` says so).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use iglu_bus::host_api::PluginCall;
use iglu_bus::{Call, ErrorCode, WireError};

use super::answer;
use crate::call::options::CallOptions;
use crate::session::Session;
use crate::shared::Shared;

/// Starts serving `call` (a `plugins.call` from `caller`), or answers it
/// at once when it cannot be made.
pub(super) fn start(shared: &Arc<Shared>, caller: &Arc<Session>, call: Call) {
    let id = call.id;
    let request: PluginCall = match iglu_bus::interface::decode_args(&call.args) {
        Ok(r) => r,
        Err(e) => return answer(caller, id, Err(e)),
    };
    if !shared.registry.may_call(&caller.plugin_id, &request.plugin) {
        let e = WireError::new(
            ErrorCode::Forbidden,
            format!(
                "plugin {} may not call plugin {:?}: add it to `calls` in its config",
                caller.plugin_id, request.plugin
            ),
        );
        return answer(caller, id, Err(e));
    }
    if caller.forwarding(&id) {
        let e = WireError::new(
            ErrorCode::BadMessage,
            format!("a call with id {id} is already in flight"),
        );
        return answer(caller, id, Err(e));
    }
    if !caller.forwarded_room() {
        let e = WireError::new(
            ErrorCode::Overloaded,
            format!(
                "plugin {} already has {} calls to other plugins in flight",
                caller.plugin_id,
                crate::session::MAX_FORWARDED
            ),
        );
        return answer(caller, id, Err(e));
    }
    let options = CallOptions::new(Duration::from_millis(u64::from(call.deadline_ms)))
        .wait_for_running(
            request
                .wait_for_running
                .unwrap_or(shared.config.call_wait_for_running),
        );
    // The task starts only once it is tracked, so its end always finds
    // its entry to remove.
    let (go, tracked) = tokio::sync::oneshot::channel::<()>();
    let task = {
        let shared = shared.clone();
        let caller = caller.clone();
        tokio::spawn(async move {
            if tracked.await.is_err() {
                return;
            }
            let args = Bytes::from(request.args.into_vec());
            let result = match &request.interface {
                // A typed call: the callee's version is checked first.
                Some(interface) => {
                    let method = request
                        .method
                        .strip_prefix(&format!("{}.", interface.name))
                        .unwrap_or(&request.method)
                        .to_owned();
                    crate::call::call_interface(
                        &shared,
                        &request.plugin,
                        &interface.name,
                        &interface.version,
                        &method,
                        args,
                        options,
                    )
                    .await
                }
                None => {
                    crate::call::call(&shared, &request.plugin, &request.method, args, options)
                        .await
                }
            }
            .map_err(|e| e.to_wire());
            caller.forwarded_done(&id, tokio::task::id());
            answer(&caller, id, result);
        })
    };
    if caller.track_forwarded(id, task.abort_handle()) {
        let _ = go.send(());
    }
}
