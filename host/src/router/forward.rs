//! Plugin-to-plugin calls (`plugins.call`): the host checks that the caller
//! may call the callee (and, for a typed call, the callee's version), then
//! sends the call to the callee and answers the caller's CALL with the
//! callee's answer. A running callee gets the call directly, and its answer
//! goes from its call table straight to the caller (no task per call: that
//! task's spawn and wake-ups were most of the host's work for such a call);
//! only a call that waits for its callee to start has a task.
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
use iglu_bus::{Call, CallId, ErrorCode, WireError};

use super::answer;
use crate::call::check_interface;
use crate::call::error::CallError;
use crate::call::options::CallOptions;
use crate::session::forwarded::{self, Forwarded, Served};
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
        let e = crate::permissions::denied(
            &caller.plugin_id,
            &format!("calls {:?}", request.plugin),
            "a call to another plugin",
        );
        caller.log_denial(&e);
        shared.registry.count_denial(&caller.plugin_id);
        return answer(caller, id, Err(e));
    }
    // A plugin's log filter is the host's to change.
    if request.method == iglu_bus::LOG_LEVEL_METHOD {
        let e = crate::permissions::denied(
            &caller.plugin_id,
            &format!("method {:?}", request.method),
            "a call to a method reserved for the host",
        );
        caller.log_denial(&e);
        shared.registry.count_denial(&caller.plugin_id);
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
    let deadline = Duration::from_millis(u64::from(call.deadline_ms));
    let wait = request
        .wait_for_running
        .unwrap_or(shared.config.call_wait_for_running);
    let plugin = request.plugin.clone();
    let failed = |e: CallError| answer(caller, id, Err(e.to_wire()));
    // A typed call: the callee's version is checked before anything is sent.
    let method = match &request.interface {
        Some(interface) => {
            if let Err(e) = check_interface(
                shared,
                &plugin,
                &interface.name,
                &interface.version,
                deadline,
            ) {
                return failed(e);
            }
            let prefix = format!("{}.", interface.name);
            if request.method.starts_with(&prefix) {
                request.method
            } else {
                format!("{prefix}{}", request.method)
            }
        }
        None => request.method,
    };
    let args = Bytes::from(request.args.into_vec());
    // A callee handed over to its new version (an upgrade) refuses the
    // call before sending it: it is made again on the session in force.
    for _ in 0..3 {
        match shared.registry.session(&plugin) {
            Ok(callee) => {
                match direct(
                    caller,
                    id,
                    &callee,
                    plugin.clone(),
                    &method,
                    args.clone(),
                    deadline,
                ) {
                    Direct::Done => return,
                    Direct::HandedOver => continue,
                }
            }
            Err(_) if wait => return waiting(shared, caller, id, plugin, method, args, deadline),
            Err(e) => return failed(CallError::from_wire(&plugin, deadline, e)),
        }
    }
    failed(CallError::from_wire(
        &plugin,
        deadline,
        WireError::new(
            ErrorCode::NotRunning,
            format!("plugin {plugin} is being upgraded; try again"),
        ),
    ))
}

/// How a direct forward went.
enum Direct {
    /// Sent, or answered with its failure.
    Done,
    /// Refused unsent by a session handed over to a new version.
    HandedOver,
}

/// Forwards call `id` of `caller` to the running `callee`: the callee's
/// answer goes straight back from its call table to the caller.
fn direct(
    caller: &Arc<Session>,
    id: CallId,
    callee: &Arc<Session>,
    plugin: String,
    method: &str,
    args: Bytes,
    deadline: Duration,
) -> Direct {
    let callee_id = CallId::new_v4();
    if !caller.track_forwarded(id, forwarded::direct(callee, callee_id)) {
        // Its session just ended (the room was checked above).
        return Direct::Done;
    }
    let to = Arc::downgrade(caller);
    let served = Served::Direct(callee_id);
    let done = move |result: Result<Bytes, WireError>| {
        let Some(caller) = to.upgrade() else { return };
        if caller.forwarded_done(&id, served) {
            let result = result.map_err(|e| CallError::from_wire(&plugin, deadline, e).to_wire());
            answer(&caller, id, result);
        }
    };
    match callee.forward(callee_id, method, args, deadline, Box::new(done)) {
        Err(e) if callee.refused_unsent(&e) => {
            if caller.forwarded_done(&id, served) {
                return Direct::HandedOver;
            }
        }
        Err(e) => {
            if caller.forwarded_done(&id, served) {
                let e = CallError::from_wire(&callee.plugin_id, deadline, e).to_wire();
                answer(caller, id, Err(e));
            }
        }
        // The caller's session may have ended in between (and found no
        // call to cancel yet): then the callee is told now.
        Ok(()) if !caller.forwarding(&id) => {
            callee.abandon(callee_id);
        }
        Ok(()) => {}
    }
    Direct::Done
}

/// Serves call `id` of `caller` in a task that waits (within the
/// deadline) for the callee to be running, then calls it.
fn waiting(
    shared: &Arc<Shared>,
    caller: &Arc<Session>,
    id: CallId,
    plugin: String,
    method: String,
    args: Bytes,
    deadline: Duration,
) {
    let options = CallOptions::new(deadline).wait_for_running(true);
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
            let result = crate::call::call(&shared, &plugin, &method, args, options)
                .await
                .map_err(|e| e.to_wire());
            if caller.forwarded_done(&id, Served::Task(tokio::task::id())) {
                answer(&caller, id, result);
            }
        })
    };
    if caller.track_forwarded(id, Forwarded::Task(task.abort_handle())) {
        let _ = go.send(());
    }
}
