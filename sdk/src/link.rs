//! The link to the host across connections: connect, handshake, and for
//! an external plugin, reconnect.
//!
//! A managed plugin lives and dies with its one connection. An external
//! plugin reconnects when the host goes away (a `zeromq` DEALER does not
//! reconnect by itself, so each attempt builds a new one), with exponential
//! backoff and jitter, handshakes again, and sends again every call to the
//! host that was not answered (the calls wait in `pending`, which outlives
//! connections, as does the way back to the I/O loop and the stop request).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use iglu_bus::transport::DealerConnection;
use iglu_bus::{handshake, Hello, Message, Welcome};
use tokio::sync::{mpsc, watch};

use crate::connection::Session;
use crate::error::SdkError;
use crate::host::Pending;
use crate::launch::{Launch, Mode};
use crate::outgoing::{Ended, Outgoing, OUTGOING_QUEUE};
use crate::service::Service;
use crate::ticker;

/// First and longest wait between reconnection attempts of an external plugin.
const RECONNECT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// What outlives one connection: the way back to the I/O loop, the calls
/// to the host still waiting, and the stop request.
pub(crate) struct Link {
    pub(crate) outgoing_tx: mpsc::Sender<Outgoing>,
    pub(crate) outgoing_rx: mpsc::Receiver<Outgoing>,
    pub(crate) pending: Pending,
    pub(crate) stop: watch::Receiver<Option<&'static str>>,
    pub(crate) connection: u64,
}

/// Connects, handshakes, and serves until `stop` resolves (with the name of
/// what stopped it: SIGTERM, SIGINT) and the calls in flight are drained;
/// an external plugin reconnects whenever the connection is lost.
pub(crate) async fn run(
    launch: &Launch,
    service: Arc<Service>,
    stop: impl Future<Output = &'static str> + Send + 'static,
) -> Result<Ended, SdkError> {
    let (outgoing_tx, outgoing_rx) = mpsc::channel(OUTGOING_QUEUE);
    let (stop_tx, stop_rx) = watch::channel(None);
    let stopper = tokio::spawn(async move {
        let name = stop.await;
        let _ = stop_tx.send(Some(name));
    });
    let _stopper = AbortOnDrop(stopper);
    let stop = stop_rx;
    let mut link = Link {
        outgoing_tx,
        outgoing_rx,
        pending: Default::default(),
        stop,
        connection: 0,
    };
    let mut wait = RECONNECT_MIN;
    loop {
        let result = connect_once(launch, &service, &mut link).await;
        let retry = launch.mode == Mode::External
            && match &result {
                Ok(Ended::Signal(_)) => false,
                // An external plugin's life is its own supervisor's (its
                // container, its service manager): the host's GOODBYE ends
                // the session, not the process. It connects again, and is
                // let in again at once after a host restart or a session the
                // host ended, or refused as stopped until `iglu start`.
                Ok(Ended::HostGoodbye(_)) => true,
                Err(SdkError::Rejected { code, .. }) => matches!(
                    code,
                    iglu_bus::RejectCode::DuplicateId | iglu_bus::RejectCode::Stopped
                ),
                Err(
                    SdkError::HostSilent(_) | SdkError::HandshakeTimeout { .. } | SdkError::Bus(_),
                ) => true,
                Err(_) => false,
            };
        if !retry {
            // Wake every caller of the host with "disconnected".
            link.pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
            return result;
        }
        if let Err(e) = &result {
            tracing::warn!(plugin = %launch.plugin_id, error = %e, retry_in_ms = wait.as_millis() as u64, "connection to the host lost; reconnecting");
        }
        // Jitter, so that the plugins of a restarted host do not all come
        // back in the same millisecond.
        let jittered = wait.mul_f64(0.5 + rand_fraction() * 0.5);
        tokio::select! {
            _ = tokio::time::sleep(jittered) => {}
            _ = link.stop.changed() => {
                let name = (*link.stop.borrow()).unwrap_or("signal");
                return Ok(Ended::Signal(name));
            }
        }
        wait = (wait * 2).min(RECONNECT_MAX);
    }
}

/// Ends the stop watcher with the link.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A number in [0, 1) from the clock, enough for jitter.
fn rand_fraction() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    f64::from(nanos % 1000) / 1000.0
}

async fn connect_once(
    launch: &Launch,
    service: &Arc<Service>,
    link: &mut Link,
) -> Result<Ended, SdkError> {
    let (conn, welcome, ticker) =
        tokio::time::timeout(launch.handshake_timeout, handshake(launch, service))
            .await
            .map_err(|_| SdkError::HandshakeTimeout {
                endpoint: launch.endpoint.clone(),
                waited: launch.handshake_timeout,
            })??;
    link.connection += 1;
    tracing::info!(
        plugin = %launch.plugin_id,
        session = %welcome.session,
        version = welcome.version,
        "connected to the host"
    );
    Session::new(launch, service.clone(), conn, welcome, ticker, link)
        .serve(link)
        .await
}

async fn handshake(
    launch: &Launch,
    service: &Service,
) -> Result<(DealerConnection, Welcome, ticker::Pending), SdkError> {
    let mut conn = DealerConnection::connect(&launch.endpoint).await?;
    let hello = iglu_bus::encode(&Message::Hello(service.hello.clone()))?;
    conn.outbound.send(hello).await?;
    // Started while the host handles the HELLO, not after its WELCOME.
    let ticker = ticker::Pending::spawn();
    loop {
        let (frame, _) = conn.inbound.recv().await?;
        match iglu_bus::decode(&frame, iglu_bus::DEFAULT_MAX_MESSAGE_BYTES) {
            Ok(Message::Welcome(w)) => return Ok((conn, w, ticker)),
            Ok(Message::Reject(r)) => {
                return Err(SdkError::Rejected {
                    code: r.code,
                    message: r.message,
                })
            }
            Ok(other) => tracing::warn!(?other, "ignoring a message that came before WELCOME"),
            Err(e) => tracing::warn!(error = %e, "ignoring an undecodable frame before WELCOME"),
        }
    }
}

/// The HELLO this build sends.
pub(crate) fn hello(
    launch: &Launch,
    manifest: iglu_bus::Manifest,
    methods: Vec<String>,
    subscriptions: Vec<String>,
    receive_own: bool,
    interfaces: Vec<iglu_bus::interface::InterfaceInfo>,
) -> Hello {
    Hello {
        cookie: handshake::COOKIE_VALUE.to_owned(),
        versions: handshake::PROTOCOL_VERSIONS.to_vec(),
        plugin_id: launch.plugin_id.clone(),
        token: launch.token.clone(),
        manifest,
        methods,
        subscriptions,
        receive_own,
        interfaces,
    }
}

#[cfg(test)]
#[path = "drain_tests.rs"]
mod drain_tests;
