//! Stopping a plugin (SIGTERM, SIGINT) through the real I/O loop, against a
//! scripted host on the in-memory transport, under the paused clock: calls
//! in flight finish and are answered before GOODBYE, and a call that
//! outlasts the grace period is abandoned at its end.

#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use iglu_bus::transport::{PeerId, RouterEndpoint};
use iglu_bus::{Call, CallId, Manifest, Message, Welcome};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::launch::{Launch, Mode};
use crate::outgoing::Ended;
use crate::Plugin;

struct Host {
    router: RouterEndpoint,
    peer: PeerId,
    queued: VecDeque<Message>,
}

impl Host {
    /// Binds, lets the plugin say HELLO, and welcomes it.
    async fn start(
        name: &str,
        plugin: Plugin,
    ) -> (
        Host,
        oneshot::Sender<&'static str>,
        tokio::task::JoinHandle<Result<Ended, crate::SdkError>>,
    ) {
        let endpoint = format!("mem://{name}");
        let mut router = RouterEndpoint::bind(&endpoint).await.unwrap();
        let launch = Launch {
            mode: Mode::Managed,
            endpoint,
            token: "token".into(),
            plugin_id: "p".into(),
            handshake_timeout: Duration::from_secs(5),
        };
        let service = plugin.into_service(&launch, tokio::runtime::Handle::current());
        let (stop_tx, stop_rx) = oneshot::channel::<&'static str>();
        let run = tokio::spawn(async move {
            crate::link::run(
                &launch,
                service,
                async move { stop_rx.await.unwrap_or("test") },
            )
            .await
        });
        let (peer, frames) = router.inbound.recv().await.unwrap();
        let hello = iglu_bus::decode(&frames[0], usize::MAX).unwrap();
        assert!(matches!(hello, Message::Hello(_)), "{hello:?}");
        let welcome = Message::Welcome(Welcome {
            version: 1,
            session: uuid::Uuid::new_v4(),
            heartbeat_ms: 60_000,
            liveness: 3,
            max_message_bytes: 1 << 20,
        });
        router
            .outbound
            .try_send(&peer, iglu_bus::encode(&welcome).unwrap())
            .unwrap();
        (
            Host {
                router,
                peer,
                queued: VecDeque::new(),
            },
            stop_tx,
            run,
        )
    }

    fn call(&self, method: &str, ms: u64) -> CallId {
        let id = CallId::new_v4();
        let call = Message::Call(Call {
            id,
            method: method.into(),
            deadline_ms: 60_000,
            args: Bytes::from(rmp_serde::to_vec(&ms).unwrap()),
        });
        self.router
            .outbound
            .try_send(&self.peer, iglu_bus::encode(&call).unwrap())
            .unwrap();
        id
    }

    /// The next message from the plugin that is not CREDIT or HEARTBEAT.
    async fn next(&mut self) -> Message {
        loop {
            let message = match self.queued.pop_front() {
                Some(m) => m,
                None => {
                    let (_, frames) =
                        tokio::time::timeout(Duration::from_secs(30), self.router.inbound.recv())
                            .await
                            .expect("the plugin says something in time")
                            .unwrap();
                    for f in frames {
                        self.queued
                            .push_back(iglu_bus::decode(&f, usize::MAX).unwrap());
                    }
                    continue;
                }
            };
            match message {
                Message::Credit(_) | Message::Heartbeat(_) => continue,
                other => return other,
            }
        }
    }
}

fn sleeper(grace: Duration) -> Plugin {
    Plugin::new(Manifest {
        id: "p".into(),
        name: "p".into(),
        author: "tests".into(),
        version: "1.0.0".into(),
        description: "sleeps as asked".into(),
    })
    .grace_period(grace)
    .method("sleep", |_ctx, ms: u64| async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(ms)
    })
}

#[tokio::test(start_paused = true)]
async fn on_sigterm_calls_in_flight_finish_and_are_answered_before_goodbye() {
    let (mut host, stop, run) = Host::start("sdk-drain", sleeper(Duration::from_secs(3))).await;
    let first = host.call("sleep", 500);
    let second = host.call("sleep", 800);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let stopped_at = Instant::now();
    stop.send("SIGTERM").unwrap();
    let mut answered = Vec::new();
    for _ in 0..2 {
        match host.next().await {
            Message::Reply(r) => answered.push(r.id),
            other => panic!("expected a REPLY, got {other:?}"),
        }
    }
    assert_eq!(answered, vec![first, second]);
    match host.next().await {
        Message::Goodbye(g) => assert_eq!(g.reason, "plugin received SIGTERM"),
        other => panic!("expected GOODBYE, got {other:?}"),
    }
    let ended = run.await.unwrap().unwrap();
    assert!(matches!(ended, Ended::Signal("SIGTERM")));
    // The last call took 800 ms from its start; nothing waited longer.
    let took = Instant::now() - stopped_at;
    assert!(took < Duration::from_millis(1000), "{took:?}");
}

#[tokio::test(start_paused = true)]
async fn a_call_that_outlasts_the_grace_period_is_abandoned_at_its_end() {
    let (mut host, stop, run) = Host::start("sdk-grace", sleeper(Duration::from_millis(300))).await;
    let _stuck = host.call("sleep", 60_000);
    tokio::time::sleep(Duration::from_millis(10)).await;
    let stopped_at = Instant::now();
    stop.send("SIGINT").unwrap();
    match host.next().await {
        Message::Goodbye(g) => assert_eq!(g.reason, "plugin received SIGINT"),
        other => panic!("expected GOODBYE (the stuck call is not answered), got {other:?}"),
    }
    let waited = Instant::now() - stopped_at;
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_millis(400),
        "GOODBYE after {waited:?}, the grace period is 300 ms"
    );
    assert!(matches!(
        run.await.unwrap().unwrap(),
        Ended::Signal("SIGINT")
    ));
}
