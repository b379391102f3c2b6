//! The host's side of the handshake: decide on a HELLO, open a session or say why not.
//!
//! The checks run cheapest and least revealing first: cookie and version
//! need no host state; the token is compared in constant time before the
//! host says anything about the plugin's session or manifest.

use std::sync::Arc;
use std::time::Instant;

use iglu_bus::handshake::{check_hello_basics, tokens_match, validate_manifest, PROTOCOL_VERSIONS};
use iglu_bus::transport::PeerId;
use iglu_bus::{FoldSet, Hello, Message, Reject, RejectCode, Welcome};

use crate::events::{delivery, lifecycle};
use crate::host::Shared;
use crate::registry::PluginState;
use crate::session::{Opening, Session};
use crate::supervisor::SupervisorEvent;

/// A refusal, ready to send.
pub fn reject(code: RejectCode, message: impl Into<String>) -> Reject {
    Reject {
        code,
        message: message.into(),
        host_versions: PROTOCOL_VERSIONS.to_vec(),
    }
}

/// Checks a HELLO from `peer`; on success WELCOME has been sent and the
/// session is registered. WELCOME goes out before the session is visible to
/// anyone else, so no heartbeat, call or event can overtake it.
pub async fn admit(shared: &Shared, peer: &PeerId, hello: Hello) -> Result<Arc<Session>, Reject> {
    let (session, welcome, launch) = check(shared, peer, &hello)?;
    if !session.send(welcome) {
        return Err(reject(
            RejectCode::MalformedHello,
            "the peer left during the handshake",
        ));
    }
    register(shared, session, hello, launch)
}

/// Every check, under the registry lock; returns the unregistered session,
/// its WELCOME and the launch it belongs to.
fn check(
    shared: &Shared,
    peer: &PeerId,
    hello: &Hello,
) -> Result<(Arc<Session>, bytes::Bytes, u64), Reject> {
    let version = check_hello_basics(hello).map_err(|(code, msg)| reject(code, msg))?;
    let mut plugins = shared.registry.lock();
    let Some(entry) = plugins.get_mut(&hello.plugin_id) else {
        return Err(reject(
            RejectCode::UnknownPlugin,
            format!(
                "no plugin named {:?} is configured on this host",
                hello.plugin_id
            ),
        ));
    };
    let token_ok = entry
        .token
        .as_deref()
        .is_some_and(|expected| tokens_match(expected, &hello.token));
    if !token_ok {
        return Err(reject(
            RejectCode::BadToken,
            format!(
                "the token is not the one this host issued for the current launch of {}",
                hello.plugin_id
            ),
        ));
    }
    if entry.state == PluginState::Stopped {
        return Err(reject(
            RejectCode::Stopped,
            format!(
                "plugin {} is stopped on this host; `iglu start {}` lets it in",
                hello.plugin_id, hello.plugin_id
            ),
        ));
    }
    if entry.session.as_ref().is_some_and(|s| !s.is_closed()) {
        return Err(reject(
            RejectCode::DuplicateId,
            format!("plugin {} already has a live session", hello.plugin_id),
        ));
    }
    validate_manifest(&hello.manifest, &hello.methods)
        .map_err(|msg| reject(RejectCode::MalformedManifest, msg))?;
    if let Some(bad) = hello
        .subscriptions
        .iter()
        .find_map(|f| iglu_bus::topic::validate_filter(f).err())
    {
        return Err(reject(
            RejectCode::MalformedManifest,
            format!("subscription: {bad}"),
        ));
    }

    // Each connection of an external plugin is a launch of its own.
    let launch = match entry.kind {
        crate::registry::PluginKind::External(_) => entry.launch + 1,
        crate::registry::PluginKind::Managed(_) => entry.launch,
    };
    let session = Session::open(
        Opening {
            plugin_id: Arc::from(hello.plugin_id.as_str()),
            launch,
            peer: peer.clone(),
            methods: hello.methods.iter().cloned().collect::<FoldSet<_>>(),
            version,
            max_message: shared.config.max_message_bytes,
            call_bytes_max: shared.config.send_queue_bytes / 2,
            supervisor: entry.events.clone(),
            events: entry.queue.clone(),
        },
        shared.outbound.clone(),
        &shared.clock,
    );
    let timing = shared.config.timing();
    let welcome = Message::Welcome(Welcome {
        version,
        session: session.id,
        heartbeat_ms: u32::try_from(timing.interval.as_millis()).unwrap_or(u32::MAX),
        liveness: timing.liveness,
        max_message_bytes: u32::try_from(shared.config.max_message_bytes).unwrap_or(u32::MAX),
    });
    let frame = iglu_bus::encode(&welcome).map_err(|e| {
        reject(
            RejectCode::MalformedHello,
            format!("host could not encode WELCOME: {e}"),
        )
    })?;
    Ok((session, frame, launch))
}

/// Makes the session the plugin's live one, unless the plugin's situation
/// changed while WELCOME was being sent (it was killed, stopped, or another
/// session won): then the new session is closed instead.
fn register(
    shared: &Shared,
    session: Arc<Session>,
    hello: Hello,
    launch: u64,
) -> Result<Arc<Session>, Reject> {
    let mut plugins = shared.registry.lock();
    let current = plugins.get_mut(&hello.plugin_id).filter(|e| {
        let expected = match e.kind {
            crate::registry::PluginKind::External(_) => e.launch + 1,
            crate::registry::PluginKind::Managed(_) => e.launch,
        };
        expected == launch
            && e.token.is_some()
            && e.state != PluginState::Stopped
            && e.session.as_ref().is_none_or(|s| s.is_closed())
    });
    let Some(entry) = current else {
        drop(plugins);
        session.close(crate::session::Loss::Stopping);
        return Err(reject(
            RejectCode::DuplicateId,
            format!(
                "plugin {} changed state during its handshake; try again",
                hello.plugin_id
            ),
        ));
    };
    entry.launch = launch;
    session.touch();
    entry.session = Some(session.clone());
    entry.manifest = Some(hello.manifest);
    entry.methods = hello.methods;
    entry.state = PluginState::Running;
    entry.since = Some(Instant::now());
    entry.subscriptions = hello.subscriptions;
    entry.receive_own = hello.receive_own;
    let _ = entry.events.try_send(SupervisorEvent::Connected {
        launch: entry.launch,
    });
    let queue = entry.queue.clone();
    let filters = entry.subscriptions.clone();
    drop(plugins);
    // Events that waited while it was down stay first; then the current
    // state of every topic it subscribes to; then the live stream.
    queue.attach(session.id);
    queue.push_retained(shared.events.retained_matching(&filters));
    tokio::spawn(delivery::run(session.clone(), queue));
    lifecycle::announce(shared, &hello.plugin_id, None);
    Ok(session)
}
