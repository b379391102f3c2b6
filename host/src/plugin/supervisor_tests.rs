//! The supervisor loop with a scripted runner, under tokio's paused clock:
//! backoff between restarts, the restart limit, the handshake deadline,
//! stops during a backoff, and a runner that cannot restart its plugin.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{supervise, Supervision};
use crate::config::{PluginSpec, RestartConfig};
use crate::events::EventHub;
use crate::plugin::handle::{Command, Handles};
use crate::plugin::registry::{PluginKind, Registry};
use crate::plugin::state::PluginState;
use crate::runner::Runner;
use crate::session::Loss;

/// What the scripted runner saw.
#[derive(Default)]
struct Script {
    /// When each launch started, on the paused clock.
    starts: Vec<Instant>,
    kills: Vec<Instant>,
}

/// A runner whose process "exits" `life` after each start (never, if `None`).
struct Scripted {
    script: Arc<Mutex<Script>>,
    life: Option<Duration>,
    started: Option<Instant>,
    handshake: Option<Duration>,
    restarts: bool,
}

impl Runner for Scripted {
    fn token(&mut self) -> String {
        crate::testing::TOKEN.into()
    }
    async fn start(&mut self, _token: &str, _after_crash: bool) -> Result<Option<u32>, String> {
        let now = Instant::now();
        self.script.lock().unwrap().starts.push(now);
        self.started = Some(now);
        Ok(Some(4242))
    }
    fn handshake_deadline(&self) -> Option<Duration> {
        self.handshake
    }
    async fn exited(&mut self) -> String {
        match (self.life, self.started) {
            (Some(life), Some(at)) => {
                tokio::time::sleep_until(at + life).await;
                self.started = None;
                "exited with code 1".into()
            }
            _ => std::future::pending().await,
        }
    }
    async fn reap(&mut self, loss: Loss) -> String {
        loss.to_string()
    }
    async fn stop(&mut self, _grace: Duration, _said_goodbye: bool) -> String {
        self.started = None;
        "stopped by the host".into()
    }
    async fn kill(&mut self) {
        self.script.lock().unwrap().kills.push(Instant::now());
        self.started = None;
    }
    fn restarts(&self) -> bool {
        self.restarts
    }
    fn reconnects(&self) -> bool {
        !self.restarts
    }
}

struct Rig {
    registry: Arc<Registry>,
    handles: Arc<Handles>,
    script: Arc<Mutex<Script>>,
    shutdown: CancellationToken,
}

const RESTART: RestartConfig = RestartConfig {
    backoff_initial_ms: 100,
    backoff_max_ms: 400,
    max_restarts: 4,
    window_s: 60,
};

fn rig(life: Option<Duration>, handshake: Option<Duration>, restarts: bool) -> Rig {
    let registry = Arc::new(Registry::new(EventHub::new(16, 1 << 20)));
    let spec = PluginSpec::new("p", "/bin/true".into());
    registry.insert("p", PluginKind::Managed(spec), PluginState::Starting);
    let handles = Arc::new(Handles::default());
    let inbox = handles.open("p");
    let script = Arc::new(Mutex::new(Script::default()));
    let shutdown = CancellationToken::new();
    let runner = Scripted {
        script: script.clone(),
        life,
        started: None,
        handshake,
        restarts,
    };
    let supervision = Supervision {
        id: "p".into(),
        registry: registry.clone(),
        restart: RESTART,
        stop_grace: Duration::from_millis(50),
        shutdown: shutdown.clone(),
    };
    handles.set_task(
        "p",
        tokio::spawn(supervise(supervision, runner, true, inbox)),
    );
    Rig {
        registry,
        handles,
        script,
        shutdown,
    }
}

impl Rig {
    async fn until_state(&self, state: PluginState) {
        let deadline = Instant::now() + Duration::from_secs(3600);
        while self.registry.state("p") != Some(state) {
            assert!(Instant::now() < deadline, "never {state:?}");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    fn gaps_ms(&self) -> Vec<u128> {
        let s = self.script.lock().unwrap();
        s.starts
            .windows(2)
            .map(|w| (w[1] - w[0]).as_millis())
            .collect()
    }
}

#[tokio::test(start_paused = true)]
async fn a_crashing_plugin_is_restarted_after_doubling_delays_then_failed() {
    let life = Duration::from_millis(10);
    let rig = rig(Some(life), None, true);
    rig.until_state(PluginState::Failed).await;
    // Each gap is the process's 10 ms of life plus the backoff: 100, 200, 400, 400 (capped).
    assert_eq!(rig.gaps_ms(), vec![110, 210, 410, 410]);
    let (restarts, last_exit) = rig
        .registry
        .read("p", |f| (f.restarts(), f.last_exit().map(str::to_owned)))
        .unwrap();
    assert_eq!(restarts, 4);
    assert_eq!(last_exit.as_deref(), Some("exited with code 1"));
    // Failed stays failed: no more starts however long one waits.
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(rig.script.lock().unwrap().starts.len(), 5);
    // `iglu start` forgets the history: the next crash waits the first step again.
    rig.handles.command("p", Command::Start).await.unwrap();
    rig.until_state(PluginState::Restarting).await;
    rig.until_state(PluginState::Starting).await;
    assert_eq!(*rig.gaps_ms().last().unwrap(), 110);
    rig.shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_stop_during_the_backoff_keeps_it_stopped() {
    let rig = rig(Some(Duration::from_millis(10)), None, true);
    rig.until_state(PluginState::Restarting).await;
    rig.handles.command("p", Command::Stop).await.unwrap();
    assert_eq!(rig.registry.state("p"), Some(PluginState::Stopped));
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        rig.script.lock().unwrap().starts.len(),
        1,
        "no start after the stop"
    );
    rig.shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn no_handshake_within_the_deadline_kills_and_counts_as_a_crash() {
    let rig = rig(None, Some(Duration::from_millis(500)), true);
    // Crashed, then at once Restarting (the backoff).
    rig.until_state(PluginState::Restarting).await;
    {
        let script = rig.script.lock().unwrap();
        assert_eq!(script.kills.len(), 1);
        assert_eq!(
            script.kills[0] - script.starts[0],
            Duration::from_millis(500)
        );
    }
    let last = rig
        .registry
        .read("p", |f| f.last_exit().map(str::to_owned))
        .unwrap();
    assert_eq!(
        last.as_deref(),
        Some("no handshake within 500 ms; killed by the host")
    );
    rig.until_state(PluginState::Starting).await;
    rig.shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_plugin_the_host_cannot_restart_stays_crashed_with_its_token() {
    // An attached plugin with no restart command: lost, it is Crashed and waits.
    let rig = rig(Some(Duration::from_millis(10)), None, false);
    rig.until_state(PluginState::Crashed).await;
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(rig.registry.state("p"), Some(PluginState::Crashed));
    assert_eq!(rig.script.lock().unwrap().starts.len(), 1);
    // Its token is still good: it may come back by itself.
    assert_eq!(
        rig.registry
            .expecting("p", crate::testing::TOKEN)
            .map(|a| a.launch),
        Ok(1)
    );
    rig.shutdown.cancel();
}

/// An attached plugin (it reconnects by itself, and the host can restart
/// it) over the in-memory transport, with the real router and admission.
#[tokio::test(start_paused = true)]
async fn a_plugin_back_during_the_backoff_is_watched_and_stopped_properly() {
    use crate::testing::{hello, Rig, TOKEN};
    use iglu_bus::Message;

    let mut rig = Rig::start("supervisor-attached", "", &["p"]).await;
    let inbox = rig.inboxes.remove("p").unwrap();
    let script = Arc::new(Mutex::new(Script::default()));
    let runner = Scripted {
        script: script.clone(),
        life: None,
        started: None,
        handshake: None,
        restarts: true,
    };
    struct Attached(Scripted);
    impl Runner for Attached {
        fn token(&mut self) -> String {
            self.0.token()
        }
        async fn start(&mut self, token: &str, after_crash: bool) -> Result<Option<u32>, String> {
            self.0.start(token, after_crash).await.map(|_| None)
        }
        fn handshake_deadline(&self) -> Option<Duration> {
            None
        }
        async fn exited(&mut self) -> String {
            std::future::pending().await
        }
        async fn reap(&mut self, loss: Loss) -> String {
            loss.to_string()
        }
        async fn stop(&mut self, grace: Duration, said_goodbye: bool) -> String {
            self.0.stop(grace, said_goodbye).await
        }
        async fn kill(&mut self) {}
        fn restarts(&self) -> bool {
            true
        }
        fn reconnects(&self) -> bool {
            true
        }
    }
    let shared = rig.shared.clone();
    let supervision = Supervision {
        id: "p".into(),
        registry: shared.registry.clone(),
        restart: RestartConfig {
            backoff_initial_ms: 10_000,
            ..RESTART
        },
        stop_grace: Duration::from_millis(50),
        shutdown: shared.shutdown.clone(),
    };
    shared.handles.set_task(
        "p",
        tokio::spawn(supervise(supervision, Attached(runner), true, inbox)),
    );
    let state = || shared.registry.state("p");
    let until = |want: PluginState| {
        let shared = shared.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            while shared.registry.state("p") != Some(want) {
                assert!(Instant::now() < deadline, "never {want:?}");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    };
    let mut changes = shared.events.lifecycle();
    let mut first = rig.connect().await;
    assert!(matches!(
        first.handshake(hello("p", TOKEN, &[])).await,
        Message::Welcome(_)
    ));
    until(PluginState::Running).await;
    drop(first);
    until(PluginState::Restarting).await;
    // Back by itself during the 10 s backoff: admitted, and watched.
    let mut second = rig.connect().await;
    assert!(matches!(
        second.handshake(hello("p", TOKEN, &[])).await,
        Message::Welcome(_)
    ));
    assert_eq!(state(), Some(PluginState::Running));
    // A stop now ends that session properly: GOODBYE, then Stopped.
    shared.handles.command("p", Command::Stop).await.unwrap();
    assert!(matches!(
        second.next(Duration::from_secs(5)).await,
        Message::Goodbye(_)
    ));
    assert_eq!(state(), Some(PluginState::Stopped));
    assert!(shared.registry.session("p").is_err());
    // Stopped means stopped: a HELLO is refused as such...
    let mut third = rig.connect().await;
    match third.handshake(hello("p", TOKEN, &[])).await {
        Message::Reject(r) => assert_eq!(r.code, iglu_bus::RejectCode::Stopped),
        other => panic!("{other:?}"),
    }
    // ...until `iglu start`, after which it gets in and is watched again.
    shared.handles.command("p", Command::Start).await.unwrap();
    let mut fourth = rig.connect().await;
    assert!(matches!(
        fourth.handshake(hello("p", TOKEN, &[])).await,
        Message::Welcome(_)
    ));
    until(PluginState::Running).await;
    drop(fourth);
    until(PluginState::Restarting).await;
    let mut seen = Vec::new();
    while let Ok(c) = changes.try_recv() {
        seen.push(c.state.as_str());
    }
    // Every change once, in order; the restart after the stop is a start.
    assert_eq!(
        seen,
        [
            "running",
            "crashed",
            "restarting",
            "running",
            "stopping",
            "stopped",
            "starting",
            "running",
            "crashed",
            "restarting"
        ]
    );
    assert!(!script.lock().unwrap().starts.is_empty());
}
