//! The host's side of the handshake: decide on a HELLO, open a session or say why not.
//!
//! The checks run cheapest and least revealing first: cookie and version
//! need no host state; the token is compared in constant time before the
//! host says anything about the plugin's session or manifest.

use std::sync::Arc;

use iglu_bus::handshake::{check_hello_basics, validate_manifest, PROTOCOL_VERSIONS};
use iglu_bus::transport::PeerId;
use iglu_bus::{FoldSet, Hello, Message, Reject, RejectCode, Welcome};

use crate::events::delivery;
use crate::plugin::registry::{Admission, Ready, Refusal};
use crate::plugin::transition::Transition;
use crate::session::{Loss, Opening, Session, SessionNews};
use crate::shared::Shared;

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
pub fn admit(shared: &Shared, peer: &PeerId, hello: Hello) -> Result<Arc<Session>, Reject> {
    let (session, welcome, admission) = check(shared, peer, &hello).inspect_err(|r| {
        // An upgrade's new version that is refused: the upgrade says why.
        shared
            .registry
            .candidate_refused(&hello.plugin_id, &hello.token, &r.message);
    })?;
    if !session.send(welcome) {
        return Err(reject(
            RejectCode::MalformedHello,
            "the peer left during the handshake",
        ));
    }
    if admission.candidate {
        return register_candidate(shared, session, hello, admission.launch);
    }
    register(shared, session, hello, admission.launch)
}

/// Every check; returns the unregistered session, its WELCOME and its launch number.
fn check(
    shared: &Shared,
    peer: &PeerId,
    hello: &Hello,
) -> Result<(Arc<Session>, bytes::Bytes, Admission), Reject> {
    let version = check_hello_basics(hello).map_err(|(code, msg)| reject(code, msg))?;
    let id = &hello.plugin_id;
    let admission = shared
        .registry
        .expecting(id, &hello.token)
        .map_err(|refusal| refused(id, refusal))?;
    let Some(kind) = shared.registry.spec_for(id, admission.candidate) else {
        return Err(refused(id, Refusal::Unknown));
    };
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
    check_interfaces(hello, kind.provides())?;
    let (Some(news), Some(events)) = (
        shared.handles.news(id),
        shared.events.subscriptions.queue(id),
    ) else {
        return Err(refused(id, Refusal::Unknown));
    };
    let session = Session::open(
        Opening {
            plugin_id: Arc::from(id.as_str()),
            launch: admission.launch,
            peer: peer.clone(),
            methods: hello.methods.iter().cloned().collect::<FoldSet<_>>(),
            version,
            max_message: shared.config.max_message_bytes,
            call_bytes_max: shared.config.send_queue_bytes / 2,
            news,
            events,
            grants: kind.grants().map(Arc::new),
            call_metrics: Some(Arc::new(crate::metrics::PluginCalls::new(
                shared.metrics.calls.clone(),
                id,
                &hello.methods,
            ))),
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
    Ok((session, frame, admission))
}

/// The interfaces a HELLO announces: each method among its methods, and
/// everything the plugin (or the upgrade's new version) must provide.
fn check_interfaces(hello: &Hello, provides: &[String]) -> Result<(), Reject> {
    for i in &hello.interfaces {
        if let Some(m) = i.methods.iter().find(|m| {
            !hello
                .methods
                .contains(&iglu_bus::interface::method_name(&i.name, &m.name))
        }) {
            return Err(reject(
                RejectCode::MalformedManifest,
                format!(
                    "interface {} announces method {} but {}.{} is not among the methods",
                    i.name, m.name, i.name, m.name
                ),
            ));
        }
    }
    if let Some(missing) = provides
        .iter()
        .find(|r| !iglu_bus::interface::satisfies(r, &hello.interfaces))
    {
        let offered = if hello.interfaces.is_empty() {
            "no interface".to_owned()
        } else {
            hello
                .interfaces
                .iter()
                .map(|i| format!("{} {}", i.name, i.version))
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(reject(
            RejectCode::MissingInterface,
            format!(
                "plugin {} must provide {missing} on this host; it offers {offered}",
                hello.plugin_id
            ),
        ));
    }
    Ok(())
}

/// The REJECT for a refusal by the registry.
fn refused(id: &str, refusal: Refusal) -> Reject {
    match refusal {
        Refusal::Unknown => reject(
            RejectCode::UnknownPlugin,
            format!("no plugin named {id:?} is configured on this host"),
        ),
        Refusal::BadToken => reject(
            RejectCode::BadToken,
            format!("the token is not the one this host issued for the current launch of {id}"),
        ),
        Refusal::Stopped => reject(
            RejectCode::Stopped,
            format!("plugin {id} is stopped on this host; `iglu start {id}` lets it in"),
        ),
        Refusal::Duplicate => reject(
            RejectCode::DuplicateId,
            format!("plugin {id} already has a live session"),
        ),
    }
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
    let id = hello.plugin_id;
    // Events that waited while it was down stay first; then the current
    // state of every topic it subscribes to; then the live stream (the
    // announcement of its own Running state included).
    let filters = allowed_subscriptions(shared, &session, hello.subscriptions);
    let (queue, filters_before, own_before) = shared
        .events
        .subscriptions
        .replace(&id, filters.clone(), hello.receive_own)
        .unwrap_or_else(|| (session.events.clone(), Vec::new(), false));
    queue.attach(session.id);
    queue.push_retained(shared.events.retained.matching(&filters));
    session.touch();
    let admitted = shared.registry.transition(
        &id,
        Transition::Running {
            launch,
            session: session.clone(),
            manifest: hello.manifest,
            methods: hello.methods,
            interfaces: hello.interfaces,
        },
    );
    if !admitted {
        shared
            .events
            .subscriptions
            .replace(&id, filters_before, own_before);
        queue.detach(session.id);
        session.close(Loss::Stopping);
        return Err(reject(
            RejectCode::DuplicateId,
            format!("plugin {id} changed state during its handshake; try again"),
        ));
    }
    if let Some(news) = shared.handles.news(&id) {
        let _ = news.try_send(SessionNews::Opened { launch });
    }
    tokio::spawn(delivery::run(session.clone(), queue));
    Ok(session)
}

/// A HELLO's subscriptions, less those the plugin may not have (each logged
/// and counted).
fn allowed_subscriptions(
    shared: &Shared,
    session: &Session,
    mut filters: Vec<String>,
) -> Vec<String> {
    if let Some(grants) = &session.grants {
        filters.retain(|f| {
            let allowed = grants.allows_subscribe(f);
            if !allowed {
                let e = crate::permissions::denied(
                    &session.plugin_id,
                    &format!("subscribe {f:?}"),
                    "its HELLO's subscription",
                );
                session.log_denial(&e);
                shared.registry.count_denial(&session.plugin_id);
            }
            allowed
        });
    }
    filters
}

/// An upgrade's new version handshook: its session waits, with no calls
/// and no events, until the supervisor switches the plugin over to it.
fn register_candidate(
    shared: &Shared,
    session: Arc<Session>,
    hello: Hello,
    launch: u64,
) -> Result<Arc<Session>, Reject> {
    let id = hello.plugin_id.clone();
    let subscriptions = allowed_subscriptions(shared, &session, hello.subscriptions);
    session.touch();
    let ready = Ready {
        launch,
        session: session.clone(),
        manifest: hello.manifest,
        methods: hello.methods,
        interfaces: hello.interfaces,
        subscriptions,
        receive_own: hello.receive_own,
    };
    if !shared.registry.candidate_ready(&id, &hello.token, ready) {
        session.close(Loss::Stopping);
        return Err(reject(
            RejectCode::DuplicateId,
            format!("the upgrade of plugin {id} ended during its handshake"),
        ));
    }
    if let Some(news) = shared.handles.news(&id) {
        let _ = news.try_send(SessionNews::Opened { launch });
    }
    Ok(session)
}
