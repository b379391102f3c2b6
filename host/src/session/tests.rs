//! A session over the in-memory transport, under the paused clock: the
//! host's own deadline (with CANCEL) holds even for a plugin that ignores
//! deadlines, closing fails every call in flight at once, and liveness
//! declares a silent plugin dead on time while one that beats lives on.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use iglu_bus::heartbeat::Timing;
use iglu_bus::{ErrorCode, Heartbeat, Message};
use tokio::time::Instant;

use super::{liveness, Loss, SessionNews};
use crate::testing::{hello, nil, Peer, Rig, TOKEN};

const WAIT: Duration = Duration::from_secs(5);

async fn admitted(name: &str) -> (Rig, Peer) {
    let rig = Rig::start(name, "", &["p"]).await;
    let mut peer = rig.connect().await;
    let welcome = peer.handshake(hello("p", TOKEN, &["slow"])).await;
    assert!(matches!(welcome, Message::Welcome(_)), "{welcome:?}");
    (rig, peer)
}

#[tokio::test(start_paused = true)]
async fn a_call_the_plugin_never_answers_times_out_on_time_and_is_cancelled() {
    let (rig, mut peer) = admitted("session-deadline").await;
    let session = rig.shared.registry.session("p").unwrap();
    let started = Instant::now();
    let call = tokio::spawn({
        let session = session.clone();
        async move {
            session
                .call("slow", nil(), Duration::from_millis(300))
                .await
        }
    });
    let Message::Call(sent) = peer.next(WAIT).await else {
        panic!("expected the CALL");
    };
    assert_eq!(sent.deadline_ms, 300);
    // The plugin ignores it: the host's own deadline answers the caller.
    let err = tokio::time::timeout(WAIT, call)
        .await
        .expect("the host's deadline must answer the caller")
        .unwrap()
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Timeout);
    assert!(err.message.contains("300 ms"), "{}", err.message);
    let waited = Instant::now() - started;
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_millis(350),
        "timed out after {waited:?}"
    );
    // And the plugin is told to stop working on it.
    let Message::Cancel(cancel) = peer.next(WAIT).await else {
        panic!("expected CANCEL");
    };
    assert_eq!(cancel.id, sent.id);
    // A late answer is dropped quietly; the session lives on.
    peer.send(&Message::Reply(iglu_bus::Reply {
        id: sent.id,
        result: nil(),
    }))
    .await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(!session.is_closed());
    assert_eq!(session.calls_in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_plugin_that_goes_away_fails_its_calls_at_once() {
    let (mut rig, mut peer) = admitted("session-lost").await;
    let session = rig.shared.registry.session("p").unwrap();
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let session = session.clone();
            tokio::spawn(async move { session.call("slow", nil(), Duration::from_secs(30)).await })
        })
        .collect();
    for _ in 0..3 {
        assert!(matches!(peer.next(WAIT).await, Message::Call(_)));
    }
    let started = Instant::now();
    drop(peer);
    for call in calls {
        let err = tokio::time::timeout(WAIT, call)
            .await
            .unwrap()
            .unwrap()
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::PluginCrashed, "{}", err.message);
    }
    assert!(Instant::now() - started < Duration::from_millis(5));
    let inbox = rig.inboxes.get_mut("p").unwrap();
    assert!(matches!(
        inbox.news.recv().await,
        Some(SessionNews::Opened { .. })
    ));
    match inbox.news.recv().await {
        Some(SessionNews::Ended { launch: 1, loss }) => assert_eq!(loss, Loss::Disconnected),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn liveness_beats_every_interval_and_ends_a_silent_plugin_on_time() {
    let (rig, mut peer) = admitted("session-liveness").await;
    let timing = Timing {
        interval: Duration::from_millis(100),
        liveness: 3,
    };
    let registry = rig.shared.registry.clone();
    tokio::spawn(liveness::run(
        timing,
        move || registry.sessions(),
        rig.shared.shutdown.clone(),
    ));
    let session = rig.shared.registry.session("p").unwrap();
    // A plugin that answers every heartbeat lives on.
    let started = Instant::now();
    let mut beats = 0;
    while Instant::now() - started < Duration::from_secs(2) {
        match tokio::time::timeout(WAIT, peer.recv())
            .await
            .unwrap()
            .unwrap()
        {
            Message::Heartbeat(_) => {
                beats += 1;
                peer.send(&Message::Heartbeat(Heartbeat {})).await;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!((18..=21).contains(&beats), "{beats} heartbeats in 2 s");
    assert!(!session.is_closed());
    // Silent from now on: dead after three intervals, within a quarter interval.
    let silent_from = Instant::now();
    tokio::time::timeout(WAIT, session.closed()).await.unwrap();
    let after = Instant::now() - silent_from;
    assert!(
        after > Duration::from_millis(300) && after <= Duration::from_millis(330),
        "declared dead after {after:?}"
    );
    let status = rig.shared.registry.session("p");
    assert!(status.is_err(), "the registry no longer offers it");
    // It is told why, in case it can still hear, then the host hangs up.
    match peer.next(WAIT).await {
        Message::Goodbye(g) => assert!(g.reason.contains("no heartbeat"), "{}", g.reason),
        other => panic!("expected GOODBYE, got {other:?}"),
    }
    let end = tokio::time::timeout(WAIT, peer.recv()).await.unwrap();
    assert!(end.is_err(), "{end:?}");
}

/// A forwarded call's answer, deadline or loss goes to its callback; an
/// abandoned one to nobody, with a CANCEL to the plugin; and each gives its
/// slot back.
#[tokio::test(start_paused = true)]
async fn a_forwarded_call_answers_its_callback_once_and_an_abandoned_one_is_cancelled() {
    let (rig, mut peer) = admitted("session-forward").await;
    let session = rig.shared.registry.session("p").unwrap();
    let forward = |deadline: Duration| {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let id = iglu_bus::CallId::new_v4();
        session
            .forward(
                id,
                "slow",
                nil(),
                deadline,
                Box::new(move |result| {
                    let _ = tx.send(result);
                }),
            )
            .unwrap();
        (id, rx)
    };

    // Answered: the callback gets the plugin's result.
    let (id, answered) = forward(Duration::from_secs(30));
    let Message::Call(sent) = peer.next(WAIT).await else {
        panic!("expected the CALL");
    };
    assert_eq!(sent.id, id);
    assert_eq!(session.calls_in_flight(), 1);
    peer.send(&Message::Reply(iglu_bus::Reply { id, result: nil() }))
        .await;
    let result = tokio::time::timeout(WAIT, answered).await.unwrap().unwrap();
    assert_eq!(result.unwrap(), nil());
    assert_eq!(session.calls_awaiting(), 0, "its slot is given back");

    // Abandoned: nobody is answered, the plugin hears CANCEL.
    let (id, abandoned) = forward(Duration::from_secs(30));
    let Message::Call(_) = peer.next(WAIT).await else {
        panic!("expected the CALL");
    };
    assert!(session.abandon(id));
    assert!(!session.abandon(id), "only once");
    let Message::Cancel(cancel) = peer.next(WAIT).await else {
        panic!("expected CANCEL");
    };
    assert_eq!(cancel.id, id);
    assert!(abandoned.await.is_err(), "an abandoned call answers no one");
    assert_eq!(session.calls_awaiting(), 0);

    // Its deadline: a timeout, and CANCEL.
    let (id, expired) = forward(Duration::from_millis(200));
    let Message::Call(_) = peer.next(WAIT).await else {
        panic!("expected the CALL");
    };
    let err = tokio::time::timeout(WAIT, expired)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Timeout);
    let Message::Cancel(cancel) = peer.next(WAIT).await else {
        panic!("expected CANCEL");
    };
    assert_eq!(cancel.id, id);

    // The session's end: the loss, at once.
    let (_, lost) = forward(Duration::from_secs(30));
    let Message::Call(_) = peer.next(WAIT).await else {
        panic!("expected the CALL");
    };
    session.close(Loss::Disconnected);
    let err = tokio::time::timeout(WAIT, lost)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::PluginCrashed, "{err:?}");
    assert_eq!(session.calls_awaiting(), 0);
}
