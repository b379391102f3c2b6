//! The router and the handshake over the in-memory transport: every
//! refusal says why and hangs up, a stranger that keeps talking is cut,
//! and the host admits the right plugin afterwards.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use iglu_bus::{BusError, Heartbeat, Message, RejectCode};

use crate::plugin::state::PluginState;
use crate::plugin::transition::Transition;
use crate::session::SessionNews;
use crate::testing::{hello, Rig, TOKEN};

const WAIT: Duration = Duration::from_secs(5);

/// The REJECT a HELLO gets, checking that the host hangs up after it.
async fn refused(rig: &Rig, hello: iglu_bus::Hello) -> RejectCode {
    let mut peer = rig.connect().await;
    let code = match peer.handshake(hello).await {
        Message::Reject(r) => {
            assert!(!r.message.is_empty());
            r.code
        }
        other => panic!("expected REJECT, got {other:?}"),
    };
    let end = tokio::time::timeout(WAIT, peer.recv()).await.unwrap();
    assert!(matches!(end, Err(BusError::Closed)), "{end:?}");
    code
}

#[tokio::test(start_paused = true)]
async fn every_refusal_says_why_and_hangs_up_then_the_right_plugin_gets_in() {
    let rig = Rig::start("router-refusals", "", &["p", "idle"]).await;
    assert_eq!(
        refused(&rig, hello("p", "wrong-token", &[])).await,
        RejectCode::BadToken
    );
    assert_eq!(
        refused(&rig, hello("nobody", TOKEN, &[])).await,
        RejectCode::UnknownPlugin
    );
    let mut bad_cookie = hello("p", TOKEN, &[]);
    bad_cookie.cookie = "not-the-cookie".into();
    assert_eq!(refused(&rig, bad_cookie).await, RejectCode::BadCookie);
    let mut future = hello("p", TOKEN, &[]);
    future.versions = vec![99];
    assert_eq!(refused(&rig, future).await, RejectCode::UnsupportedVersion);
    let mut bad_method = hello("p", TOKEN, &["no spaces allowed"]);
    bad_method.manifest.id = "p".into();
    assert_eq!(
        refused(&rig, bad_method).await,
        RejectCode::MalformedManifest
    );
    assert_eq!(
        refused(&rig, hello("p", TOKEN, &["echo", "echo"])).await,
        RejectCode::MalformedManifest
    );
    let mut bad_filter = hello("p", TOKEN, &[]);
    bad_filter.subscriptions = vec!["a/#/b".into()];
    assert_eq!(
        refused(&rig, bad_filter).await,
        RejectCode::MalformedManifest
    );
    // Stopped with its token kept (an attached plugin): refused as stopped.
    rig.shared.registry.transition(
        "idle",
        Transition::Down {
            state: PluginState::Stopped,
            last_exit: None,
            keep_token: true,
        },
    );
    assert_eq!(
        refused(&rig, hello("idle", TOKEN, &[])).await,
        RejectCode::Stopped
    );

    // None of that got in the way: the plugin with the right token is admitted.
    let mut peer = rig.connect().await;
    let welcome = peer.handshake(hello("p", TOKEN, &["m"])).await;
    assert!(matches!(welcome, Message::Welcome(_)), "{welcome:?}");
    assert_eq!(rig.shared.registry.state("p"), Some(PluginState::Running));
    let mut rig = rig;
    let news = rig.inboxes.get_mut("p").unwrap().news.recv().await.unwrap();
    assert!(
        matches!(news, SessionNews::Opened { launch: 1 }),
        "{news:?}"
    );
    // A second connection with the same token while the first lives: refused.
    assert_eq!(
        refused(&rig, hello("p", TOKEN, &["m"])).await,
        RejectCode::DuplicateId
    );
}

#[tokio::test(start_paused = true)]
async fn a_first_message_that_is_not_hello_is_refused_with_a_reason_and_cut() {
    let rig = Rig::start("router-stranger", "", &["p"]).await;
    // A HEARTBEAT first, then a HELLO behind it: the REJECT says why, the
    // HELLO is not read, and the peer is hung up on.
    let mut early = rig.connect().await;
    early.send(&Message::Heartbeat(Heartbeat {})).await;
    early.send(&Message::Hello(hello("p", TOKEN, &[]))).await;
    match early.next(WAIT).await {
        Message::Reject(r) => {
            assert_eq!(r.code, RejectCode::MalformedHello);
            assert!(r.message.contains("HEARTBEAT"), "{}", r.message);
        }
        other => panic!("{other:?}"),
    }
    let end = tokio::time::timeout(WAIT, early.recv()).await.unwrap();
    assert!(matches!(end, Err(BusError::Closed)), "{end:?}");
    assert_ne!(rig.shared.registry.state("p"), Some(PluginState::Running));
    // Undecodable bytes as a first message: a REJECT saying so.
    let mut noise = rig.connect().await;
    noise
        .0
        .outbound
        .send(bytes::Bytes::from_static(b"\xc1\xc1"))
        .await
        .unwrap();
    match noise.next(WAIT).await {
        Message::Reject(r) => assert_eq!(r.code, RejectCode::MalformedHello),
        other => panic!("{other:?}"),
    }
    // The plugin, connecting properly, gets in.
    let mut fine = rig.connect().await;
    assert!(matches!(
        fine.handshake(hello("p", TOKEN, &[])).await,
        Message::Welcome(_)
    ));
}

#[tokio::test(start_paused = true)]
async fn frames_over_the_cap_are_answered_for_the_right_call() {
    use iglu_bus::{Call, CallId, ErrorCode, Reply};
    let rig = Rig::start("router-too-large", "max_message_bytes = 65536\n", &["p"]).await;
    let mut peer = rig.connect().await;
    assert!(matches!(
        peer.handshake(hello("p", TOKEN, &["m"])).await,
        Message::Welcome(_)
    ));
    // Over the cap, under the transport's own cut (the cap plus 1 KiB).
    let big = bytes::Bytes::from(vec![0u8; 65_536 + 200]);
    // The plugin's own call to the host: ERROR too_large with its id.
    let id = CallId::new_v4();
    peer.send(&Message::Call(Call {
        id,
        method: "kv.get".into(),
        deadline_ms: 1000,
        args: big.clone(),
    }))
    .await;
    match peer.next(WAIT).await {
        Message::Error(e) => {
            assert_eq!(
                (e.id, e.code),
                (Some(id), ErrorCode::TooLarge),
                "{}",
                e.message
            )
        }
        other => panic!("{other:?}"),
    }
    // An answer too big: the host's caller hears too_large at once, not at its deadline.
    let session = rig.shared.registry.session("p").unwrap();
    let started = tokio::time::Instant::now();
    let call = tokio::spawn(async move {
        session
            .call("m", crate::testing::nil(), Duration::from_secs(30))
            .await
    });
    let Message::Call(c) = peer.next(WAIT).await else {
        panic!("expected the CALL")
    };
    peer.send(&Message::Reply(Reply {
        id: c.id,
        result: big,
    }))
    .await;
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(err.code, ErrorCode::TooLarge, "{}", err.message);
    assert!(tokio::time::Instant::now() - started < Duration::from_secs(1));
}
